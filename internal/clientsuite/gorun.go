package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// newRunner prepares go test runs for one leg: its environment, and the
// JSON log (and go's stderr) in the work directory that every run of the
// leg appends to. Close it when the leg is done.
func (r *suiteRun) newRunner(ctx context.Context, o options, leg Leg, redact func(string) string) (*goRunner, error) {
	env, err := r.env(r, r.target(leg))
	if err != nil {
		return nil, err
	}
	g := &goRunner{r: r, o: o, env: goEnv(append(slices.Clip(r.ExtraEnv), env...)), redact: redact}
	if g.json, err = os.Create(filepath.Join(r.Dir, string(leg)+".json")); err != nil {
		return nil, err
	}
	if g.stderr, err = os.Create(filepath.Join(r.Dir, string(leg)+".stderr")); err != nil {
		g.json.Close()
		return nil, err
	}
	var why string
	if g.prefix, why = r.hostsWrapper(ctx); why != "" {
		r.HostsNote = fmt.Sprintf("tests that connect to %s fail in both legs: %s", strings.Join(r.Hosts, ", "), why)
		fmt.Println("  note: " + r.HostsNote)
	}
	return g, nil
}

// close closes the logs, scrubbing the token and the gateway's password
// from them (a test may print its connection string).
func (g *goRunner) close() {
	for _, f := range []*os.File{g.json, g.stderr} {
		f.Close()
		if b, err := os.ReadFile(f.Name()); err == nil {
			_ = os.WriteFile(f.Name(), []byte(g.redact(string(b))), 0o644)
		}
	}
}

// run runs the packages and parses the results.
//
// A package given as "path:regexp" runs only the tests the regexp selects,
// in an invocation of its own; the others run together.
//
// A panic in one test kills its package's test binary, and with it every
// test that was running in parallel or had not started yet: one flaky test
// would hide the rest of its package, in one leg and not the other (lib/pq's
// listener tests panic when a connection takes more than 100 ms). So the
// top-level tests a dead binary left unfinished are run again, each alone
// in a process of its own, in both legs alike. Tests that were running when
// the binary timed out are not: they would hang again.
func (g *goRunner) run(ctx context.Context, pkgs []string) (Results, error) {
	var plain []string
	var invs []invocation
	for _, p := range pkgs {
		path, run, filtered := strings.Cut(p, ":")
		switch {
		case g.o.run != "":
			plain = append(plain, path)
		case filtered:
			invs = append(invs, invocation{run: run, pkgs: []string{path}})
		default:
			plain = append(plain, path)
		}
	}
	if len(plain) > 0 {
		invs = append([]invocation{{run: g.o.run, pkgs: plain}}, invs...)
	}
	for _, inv := range invs {
		if err := g.test(ctx, inv.run, inv.pkgs); err != nil {
			return nil, err
		}
	}
	res, err := g.results()
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		b, _ := os.ReadFile(g.stderr.Name())
		return nil, fmt.Errorf("go test ran nothing: %s", tail(string(b), 20))
	}

	resumed := map[string]bool{}
	for _, inv := range invs {
		for _, pkg := range g.expand(res, inv.pkgs) {
			todo, err := g.unfinished(ctx, res, inv.run, pkg)
			if err != nil {
				return nil, err
			}
			if len(todo) == 0 {
				continue
			}
			fmt.Printf("  %s: the test binary died with %d top-level tests unfinished; running each alone\n", pkg, len(todo))
			if err := g.resume(ctx, pkg, todo); err != nil {
				return nil, err
			}
			resumed[PackageName(importPath(g.r.Module, pkg), g.r.Module, g.r.Root)] = true
		}
	}
	if len(resumed) > 0 {
		if res, err = g.results(); err != nil {
			return nil, err
		}
		for name := range resumed {
			res.Get(name).Resumed = true
		}
	}
	return res, nil
}

// retry runs top-level tests (IDs "pkg.TestX") again, each alone, and
// returns the leg's results with their new outcomes.
func (g *goRunner) retry(ctx context.Context, ids []string) (Results, error) {
	byPkg := map[string][]string{}
	for _, id := range ids {
		pkg, test, _ := strings.Cut(id, ".")
		byPkg[pkg] = append(byPkg[pkg], test)
	}
	for pkg, tests := range byPkg {
		pattern := "./" + pkg
		if pkg == g.r.Root {
			pattern = "."
		}
		if err := g.resume(ctx, pattern, tests); err != nil {
			return nil, err
		}
	}
	return g.results()
}

type invocation struct {
	run  string
	pkgs []string
}

// goRunner runs go test for one leg, appending to one JSON log.
type goRunner struct {
	r      *suiteRun
	o      options
	env    []string
	prefix []string // hostsWrapper's command prefix, or nil
	json   *os.File
	stderr *os.File
	redact func(string) string
}

