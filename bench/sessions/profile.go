package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/bench/sessions/nodeprof"
)

// heapParts sort a live allocation by the first part (in this order) that
// one of its stack's functions belongs to.
var heapParts = []struct {
	name  string
	match func(fn string) bool
}{
	{"read buffers (frameReader)", funcIs("github.com/phigate/phigate/session/pgwire.newFrameReader", "github.com/phigate/phigate/session/pgwire.(*frameReader).makeRoom")},
	{"write buffers (outBuf)", funcIs("github.com/phigate/phigate/session/pgwire.newOutBuf", "github.com/phigate/phigate/session/pgwire.(*outBuf).takeBig")},
	{"TLS (crypto/tls)", funcPrefix("crypto/tls.")},
	{"upstream login (pgconn)", funcPrefix("github.com/jackc/pgx/")},
	{"recording (session, spool)", funcPrefix("github.com/phigate/phigate/session.", "github.com/phigate/phigate/storage/spool.", "github.com/phigate/phigate/session/record.")},
	{"other proxy state (pgwire)", funcPrefix("github.com/phigate/phigate/session/pgwire.")},
	{"other heap", func(string) bool { return true }},
}

func funcIs(names ...string) func(string) bool {
	return func(fn string) bool { return slices.Contains(names, fn) }
}

func funcPrefix(prefixes ...string) func(string) bool {
	return func(fn string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(fn, p) {
				return true
			}
		}
		return false
	}
}

// heapByPart sums a heap profile by part.
func heapByPart(recs []nodeprof.Record) map[string]float64 {
	out := map[string]float64{}
	for _, r := range recs {
		for _, p := range heapParts {
			if slicesAny(r.Stack, p.match) {
				out[p.name] += r.Bytes
				break
			}
		}
	}
	return out
}

func slicesAny(s []string, f func(string) bool) bool {
	for _, v := range s {
		if f(v) {
			return true
		}
	}
	return false
}

// Parts of a session's memory that do not come from the heap profile.
const (
	partStacks = "goroutine stacks"
	// partRest is RSS growth less live heap and stacks growth: heap kept
	// after collections or fragmented when positive; when negative, heap
	// the sessions were given but never touched (fresh pages of a new
	// buffer are not resident until written).
	partRest = "RSS less live heap and stacks"
)

// profileResult is what one session of phigate holds, by part, and where
// a storm's CPU goes.
type profileResult struct {
	sessions   int
	goroutines float64            // per session
	perSession map[string]float64 // bytes per session by part
	rss        float64            // RSS bytes per session
	cpuTop     string             // go tool pprof -top of the storm's CPU profile
	cpuParts   map[string]float64 // % of the node's CPU samples under each part
	storm      *stormResult
}

// cpuParts are functions (a name, or a prefix ending in '.') whose
// cumulative share of a storm's CPU profile is reported: the largest of
// the functions a prefix matches.
var cpuParts = []struct{ name, fn string }{
	{"TLS handshake with the client", "crypto/tls.(*Conn).serverHandshake"},
	{"upstream login (pgconn)", "github.com/phigate/phigate/session/pgwire.dialUpstream"},
	{"of which SCRAM key derivation (PBKDF2)", "crypto/pbkdf2."},
	{"the relay's buffers (allocated and zeroed)", "github.com/phigate/phigate/session/pgwire.(*conn).relay"},
	{"recording journal (spool)", "github.com/phigate/phigate/storage/spool."},
	{"shipping recordings to the store", "github.com/phigate/phigate/storage/ship."},
	{"garbage collection", "runtime.gcBgMarkWorker"},
}

