package harness

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Main is a benchmark program's main: it reads the command line with parse
// (an error exits 2), then calls run with a context that the first Ctrl-C
// (or SIGTERM) cancels, so that run stops its children in order; a second
// one kills the program at once, and the children then die by their
// parent-death signal (see [StartProcess]). An error from run exits 1.
// Errors are printed after prog.
func Main[C any](prog string, parse func(args []string) (C, error), run func(context.Context, C) error) {
	cfg, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the next signal gets the default action
	}()
	err = run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(1)
	}
}

// WorkDir returns the directory the servers of a run work in: dir when it
// is set (created if need be, and kept), else a new temporary directory
// named after pattern (as os.MkdirTemp), which cleanup removes unless keep.
// A directory that is kept is named through logf.
func WorkDir(dir, pattern string, keep bool, logf func(string, ...any)) (work string, cleanup func(), err error) {
	cleanup = func() {}
	if dir != "" {
		keep = true
	} else {
		if dir, err = os.MkdirTemp("", pattern); err != nil {
			return "", nil, err
		}
		if !keep {
			cleanup = func() { os.RemoveAll(dir) }
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		cleanup()
		return "", nil, err
	}
	if keep {
		logf("working directory %s (kept)", dir)
	}
	return dir, cleanup, nil
}

// Logf is the benchmark programs' progress log: one line on stderr, after
// the time of day. It is the logf the harness's starters take.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// SplitList reads a comma-separated flag value: its items trimmed, empty
// ones dropped.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
