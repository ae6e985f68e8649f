package chaos

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/spool"
)

// phigateBin is the binary under test, built once by TestMain.
var phigateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "phigate-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	phigateBin = filepath.Join(dir, "phigate")
	build := exec.Command("go", "build", "-o", phigateBin, "github.com/phigate/phigate/node/cmd/phigate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build phigate:", err)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is the setting of a scenario: a PostgreSQL, a config and a data
// directory that node processes come and go on.
type cluster struct {
	bin     string
	dir     string
	dataDir string
	config  string
	tokens  map[string]string
}

func newCluster(t *testing.T, pg *pgtest.Server) *cluster {
	t.Helper()
	ctx := context.Background()
	c := &cluster{bin: phigateBin, dir: t.TempDir(), tokens: map[string]string{"writer": "phg_chaos_writer", "root": "phg_chaos_root"}}
	c.dataDir = filepath.Join(c.dir, "data")
	if err := pg.AddUser(ctx, pgtest.User{Name: "chaos_svc", Password: "chaos-svc-pw", Auth: pgtest.AuthSCRAM}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, "chaos", "chaos_svc"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "chaos", "SET ROLE chaos_svc; CREATE TABLE events (id int PRIMARY KEY, note text)"); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(c.dir, "svc.pw")
	if err := os.WriteFile(pw, []byte("chaos-svc-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.config = filepath.Join(c.dir, "phigate.yaml")
	cfg := fmt.Sprintf(`node: {id: chaos-node, data_dir: %s}
listen: {postgres: "127.0.0.1:%%d", cleartext_loopback: true, api: "127.0.0.1:%%d"}
limits: {drain_timeout: 2s}
identities: {tokens: [{name: writer, kind: ci, groups: [writers], token_sha256: %s}, {name: root, kind: human, groups: [admins], token_sha256: %s}]}
resources: [{name: chaos, address: %q, database: chaos, user: chaos_svc, password_file: %s, tls: disable}]
grants: [{name: writers, groups: [writers], resources: [chaos], allow: [read, write]}]
admins: {groups: [admins]}
`, c.dataDir, identity.HashToken(c.tokens["writer"]), identity.HashToken(c.tokens["root"]), pg.Addr(), pw)
	if err := os.WriteFile(c.config+".tmpl", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cluster) recordings() string { return filepath.Join(c.dataDir, node.RecordingsSubdir) }

type nodeProc struct {
	cmd     *exec.Cmd
	port    int
	apiPort int
	done    chan error
	log     string
}

// startNode runs `phigate node` on a fresh port and waits until it accepts
// connections.
func (c *cluster) startNode(t *testing.T) *nodeProc {
	t.Helper()
	ports := freePorts(t, 2)
	port, apiPort := ports[0], ports[1]
	tmpl, err := os.ReadFile(c.config + ".tmpl")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.config, []byte(fmt.Sprintf(string(tmpl), port, apiPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(c.dir, fmt.Sprintf("node-%d.log", port))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "node", "--config", c.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := pgtest.Spawn(cmd, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n := &nodeProc{cmd: cmd, port: port, apiPort: apiPort, done: make(chan error, 1), log: logPath}
	go func() { n.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() { pgtest.KillGroup(cmd.Process.Pid) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
			return n
		}
		select {
		case err := <-n.done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("node exited: %v\n%s", err, b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("node did not start listening")
		}
	}
}

func (c *cluster) dsn(n *nodeProc, who string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=chaos sslmode=disable", n.port, who, c.tokens[who])
}

// kill ends the node the way a crash or the OOM killer would.
func (n *nodeProc) kill(t *testing.T) {
	t.Helper()
	pgtest.KillGroup(n.cmd.Process.Pid)
	<-n.done
}

// stop ends the node cleanly (SIGTERM) and checks it exits 0.
func (n *nodeProc) stop(t *testing.T) {
	t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		if err != nil {
			b, _ := os.ReadFile(n.log)
			t.Fatalf("node exit: %v\n%s", err, b)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node did not stop on SIGTERM")
	}
}

// waitShipped waits until the node has no session open and no recording
// waiting for the store (phigate_sessions_active and
// phigate_ship_backlog_bytes 0 on its API), twice, more than a shipper tick
// apart (a session that just ended is counted at the next tick).
func (c *cluster) waitShipped(t *testing.T, n *nodeProc) {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(c.dataDir, "tls", "dev-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	deadline := time.Now().Add(time.Minute)
	var last string
	idle := 0
	for {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", n.apiPort))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "\nphigate_ship_backlog_bytes 0\n") && strings.Contains(string(b), "\nphigate_sessions_active 0\n") {
				if idle++; idle == 2 {
					return
				}
				time.Sleep(500 * time.Millisecond)
				continue
			}
			idle = 0
			for line := range strings.Lines(string(b)) {
				if strings.HasPrefix(line, "phigate_ship_") {
					last += line
				}
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(n.log)
			t.Fatalf("the node did not ship its recordings within a minute (%v)\n%s\n%s", err, last, log)
		}
		last = ""
		time.Sleep(100 * time.Millisecond)
	}
}

// store is the node's store (its default: data_dir/store).
func (c *cluster) store() string { return filepath.Join(c.dataDir, node.StoreSubdir) }

// recordingStore reads the node's recordings wherever they are: its spool,
// or its store (decrypted with the development auditor key Init made).
func (c *cluster) recordingStore(t *testing.T) replay.Store {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dataDir, "keys", "auditor.key"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := proof.ParsePrivate(b)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := blob.NewFS(c.store())
	if err != nil {
		t.Fatal(err)
	}
	return replay.Union{spool.DirStore{Dir: c.recordings()},
		&archive.ReplayStore{Archive: &archive.Archive{Store: fs}, Auditor: priv,
			Record: func(context.Context, string) (func(int, error), error) { return func(int, error) {}, nil }}}
}

// events returns a recorded session's events, verified.
func events(t *testing.T, store replay.Store, id string) []*record.Event {
	t.Helper()
	var buf bytes.Buffer
	if err := replay.PrintSession(context.Background(), &buf, store, id, replay.Options{JSON: true}); err != nil {
		t.Fatalf("session %s: %v", id, err)
	}
	var out []*record.Event
	for line := range strings.Lines(buf.String()) {
		var ev record.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, &ev)
	}
	return out
}
