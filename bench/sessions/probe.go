package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// limits are the machine's bounds on many connections, as this run found
// them.
type limits struct {
	nofileSoft, nofileHard uint64 // RLIMIT_NOFILE after raising the soft limit
	nrOpen                 int    // fs.nr_open: what the hard limit could be raised to
	canRaiseHard           bool   // CAP_SYS_RESOURCE: the hard limit can be raised
	somaxconn              int    // the accept queue bound listen(2) gets
	synBacklog             int    // net.ipv4.tcp_max_syn_backlog
	portLow, portHigh      int    // net.ipv4.ip_local_port_range
}

func (l limits) String() string {
	hard := "fixed: no CAP_SYS_RESOURCE"
	if l.canRaiseHard {
		hard = "CAP_SYS_RESOURCE: could be raised"
	}
	return fmt.Sprintf("RLIMIT_NOFILE %d (hard %d, %s; fs.nr_open %d), net.core.somaxconn %d, tcp_max_syn_backlog %d, ephemeral ports %d-%d (%d)",
		l.nofileSoft, l.nofileHard, hard, l.nrOpen, l.somaxconn, l.synBacklog, l.portLow, l.portHigh, l.portHigh-l.portLow+1)
}

// raiseLimits raises RLIMIT_NOFILE: the hard limit to fs.nr_open when
// the process may (CAP_SYS_RESOURCE; a phigate session holds three
// descriptors, so 10,000 sessions need more than 30,000), and the soft
// limit to the hard one. Setting it explicitly (rather than relying on
// Go's own raise at start) makes the children (PostgreSQL, PgBouncer,
// phigate) inherit it.
func raiseLimits() (limits, error) {
	var l limits
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return l, err
	}
	l.nrOpen = sysctlInt("fs/nr_open")
	if want := uint64(l.nrOpen); want > r.Max {
		up := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); err == nil {
			r = up
		} else {
			fmt.Fprintf(os.Stderr, "cannot raise the hard RLIMIT_NOFILE from %d to fs.nr_open %d: %v\n", r.Max, want, err)
		}
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return l, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", r.Max, err)
	}
	l.nofileSoft, l.nofileHard = r.Cur, r.Max
	l.somaxconn = somaxconn()
	l.synBacklog = sysctlInt("net/ipv4/tcp_max_syn_backlog")
	if f := strings.Fields(sysctl("net/ipv4/ip_local_port_range")); len(f) == 2 {
		l.portLow, _ = strconv.Atoi(f[0])
		l.portHigh, _ = strconv.Atoi(f[1])
	}
	if caps, ok := statusField(os.Getpid(), "CapEff:"); ok {
		if v, err := strconv.ParseUint(caps, 16, 64); err == nil {
			const capSysResource = 24
			l.canRaiseHard = v&(1<<capSysResource) != 0
		}
	}
	return l, nil
}

func sysctl(name string) string {
	b, _ := os.ReadFile(filepath.Join("/proc/sys", name))
	return strings.TrimSpace(string(b))
}

func sysctlInt(name string) int {
	n, _ := strconv.Atoi(sysctl(name))
	return n
}

// somaxconn is net.core.somaxconn (Go's listeners use it as their backlog).
func somaxconn() int {
	if n := sysctlInt("net/core/somaxconn"); n > 0 {
		return n
	}
	return 4096
}

// statusField is a field of /proc/PID/status, trimmed.
func statusField(pid int, field string) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}

// statusKB reads a kB field of /proc/PID/status (VmRSS:, VmHWM:) in bytes.
func statusKB(pid int, field string) int64 {
	s, _ := statusField(pid, field)
	kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(s, "kB")), 10, 64)
	return kb << 10
}

// openFiles counts pid's open file descriptors.
func openFiles(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(4096)
		n += len(names)
		if err != nil {
			return n
		}
	}
}

// backends are PostgreSQL's backends of one role (children of the
// postmaster whose title names the role) and their proportional set size.
func backends(postmaster int, role string) (n int, pss int64) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if ppid, _ := statusField(pid, "PPid:"); ppid != strconv.Itoa(postmaster) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		if !bytes.HasPrefix(cmd, []byte("postgres: "+role+" ")) {
			continue
		}
		n++
		pss += rollupKB(filepath.Join(d, "smaps_rollup"), "Pss:")
	}
	return n, pss
}