func (g *goRunner) test(ctx context.Context, run string, pkgs []string) error {
	// -trimpath: the work directory is new each run, and without it the
	// build cache would miss and every run would rebuild the suite.
	args := []string{"go", "test", "-json", "-count=1", "-vet=off", "-trimpath", "-p", "1",
		"-parallel", fmt.Sprint(g.o.parallel), "-timeout", g.o.timeout.String()}
	if run != "" {
		args = append(args, "-run", run)
	}
	args = append(append(slices.Clip(g.prefix), args...), pkgs...)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = g.r.Src
	cmd.Env = g.env
	cmd.Stdout, cmd.Stderr = g.json, g.stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return fmt.Errorf("go test: %w", err)
	}
	return nil
}

// results parses everything the leg's JSON log holds so far; a resumed
// test's later events override its earlier ones.
func (g *goRunner) results() (Results, error) {
	if _, err := g.json.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	res, err := ParseTestJSON(g.json, g.r.Module, g.r.Root)
	if _, serr := g.json.Seek(0, io.SeekEnd); serr != nil && err == nil {
		err = serr
	}
	return res, err
}

// unfinished lists pkg's top-level tests (those run selects) that have no
// end in res, if pkg's test binary died; tests running when it timed out
// are left out.
func (g *goRunner) unfinished(ctx context.Context, res Results, run, pkg string) ([]string, error) {
	name := PackageName(importPath(g.r.Module, pkg), g.r.Module, g.r.Root)
	p := res.Get(name)
	if p.Outcome == Pass || p.Outcome == Skip {
		return nil, nil
	}
	timedOut := slices.ContainsFunc(p.Output, func(l string) bool { return strings.Contains(l, "test timed out") })
	list := run
	if list == "" {
		list = "^(Test|Example|Fuzz)"
	}
	args := append(slices.Clip(g.prefix), "go", "test", "-trimpath", "-vet=off", "-list", list, pkg)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = g.r.Src
	cmd.Env = g.env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = g.stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, nil // it does not build or list: nothing to resume
	}
	var todo []string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		t := strings.TrimSpace(sc.Text())
		if !(strings.HasPrefix(t, "Test") || strings.HasPrefix(t, "Example") || strings.HasPrefix(t, "Fuzz")) || strings.ContainsAny(t, " \t") {
			continue
		}
		switch res.Get(name + "." + t).Outcome {
		case Missing:
			todo = append(todo, t)
		case Incomplete:
			if !timedOut {
				todo = append(todo, t)
			}
		}
	}
	sort.Strings(todo)
	return todo, nil
}

// expand turns the package patterns of an invocation into the packages res
// has results for ("./..." into every package under the module).
func (g *goRunner) expand(res Results, patterns []string) []string {
	var out []string
	for _, pat := range patterns {
		if !strings.HasSuffix(pat, "...") {
			out = append(out, pat)
			continue
		}
		base := importPath(g.r.Module, strings.TrimSuffix(strings.TrimSuffix(pat, "..."), "/"))
		for id := range res {
			if !IsPackage(id) {
				continue
			}
			ip := importPath(g.r.Module, "./"+id)
			if id == g.r.Root {
				ip = g.r.Module
			}
			if ip == base || strings.HasPrefix(ip, base+"/") {
				out = append(out, "./"+strings.TrimPrefix(strings.TrimPrefix(ip, g.r.Module), "/"))
			}
		}
	}
	sort.Strings(out)
	return out
}

// resume runs each of tests alone in a test binary of its own, appending
// to the leg's log.
func (g *goRunner) resume(ctx context.Context, pkg string, tests []string) error {
	ip := importPath(g.r.Module, pkg)
	bin := filepath.Join(g.r.Dir, "bin", strings.NewReplacer("/", "_", ".", "_").Replace(ip)+".test")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-trimpath", "-vet=off", "-o", bin, pkg)
	build.Dir = g.r.Src
	build.Env = g.env
	build.Stdout, build.Stderr = g.stderr, g.stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go test -c %s: %w", pkg, err)
	}
	for _, t := range tests {
		args := append(slices.Clip(g.prefix), "go", "tool", "test2json", "-t", "-p", ip, bin,
			"-test.v=test2json", "-test.count=1", "-test.timeout="+g.o.timeout.String(),
			"-test.parallel="+fmt.Sprint(g.o.parallel), "-test.run=^"+regexp.QuoteMeta(t)+"$")
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = filepath.Join(g.r.Src, strings.TrimPrefix(ip, g.r.Module))
		cmd.Env = g.env
		cmd.Stdout, cmd.Stderr = g.json, g.stderr
		cmd.WaitDelay = 10 * time.Second
		err := cmd.Run()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return fmt.Errorf("%s -test.run %s: %w", filepath.Base(bin), t, err)
		}
	}
	return nil
}

// importPath turns a package pattern relative to the module ("./pgconn",
// ".") into its import path.
func importPath(module, pkg string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, "."), "/")
	if rel == "" {
		return module
	}
	return module + "/" + rel
}
