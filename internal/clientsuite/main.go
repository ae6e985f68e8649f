// Command clientsuite is what `make test-clients` runs: real PostgreSQL
// clients' own test suites (pgx v5 and lib/pq, the versions in suites.go),
// each run twice against the same throwaway PostgreSQL 15 set up the way
// the suite's CI sets it up: once directly, once through a phigate node
// that allows every statement class and masks nothing. Every test that
// passes directly must pass through phigate, unless expected-differences.txt
// lists it with the reason it differs on purpose.
//
// It prints a summary (and writes it to --results), and exits 1 on any
// unexpected difference (and, with --strict, on listed tests that now pass).
// It never prints the token or the gateway's password: both are made up per
// run, and every line it prints from a test is scrubbed of them.
//
// It is test tooling, like internal/pgtest: the gateway never depends on it.
// It changes nothing outside its work directory (the module cache aside):
// the suites' extra host names are given in a private mount namespace, never
// by editing /etc/hosts.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
)

type options struct {
	phigate  string
	suites   []string
	expected string
	results  string
	work     string
	keep     bool
	strict   bool
	parallel int
	timeout  time.Duration
	run      string
	packages []string
	verbose  bool
	tmpfs    bool
	hold     bool
	retries  int
}

func main() {
	var o options
	var suites, packages string
	flag.StringVar(&o.phigate, "phigate", "bin/phigate", "the phigate binary (make build)")
	flag.StringVar(&suites, "suites", "pgx,pq,pq-binary", "suites to run: pgx, pq (lib/pq), pq-binary (lib/pq with PQTEST_BINARY_PARAMETERS=yes)")
	flag.StringVar(&o.expected, "expected", "internal/clientsuite/expected-differences.txt", "the expectations file")
	flag.StringVar(&o.results, "results", "", "directory to write summary.txt to (empty: do not write)")
	flag.StringVar(&o.work, "work", "", "work directory (empty: a temporary one, removed unless --keep)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (sources, go test JSON, node log, recordings)")
	flag.BoolVar(&o.strict, "strict", false, "fail when a listed test now passes through phigate (stale entry)")
	flag.IntVar(&o.parallel, "parallel", 2, "go test -parallel (tests run one package at a time, -p 1)")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "go test -timeout, per package")
	flag.StringVar(&o.run, "run", "", "go test -run: only these tests (for investigating; the comparison then covers only them)")
	flag.StringVar(&packages, "packages", "", "comma-separated packages, overriding the suites' own list (for investigating)")
	flag.BoolVar(&o.verbose, "v", false, "print the output of every differing test, expected ones too")
	flag.IntVar(&o.retries, "retries", 2, "retry a difference no entry explains this many times through phigate (each test alone); passing on a retry is reported as flaky")
	flag.BoolVar(&o.hold, "hold", false, "set up the first suite's PostgreSQL and node, print how to reach them, and wait for Ctrl-C (for reproducing a failure by hand)")
	flag.BoolVar(&o.tmpfs, "recordings-tmpfs", true, "keep the node's recordings on /dev/shm when it exists (see nodeDataDir)")
	flag.Parse()
	o.suites = strings.Split(suites, ",")
	if packages != "" {
		o.packages = strings.Split(packages, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clientsuite:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) (bool, error) {
	start := time.Now()
	phigate, err := filepath.Abs(o.phigate)
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(phigate); err != nil {
		return false, fmt.Errorf("%s not found: run `make build` first", o.phigate)
	}
	f, err := os.Open(o.expected)
	if err != nil {
		return false, err
	}
	exps, err := ParseExpectations(f)
	f.Close()
	if err != nil {
		return false, err
	}
	var selected []*suite
	for _, name := range o.suites {
		i := slices.IndexFunc(allSuites, func(s *suite) bool { return s.Name == name })
		if i < 0 {
			return false, fmt.Errorf("unknown suite %q", name)
		}
		selected = append(selected, allSuites[i])
	}
	for _, e := range exps {
		if !slices.ContainsFunc(allSuites, func(s *suite) bool { return s.Name == e.Suite }) {
			return false, fmt.Errorf("%s line %d: unknown suite %q", o.expected, e.Line, e.Suite)
		}
	}

	work := o.work
	if work == "" {
		if work, err = os.MkdirTemp("", "phigate-clientsuite-"); err != nil {
			return false, err
		}
		if o.keep {
			defer fmt.Printf("kept %s\n", work)
		} else {
			defer os.RemoveAll(work)
		}
	} else if work, err = filepath.Abs(work); err != nil {
		return false, err
	}

	version, _ := exec.CommandContext(ctx, phigate, "version").Output()
	rep := &report{Phigate: strings.TrimSpace(string(version)), Run: o.run}
	for _, s := range selected {
		var mine []Expectation
		for _, e := range exps {
			if e.Suite == s.Name {
				mine = append(mine, e)
			}
		}
		sr, err := runSuite(ctx, o, phigate, filepath.Join(work, s.Name), s, mine)
		if err != nil {
			return false, fmt.Errorf("%s: %w", s.Name, err)
		}
		rep.Suites = append(rep.Suites, sr)
		if rep.Postgres == "" {
			rep.Postgres = sr.postgres
		}
	}
	rep.Elapsed = time.Since(start)
	text := rep.String(o.verbose)
	fmt.Print("\n" + text)
	if o.results != "" {
		if err := os.MkdirAll(o.results, 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(filepath.Join(o.results, "summary.txt"), []byte(rep.File()), 0o644); err != nil {
			return false, err
		}
	}
	return rep.OK(o.strict), nil
}

// suiteReport is one suite's outcome.
type suiteReport struct {
	*suite
	*Comparison
	Packages []string
	Legs     map[Leg]time.Duration
	// Flaky are the top-level tests that passed directly, failed through
	// phigate (themselves or a subtest), then passed on a retry.
	Flaky     []string
	HostsNote string
	// Crashes are the node's unexpected exits during the run.
	Crashes  []string
	postgres string
	redact   func(string) string
}

func runSuite(ctx context.Context, o options, phigate, dir string, s *suite, exps []Expectation) (*suiteReport, error) {
	step("%s %s: sources, PostgreSQL 15, phigate node", s.Module, s.Version)
	r := &suiteRun{suite: s, Dir: dir, Src: filepath.Join(dir, "src"), Certs: filepath.Join(dir, "certs"),
		GatewayPassword: secret(), Token: "phg_" + secret()}
	redact := strings.NewReplacer(r.Token, "[token]", r.GatewayPassword, "[gateway-password]").Replace
	for _, d := range []string{r.Src, r.Certs, filepath.Join(dir, "node")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	modDir, err := moduleDir(ctx, s.Module, s.Version)
	if err != nil {
		return nil, err
	}
	if err := copyTree(modDir, r.Src); err != nil {
		return nil, fmt.Errorf("copy %s: %w", modDir, err)
	}
	settings, err := s.prepare(r)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	port, err := freePortAvoiding()
	if err != nil {
		return nil, err
	}
	pg, err := pgtest.Start(ctx, filepath.Join(dir, "pg"), pgtest.Options{Port: port, Settings: settings})
	if err != nil {
		return nil, err
	}
	defer pg.Stop()
	r.PG = pg
	if err := pg.AddUser(ctx, pgtest.User{Name: gatewayRole, Password: r.GatewayPassword, Superuser: true}); err != nil {
		return nil, err
	}
	if err := s.setup(ctx, r); err != nil {
		return nil, fmt.Errorf("database setup: %w", err)
	}
	if err := r.resetDatabase(ctx); err != nil {
		return nil, err
	}
	dataDir, err := nodeDataDir(o, dir, s.Name)
	if err != nil {
		return nil, err
	}
	if dataDir != filepath.Join(dir, "node", "data") && !o.keep {
		defer os.RemoveAll(dataDir)
	}
	pwFile := filepath.Join(dir, "node", "gateway.pw")
	if err := os.WriteFile(pwFile, []byte(r.GatewayPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	r.Node, err = startNode(ctx, phigate, nodeSpec{
		Dir: filepath.Join(dir, "node"), DataDir: dataDir, Resource: s.Database, UpstreamAddr: pg.Addr(),
		GatewayUser: gatewayRole, PasswordFile: pwFile, UpstreamCA: r.CA, UpstreamName: r.ServerName,
		CertFile: r.ServerCert, KeyFile: r.ServerKey, Token: r.Token,
	})
	if err != nil {
		return nil, err
	}
	defer r.Node.stop()
	pgVersion := r.serverVersion(ctx)
	fmt.Printf("  PostgreSQL %s on 127.0.0.1:%d, phigate node on 127.0.0.1:%d\n", pgVersion, pg.Port(), r.Node.port)
	if o.hold {
		return nil, r.hold(ctx)
	}

	pkgs := s.Packages
	if len(o.packages) > 0 {
		pkgs = o.packages
	}
	rep := &suiteReport{suite: s, Packages: pkgs, Legs: map[Leg]time.Duration{}, postgres: pgVersion, redact: redact}
	results := map[Leg]Results{}
	runners := map[Leg]*goRunner{}
	for _, leg := range []Leg{Direct, Phigate} {
		if leg == Phigate {
			if err := r.resetDatabase(ctx); err != nil {
				return nil, err
			}
		}
		step("%s: %s leg: go test %s", s.Name, leg, strings.Join(pkgs, " "))
		t0 := time.Now()
		g, err := r.newRunner(ctx, o, leg, redact)
		if err != nil {
			return nil, err
		}
		defer g.close()
		runners[leg] = g
		res, err := g.run(ctx, pkgs)
		if err != nil {
			return nil, err
		}
		rep.Legs[leg] = time.Since(t0)
		results[leg] = res
		fmt.Printf("  %d tests: %d passed, %d failed, %d skipped, %d incomplete (%s)\n",
			len(res.Tests()), res.Count(Pass), res.Count(Fail), res.Count(Skip), res.Count(Incomplete),
			rep.Legs[leg].Round(time.Second))
	}
	first := Compare(s.Name, results[Direct], results[Phigate], exps)
	// Timing-sensitive tests (lib/pq wants a connection within 100 ms, a
	// cancelled query back within 50 ms) fail now and then on a loaded
	// 2-core machine. A difference no entry explains gets o.retries more
	// chances in the phigate leg, each test alone; one that then passes is
	// reported as flaky, not hidden.
	for attempt := 0; attempt < o.retries; attempt++ {
		todo := topLevel(Compare(s.Name, results[Direct], results[Phigate], exps).Unexpected())
		if len(todo) == 0 {
			break
		}
		if len(todo) > maxRetried {
			fmt.Printf("  not retrying: %d top-level tests differ, more than flakiness explains\n", len(todo))
			break
		}
		fmt.Printf("  retrying %d top-level tests through phigate, each alone: %s\n", len(todo), strings.Join(todo, " "))
		t0 := time.Now()
		res, err := runners[Phigate].retry(ctx, todo)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			fmt.Printf("  retry: %v\n", err)
			break
		}
		rep.Legs[Phigate] += time.Since(t0)
		results[Phigate] = res
	}
	rep.Comparison = Compare(s.Name, results[Direct], results[Phigate], exps)
	var flaky []Difference
	for _, d := range first.Unexpected() {
		if results[Phigate].Get(d.ID).Outcome == Pass {
			flaky = append(flaky, d)
		}
	}
	rep.Flaky = topLevel(flaky)
	if o.run != "" || len(o.packages) > 0 {
		// A partial run cannot tell a stale entry from one it did not run.
		rep.NotCompared = append(rep.NotCompared, rep.Stale...)
		rep.Stale = nil
	}
	if err := r.Node.stop(); err != nil {
		fmt.Println("  " + err.Error())
	}
	rep.Crashes = r.Node.Crashes()
	rep.HostsNote = r.HostsNote
	return rep, nil
}

// maxRetried: when more top-level tests than this differ, something is
// broken, not flaky, and retrying them would only stretch the run.
const maxRetried = 20

// topLevel returns the distinct top-level tests of the differences.
func topLevel(ds []Difference) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range ds {
		pkg, test, _ := strings.Cut(d.ID, ".")
		test, _, _ = strings.Cut(test, "/")
		id := pkg + "." + test
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// nodeDataDir is where the node keeps its recordings. Every command is
// made durable (fdatasync) before it runs; on this harness's disks that
// wait, not the proxy, dominates the phigate leg (a notify-heavy pgx test:
// 2m36s on disk, 40s on tmpfs). Durability is what chaos/ and the spool
// tests check; here it would only stretch the run, so the recordings go to
// tmpfs when there is one. The node does the same work either way.
func nodeDataDir(o options, dir, suite string) (string, error) {
	if o.tmpfs {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			return os.MkdirTemp("/dev/shm", "phigate-clientsuite-"+suite+"-")
		}
	}
	return filepath.Join(dir, "node", "data"), nil
}

// cleanEnv is this process's environment without anything that could point
// a PostgreSQL client or a suite somewhere else (PG*, PGX_*, PQ*), plus
// extra.
func cleanEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "PQ") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// goEnv is cleanEnv for the go command: the suites are modules of their own,
// built with this toolchain, outside any workspace, with this user's
// caches even where a suite's environment moves HOME.
func goEnv(extra []string) []string {
	var env []string
	for _, kv := range cleanEnv(nil) {
		if strings.HasPrefix(kv, "GOFLAGS=") || strings.HasPrefix(kv, "GOWORK=") || strings.HasPrefix(kv, "GOTOOLCHAIN=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod")
	env = append(env, goCaches()...)
	return append(env, extra...)
}

var goCaches = sync.OnceValue(func() []string {
	var env []string
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOENV"} {
		out, err := exec.Command("go", "env", v).Output()
		if err == nil && len(bytes.TrimSpace(out)) > 0 {
			env = append(env, v+"="+string(bytes.TrimSpace(out)))
		}
	}
	return env
})

// hold keeps the suite's server and node up for an investigator. The token
// is written to a file, never printed.
func (r *suiteRun) hold(ctx context.Context) error {
	tokenFile := filepath.Join(r.Dir, "node", "token")
	if err := os.WriteFile(tokenFile, []byte(r.Token+"\n"), 0o600); err != nil {
		return err
	}
	for _, leg := range []Leg{Direct, Phigate} {
		env, err := r.env(r, r.target(leg))
		if err != nil {
			return err
		}
		fmt.Printf("\n%s leg environment:\n", leg)
		for _, kv := range append(slices.Clip(r.ExtraEnv), env...) {
			fmt.Printf("  export %s\n", strings.NewReplacer(r.Token, "$(cat "+tokenFile+")").Replace(shellQuote(kv)))
		}
	}
	fmt.Printf("\nsources in %s; node log %s; the token is in %s\nholding until Ctrl-C\n",
		r.Src, filepath.Join(r.Dir, "node", "node.log"), tokenFile)
	<-ctx.Done()
	return errors.New("stopped")
}

func shellQuote(kv string) string {
	k, v, _ := strings.Cut(kv, "=")
	return k + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`").Replace(v) + `"`
}

// serverVersion asks the server, as the gateway's role, for its version.
func (r *suiteRun) serverVersion(ctx context.Context) string {
	c, err := pgconn.Connect(ctx, r.PG.DSN(gatewayRole, r.GatewayPassword, "postgres"))
	if err != nil {
		return "?"
	}
	defer c.Close(ctx)
	res, err := c.Exec(ctx, "SHOW server_version").ReadAll()
	if err != nil || len(res) == 0 || len(res[0].Rows) == 0 {
		return "?"
	}
	return string(res[0].Rows[0][0])
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func secret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
