// Package freeport hands out loopback ports for servers that a test or a
// benchmark starts later, in this process or in a child.
//
// Asking the kernel for port 0 and closing the listener is racy in two ways
// when many test binaries run at once (go test runs packages in parallel):
// the port is in the kernel's ephemeral range, so any outgoing connection
// of any process may take it as its local port before the server binds it,
// and another process asking for port 0 may be given it again. Both
// happened in CI (memberlist: "bind: address already in use").
//
// This package picks ports below the ephemeral range, which outgoing
// connections never use, and reserves each one across processes with an
// exclusive flock on a file named after the port, held until this process
// exits. A port is handed out once per process, only when both its TCP and
// UDP sockets (memberlist gossips on both) can be bound right now.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// avoid are ports that clients give a meaning of their own: lib/pq's tests
// skip themselves when PGPORT is CockroachDB's.
var avoid = map[int]bool{26257: true}

var (
	mu    sync.Mutex
	given = map[int]*os.File{} // ports this process holds, with their lock files
)

// Port is a loopback port that no other user of this package (in any
// process) will be given while this process lives, and that was free for
// both TCP and UDP a moment ago.
func Port() (int, error) {
	lo, hi := portRange()
	dir := filepath.Join(os.TempDir(), "phigate-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	span := hi - lo
	start := rand.IntN(span)
	for i := range span {
		p := lo + (start+i)%span
		if given[p] != nil || avoid[p] {
			continue
		}
		f, ok := reserve(dir, p)
		if !ok {
			continue
		}
		if !bindable(p) {
			f.Close()
			continue
		}
		given[p] = f
		return p, nil
	}
	return 0, errors.New("freeport: no free loopback port below the ephemeral range")
}

// Addr is Port as "127.0.0.1:port".
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// Ports is n distinct ports from Port.
func Ports(n int) ([]int, error) {
	out := make([]int, 0, n)
	for range n {
		p, err := Port()
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// reserve takes the cross-process lock on port p; the lock lives as long as
// the returned file stays open (the kernel drops it when the process ends).
func reserve(dir string, p int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, false
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

func bindable(p int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// portRange is [lo, hi): from 10000 up to the start of the kernel's
// ephemeral range (net.ipv4.ip_local_port_range), or 10000–30000 when that
// cannot be read or leaves too little room.
func portRange() (lo, hi int) {
	lo, hi = 10000, 30000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	fields := strings.Fields(string(b))
	if len(fields) < 1 {
		return lo, hi
	}
	if eph, err := strconv.Atoi(fields[0]); err == nil && eph-lo >= 2000 {
		hi = eph
	}
	return lo, hi
}

// TestAddr is Addr for tests: it ends the test when no port is left.
func TestAddr(tb testing.TB) string {
	tb.Helper()
	addr, err := Addr()
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}
