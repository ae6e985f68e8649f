package pgtest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// New starts a server for one test in a t.TempDir and stops it when the test
// ends (before the directory is removed).
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

var shared struct {
	mu  sync.Mutex
	srv *Server
	dir string
	err error
}

// Shared returns the package's shared server, starting it on first use: a
// plain server (the zero Options) that every test of the test binary uses.
// Tests add the roles they need with AddUser and should make their own
// databases (CreateDatabase) so that they do not see each other's tables.
//
// Stop it from TestMain with Main; without that it still dies with the test
// binary (parent-death signal), but its temporary directory is left behind.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "pgtest-shared-")
		if shared.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			shared.srv, shared.err = Start(ctx, shared.dir, Options{})
			cancel()
		}
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.srv
}

// Main runs the tests and then stops the Shared server, if one was started,
// and removes its directory. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			if code == 0 {
				code = 1
			}
		}
		shared.srv = nil
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
		shared.dir = ""
	}
	return code
}