// rollupKB reads a kB line of an smaps_rollup file, in bytes.
func rollupKB(path, field string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// The node's Go runtime figures read from /metrics (client_golang's Go
// collector) and its own gauge of sessions.
const (
	mGoroutines = "go_goroutines"
	mStack      = "go_memstats_stack_inuse_bytes"
	mHeapInuse  = "go_memstats_heap_inuse_bytes"
	mHeapAlloc  = "go_memstats_heap_alloc_bytes"
	mGoSys      = "go_memstats_sys_bytes"
	mActive     = "phigate_sessions_active"
)

// scrape reads the unlabelled samples of n's /metrics.
func (n *node) scrape(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+n.api+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	return gauges(io.LimitReader(resp.Body, 16<<20))
}

// gauges reads the samples without labels of a Prometheus text
// exposition: `name value`; comments and labelled samples are skipped.
func gauges(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok || name == "" || name[0] == '#' || strings.ContainsRune(name, '{') {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %s: %w", name, err)
		}
		m[name] = v
	}
	return m, sc.Err()
}

// acceptQueue reads the accept queue of the TCP listener on 127.0.0.1:port
// through sock_diag (NETLINK_INET_DIAG): for a listening socket the
// kernel reports the connections waiting for accept(2) and the backlog
// listen(2) set. It dumps listening sockets only, so it costs little
// however many connections are open.
type acceptQueue struct {
	fd   int
	port uint16
	req  []byte
	buf  []byte
}

func newAcceptQueue(port int) (*acceptQueue, error) {
	const netlinkInetDiag = 4
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, netlinkInetDiag)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	const (
		sockDiagByFamily = 20
		tcpListen        = 10
		hdrLen           = syscall.NLMSG_HDRLEN
		reqLen           = 56 // struct inet_diag_req_v2
	)
	req := make([]byte, hdrLen+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], sockDiagByFamily)
	ne.PutUint16(req[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP)
	req[hdrLen+0] = syscall.AF_INET
	req[hdrLen+1] = syscall.IPPROTO_TCP
	ne.PutUint32(req[hdrLen+4:], 1<<tcpListen)
	return &acceptQueue{fd: fd, port: uint16(port), req: req, buf: make([]byte, 64<<10)}, nil
}

func (q *acceptQueue) close() { syscall.Close(q.fd) }

// read returns the listener's queue length and backlog; found is false
// when no listener has the port.
func (q *acceptQueue) read() (queued, backlog int, found bool, err error) {
	if err := syscall.Sendto(q.fd, q.req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return 0, 0, false, fmt.Errorf("sock_diag: %w", err)
	}
	for {
		n, _, err := syscall.Recvfrom(q.fd, q.buf, 0)
		if err != nil {
			return 0, 0, false, fmt.Errorf("sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(q.buf[:n])
		if err != nil {
			return 0, 0, false, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case syscall.NLMSG_DONE:
				return queued, backlog, found, nil
			case syscall.NLMSG_ERROR:
				return 0, 0, false, fmt.Errorf("sock_diag: error reply")
			}
			d := m.Data // struct inet_diag_msg
			if len(d) < 64 || binary.BigEndian.Uint16(d[4:6]) != q.port {
				continue
			}
			ne := binary.NativeEndian
			queued, backlog, found = int(ne.Uint32(d[56:60])), int(ne.Uint32(d[60:64])), true
		}
	}
}

// listenDrops reads the kernel's TcpExt ListenOverflows (a full accept
// queue) and ListenDrops (any SYN or handshake dropped at a listener)
// counters. They count every listener of the machine.
func listenDrops() (overflows, drops int64) {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0, 0
	}
	return parseListenDrops(b)
}

func parseListenDrops(b []byte) (overflows, drops int64) {
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "TcpExt:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if i >= len(f) {
				break
			}
			v, _ := strconv.ParseInt(f[i], 10, 64)
			switch name {
			case "ListenOverflows":
				overflows = v
			case "ListenDrops":
				drops = v
			}
		}
		return overflows, drops
	}
	return 0, 0
}