// runProfile builds phigate with nodeprof, holds cfg.profileSessions
// sessions and compares its heap with the one before them, then takes a CPU
// profile during a storm.
func runProfile(ctx context.Context, cfg config, work string, pg *harness.Postgres, c *certs) (*profileResult, error) {
	dir := filepath.Join(work, "profile")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	harness.Logf("profile: building phigate with bench/sessions/nodeprof (go build -overlay)")
	bin := filepath.Join(dir, "phigate-nodeprof")
	if err := buildProfiled(ctx, dir, bin); err != nil {
		return nil, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	profAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	pcfg := cfg
	pcfg.phigate = bin
	pcfg.steps = []int{cfg.profileSessions}
	n, _, err := startSystem(ctx, pcfg, dir, sysPhigate, pg, c, []string{nodeprof.Env + "=" + profAddr})
	if err != nil {
		return nil, err
	}
	defer n.stop()

	base := measure(ctx, n, pg)
	heap0, err := fetchHeap(ctx, profAddr)
	if err != nil {
		return nil, err
	}
	t, err := newTarget(n.ep, true, 30*time.Second)
	if err != nil {
		return nil, err
	}
	h := &held{t: t}
	o := h.open(ctx, cfg.profileSessions, cfg.concurrency)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if o.errors > 0 {
		h.closeAll(cfg.concurrency)
		return nil, fmt.Errorf("%d sessions opened, then: %s", o.opened, strings.Join(o.first, "; "))
	}
	if !sleep(ctx, cfg.hold) {
		h.closeAll(cfg.concurrency)
		return nil, ctx.Err()
	}
	heap1, err := fetchHeap(ctx, profAddr)
	at := measure(ctx, n, pg)
	h.closeAll(cfg.concurrency)
	n.waitSessions(ctx, 0)
	if err != nil {
		return nil, err
	}
	if base.metrics == nil || at.metrics == nil {
		return nil, errors.New("no /metrics from the node")
	}
	p := &profileResult{sessions: o.opened, perSession: map[string]float64{}}
	per := func(v float64) float64 { return v / float64(o.opened) }
	b0, b1 := heapByPart(heap0), heapByPart(heap1)
	var live float64
	for _, part := range heapParts {
		d := b1[part.name] - b0[part.name]
		p.perSession[part.name] = per(d)
		live += d
	}
	stacks := at.metrics[mStack] - base.metrics[mStack]
	p.perSession[partStacks] = per(stacks)
	p.rss = per(float64(at.rss - base.rss))
	p.perSession[partRest] = p.rss - per(live+stacks)
	p.goroutines = per(at.metrics[mGoroutines] - base.metrics[mGoroutines])
	harness.Logf("profile: %d sessions, per session: RSS %s = %s", o.opened, kib(int64(p.rss)), p.split())

	if cfg.stormRate() == 0 {
		return p, nil
	}
	cpuFile := filepath.Join(dir, "storm.cpu.pprof")
	secs := max(1, int(cfg.stormDuration.Seconds()))
	var profErr error
	got := make(chan struct{})
	s, err := runStorm(ctx, n, pg, float64(cfg.stormRate()), cfg.stormDuration, func(ctx context.Context) {
		defer close(got)
		profErr = fetchTo(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", profAddr, secs), cpuFile)
	})
	if err != nil {
		return p, err
	}
	<-got
	p.storm = s
	s.log("profile")
	if profErr != nil {
		return p, profErr
	}
	if p.cpuTop, p.cpuParts, err = cpuProfile(ctx, bin, cpuFile); err != nil {
		return p, err
	}
	if err := os.WriteFile(filepath.Join(dir, "storm.cpu.txt"), []byte(p.cpuTop), 0o644); err != nil {
		return p, err
	}
	harness.Logf("profile: storm CPU: %s (go tool pprof -top: %s)", p.cpuSplit(), filepath.Join(dir, "storm.cpu.txt"))
	return p, nil
}

// split describes perSession in the order of the parts.
func (p *profileResult) split() string {
	var parts []string
	for _, name := range p.partNames() {
		parts = append(parts, fmt.Sprintf("%s %s", name, kib(int64(p.perSession[name]))))
	}
	return strings.Join(parts, ", ")
}

func (p *profileResult) partNames() []string {
	names := []string{partStacks}
	for _, part := range heapParts {
		names = append(names, part.name)
	}
	return append(names, partRest)
}

func (p *profileResult) cpuSplit() string {
	var parts []string
	for _, c := range cpuParts {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", c.name, p.cpuParts[c.name]))
	}
	return strings.Join(parts, ", ")
}

// buildProfiled builds the node from the module the benchmark runs in,
// with one more file in its main package that imports nodeprof, given by
// go build -overlay: the tree is not changed.
func buildProfiled(ctx context.Context, dir, out string) error {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	b, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return errors.New("not inside the phigate module: run from the repository, or pass -profile=false")
	}
	root := filepath.Dir(gomod)
	src := filepath.Join(dir, "zz_sessions_nodeprof.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport _ \"github.com/phigate/phigate/bench/sessions/nodeprof\"\n"), 0o644); err != nil {
		return err
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(root, "node", "cmd", "phigate", "zz_sessions_nodeprof.go"): src}})
	if err != nil {
		return err
	}
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-overlay", overlayFile, "-o", out, "./node/cmd/phigate")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -overlay: %w\n%s", err, harness.Tail(b, 3000))
	}
	return nil
}

// fetchHeap reads the node's live heap (nodeprof's /heap).
func fetchHeap(ctx context.Context, addr string) ([]nodeprof.Record, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/heap", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	var recs []nodeprof.Record
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		return nil, fmt.Errorf("heap profile: %w", err)
	}
	return recs, nil
}

// fetchTo saves url's body in path.
func fetchTo(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpuProfile runs go tool pprof on a CPU profile of bin: the top functions
// by cumulative time (text), and the share of each of cpuParts.
func cpuProfile(ctx context.Context, bin, file string) (string, map[string]float64, error) {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	out, err := exec.CommandContext(ctx, goBin, "tool", "pprof", "-top", "-cum", "-nodecount=1000", bin, file).Output()
	if err != nil {
		return "", nil, fmt.Errorf("go tool pprof: %w", err)
	}
	cum := parseTopCum(out)
	parts := map[string]float64{}
	for _, c := range cpuParts {
		for fn, v := range cum {
			if fn == c.fn || strings.HasSuffix(c.fn, ".") && strings.HasPrefix(fn, c.fn) {
				parts[c.name] = max(parts[c.name], v)
			}
		}
	}
	return topLines(out, 40), parts, nil
}

// parseTopCum reads go tool pprof -top output: each function's cum%.
func parseTopCum(out []byte) map[string]float64 {
	cum := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !strings.HasSuffix(f[4], "%") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err != nil {
			continue
		}
		name := f[5]
		cum[name] = max(cum[name], v)
	}
	return cum
}

// topLines is the first n lines of s.
func topLines(out []byte, n int) string {
	lines := strings.SplitAfterN(string(out), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "")
}
