package node

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadiness: /readyz is 503 with a reason before Start, 200 once
// serving, 503 after a background failure, and 503 once Close has begun.
func TestReadiness(t *testing.T) {
	cfg, err := ParseConfig([]byte("node: {id: ready-node, data_dir: " + filepath.Join(t.TempDir(), "data") + "}\nlisten: {postgres: '127.0.0.1:0', api: '127.0.0.1:0'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := Init(cfg, logger); err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if why := n.notReady(); why != "not started" {
		t.Fatalf("before Start: %q", why)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	readyz := func() (int, string) {
		t.Helper()
		resp, err := client.Get("https://" + n.APIAddr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("started: %d %q", code, body)
	}
	n.fail(errors.New("spool: test failure"))
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "background failure") || strings.Count(body, "\n") != 1 {
		t.Fatalf("after a failure: %d %q", code, body)
	}
	<-n.Err()
	n.mu.Lock()
	n.failed = false
	n.closed = true // as Close sets it first, before it drains the sessions
	n.mu.Unlock()
	if code, body := readyz(); code != http.StatusServiceUnavailable || strings.TrimSpace(body) != "shutting down" {
		t.Fatalf("closing: %d %q", code, body)
	}
}

// TestMetricsHotPathAllocatesNothing: counting a command or a session end
// on the data path costs no allocation.
func TestMetricsHotPathAllocatesNothing(t *testing.T) {
	m := newMetrics(nil, nil)
	if n := testing.AllocsPerRun(100, func() {
		m.Command("read", true)
		m.Command("ddl", false)
		m.SessionStarted()
		m.SessionEnded("terminate")
		m.Masked(3)
	}); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}
