package miniotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/phigate/phigate/internal/freeport"
	"github.com/phigate/phigate/internal/pgtest"
)

// Version is the MinIO release `make minio` builds; the Makefile's
// MINIO_VERSION must say the same.
const Version = "v0.0.0-20260212201848-7aac2a2c5b7c"

// Binary returns the MinIO server binary: $PHIGATE_MINIO if set, else
// $XDG_CACHE_HOME/phigate/minio-<Version>/minio (~/.cache when unset).
func Binary() (string, error) {
	if p := os.Getenv("PHIGATE_MINIO"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("miniotest: PHIGATE_MINIO=%s: %w (run `make minio`)", p, err)
		}
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("miniotest: no cache directory for the MinIO binary: %w (run `make minio` or set PHIGATE_MINIO)", err)
	}
	p := filepath.Join(cache, "phigate", "minio-"+Version, "minio")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("miniotest: MinIO server binary %s not found: run `make minio` (it builds MinIO %s once, outside the repository) or set PHIGATE_MINIO", p, Version)
	}
	return p, nil
}

// Server is a running MinIO server.
type Server struct {
	dir       string
	addr      string
	accessKey string
	secretKey string
	logPath   string

	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	stopOnce sync.Once
	stopErr  error
	keepAddr bool // Restart: the same address again
}

// Restart starts a stopped server again on the same address, with the same
// credentials and drive (its buckets and objects are still there): a
// store outage and its end, for tests.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	bin, err := Binary()
	if err != nil {
		return err
	}
	s.keepAddr = true
	s.stopOnce, s.stopErr = sync.Once{}, nil
	for attempt := 0; ; attempt++ {
		err = s.start(ctx, bin)
		if err == nil || attempt == 5 || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Second) // the port may still be in TIME_WAIT
	}
}

// Start starts a server with its drive in dir/data and its log in
// dir/minio.log, and waits until it is ready. ctx bounds the start only.
func Start(ctx context.Context, dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("miniotest: %w", err)
	}
	s := &Server{dir: dir, logPath: filepath.Join(dir, "minio.log"), accessKey: "phigate-" + randHex(4), secretKey: randHex(20)}
	for attempt := 0; ; attempt++ {
		err = s.start(ctx, bin)
		if err == nil || attempt == 2 || ctx.Err() != nil {
			return s, err
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort() (int, error) { return freeport.Port() }

func (s *Server) start(ctx context.Context, bin string) error {
	if !s.keepAddr {
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("miniotest: %w", err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("miniotest: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "server", "--quiet", "--address", s.addr, filepath.Join(s.dir, "data"))
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.accessKey,
		"MINIO_ROOT_PASSWORD="+s.secretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CONFIG_ENV_FILE=",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := pgtest.Spawn(cmd, syscall.SIGTERM); err != nil {
		return fmt.Errorf("miniotest: start minio: %w", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	exited := s.exited
	go func() {
		s.exitErr = cmd.Wait()
		close(exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		pgtest.KillGroup(cmd.Process.Pid)
		<-exited
		s.cmd = nil
		log, _ := os.ReadFile(s.logPath)
		if len(log) > 4000 {
			log = log[len(log)-4000:]
		}
		return fmt.Errorf("miniotest: minio did not start: %w\n%s", err, log)
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	url := "http://" + s.addr + "/minio/health/ready"
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		last = err
		select {
		case <-s.exited:
			return fmt.Errorf("minio exited: %v", s.exitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Addr is host:port.
func (s *Server) Addr() string { return s.addr }

// URL is the endpoint, http://host:port.
func (s *Server) URL() string { return "http://" + s.addr }

// RootCredentials returns the root user's access and secret key.
func (s *Server) RootCredentials() (accessKey, secretKey string) { return s.accessKey, s.secretKey }

// Client returns a client logged in as the root user.
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(s.addr, &minio.Options{Creds: credentials.NewStaticV4(s.accessKey, s.secretKey, "")})
}

var bucketSeq struct {
	mu sync.Mutex
	n  int
}

func (s *Server) makeBucket(t testing.TB, locked bool) string {
	t.Helper()
	bucketSeq.mu.Lock()
	bucketSeq.n++
	name := fmt.Sprintf("t%d-%s", bucketSeq.n, randHex(4))
	bucketSeq.mu.Unlock()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{ObjectLocking: locked}); err != nil {
		t.Fatalf("miniotest: make bucket %s: %v", name, err)
	}
	return name
}

// MakeBucket makes a fresh bucket with versioning and object lock enabled
// (S3 enables versioning with object lock) and returns its name.
func (s *Server) MakeBucket(t testing.TB) string { return s.makeBucket(t, true) }

// MakePlainBucket makes a fresh bucket without versioning or object lock.
func (s *Server) MakePlainBucket(t testing.TB) string { return s.makeBucket(t, false) }

// Stop stops the server (SIGTERM, then SIGKILL of its group after 10 s)
// and waits for it. The directory is left to its owner. Idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cmd == nil {
			return
		}
		pid := s.cmd.Process.Pid
		_ = syscall.Kill(pid, syscall.SIGTERM)
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-s.exited:
		case <-t.C:
			s.stopErr = errors.New("miniotest: minio ignored SIGTERM; killed")
		}
		pgtest.KillGroup(pid)
		<-s.exited
	})
	return s.stopErr
}

var shared struct {
	mu  sync.Mutex
	srv *Server
	dir string
	err error
}

// Shared returns the test binary's server, starting it on first use. Tests
// make their own buckets (MakeBucket). Stop it from TestMain with Main.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "miniotest-")
		if shared.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			shared.srv, shared.err = Start(ctx, shared.dir)
			cancel()
		}
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.srv
}

// Main runs the tests, then stops the Shared server, if one was started,
// and removes its directory:
//
//	func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }
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
