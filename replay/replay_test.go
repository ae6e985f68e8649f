package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage"
	"github.com/phigate/phigate/storage/spool"
)

var t0 = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

// session records events through the real chain and spool.
type session struct {
	t     *testing.T
	sp    *spool.Spool
	id    string
	chain *record.Chain
	log   *spool.Log
	n     int
}

func newSession(t *testing.T, sp *spool.Spool, id string) *session {
	l, err := sp.Create(id)
	if err != nil {
		t.Fatal(err)
	}
	return &session{t: t, sp: sp, id: id, chain: record.NewChain(id), log: l}
}

func (s *session) add(ev *record.Event) {
	s.t.Helper()
	ev.Time = t0.Add(time.Duration(s.n) * 1500 * time.Microsecond)
	ev.Node, ev.Identity, ev.Resource = "node-1", "claims-agent", "patients"
	s.n++
	frame, err := s.chain.Seal(nil, ev)
	if err != nil {
		s.t.Fatal(err)
	}
	lsn, err := s.log.Append(frame)
	if err == nil {
		err = s.sp.Wait(context.Background(), lsn)
	}
	if err != nil {
		s.t.Fatal(err)
	}
}

// typical records a session like the demo's: masked read, failed query,
// a parameterized statement, a denied DDL, COPY data.
func (s *session) typical() {
	s.add(&record.Event{Kind: record.KindSessionStart, Start: &record.SessionStart{Protocol: "postgres", Client: "10.1.2.3:50412",
		TLS: true, TLSVersion: "TLS 1.3", IdentityKind: "agent", Groups: []string{"billing", "research"}, User: "claims-agent",
		Database: "patients", Application: "psql", Grant: "agents-read", Masking: "phi-default", Upstream: "127.0.0.1:5432"}})
	s.add(&record.Event{Kind: record.KindCommand, Command: &record.Command{ID: 1, Protocol: record.ProtocolPostgres,
		Postgres: &record.PostgresCommand{Flow: record.FlowSimple, SQL: "SELECT name, ssn\n  FROM patients\n WHERE id < 3"}, Classes: []string{"read"}, Decision: "allow", Rule: "agents-read"}})
	s.add(&record.Event{Kind: record.KindResult, Result: &record.Result{Command: 1, Tag: "SELECT 2", Rows: 2, Bytes: 184, DurationUS: 1234,
		Masked: []record.MaskedColumn{{Column: "ssn", Source: "public.patients.ssn", Rule: "ssn", Action: "keep-last-4", Values: 2}}}})
	s.add(&record.Event{Kind: record.KindCommand, Command: &record.Command{ID: 2, Protocol: record.ProtocolPostgres,
		Postgres: &record.PostgresCommand{Flow: record.FlowExtended, Step: record.StepExecute, Statement: "s1",
			SQL: "SELECT note FROM notes WHERE patient = $1 AND kind = $2", Params: []record.Param{{Value: "O'Brien"}, {Null: true}, {Format: "binary", Value: "AAAAKg=="}}},
		Decision: "allow", Rule: "agents-read"}})
	s.add(&record.Event{Kind: record.KindResult, Result: &record.Result{Command: 2, DurationUS: 700,
		Error: &record.SQLError{Code: "42P01", Message: `relation "notes" does not exist`, Source: "upstream"}}})
	s.add(&record.Event{Kind: record.KindCommand, Command: &record.Command{ID: 3, Protocol: record.ProtocolPostgres,
		Postgres: &record.PostgresCommand{Flow: record.FlowSimple, SQL: "DROP TABLE patients\x1b[2J"}, Classes: []string{"ddl"}, Decision: "deny", Reason: "ddl is not granted"}})
	s.add(&record.Event{Kind: record.KindCopyData, Copy: &record.CopyData{Command: 4, Data: []byte("1\tJane Doe\t1980-02-03\n2\tJohn Roe\t1975-12-01\n")}})
}

func (s *session) end(reason string) {
	s.add(&record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: reason, Commands: 3, DurationUS: 9000}})
	if err := s.log.Close(context.Background()); err != nil {
		s.t.Fatal(err)
	}
}

// runSpool opens a spool in dir and runs it until stop is called (or the test ends).
func runSpool(t *testing.T, dir string) (sp *spool.Spool, stop func()) {
	sp, err := spool.Open(spool.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("spool: %v", err)
		}
		sp.Close()
	}
	t.Cleanup(stop)
	return sp, stop
}

const (
	idClosed = "01JDZ3Y6W5K8Q2M4N7P9R1S3T1"
	idOpen   = "01JDZ3Y6W5K8Q2M4N7P9R1S3T2"
	idBroken = "01JDZ3Y6W5K8Q2M4N7P9R1S3T3"
	idCut    = "01JDZ3Y6W5K8Q2M4N7P9R1S3T4"
)

func recordClosed(t *testing.T, dir string) {
	sp, stop := runSpool(t, dir)
	s := newSession(t, sp, idClosed)
	s.typical()
	s.end("terminate")
	stop()
}

func TestPrintTrail(t *testing.T) {
	dir := t.TempDir()
	recordClosed(t, dir)
	var out bytes.Buffer
	if err := PrintSession(context.Background(), &out, spool.DirStore{Dir: dir}, idClosed, Options{}); err != nil {
		t.Fatalf("print: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"session " + idClosed,
		"#0     2026-11-25 20:00:00.000000Z  session.start",
		"identity   claims-agent",
		"resource   patients",
		"kind       agent; groups billing, research",
		"client     postgres, from 10.1.2.3:50412, TLS 1.3",
		"startup    user claims-agent, database patients, application psql",
		"masking    phi-default",
		"#1     2026-11-25 20:00:00.001500Z  command 1 · simple · allowed by agents-read",
		"sql        SELECT name, ssn\n" + indent + "             FROM patients\n" + indent + "            WHERE id < 3\n",
		"result of command 1 · SELECT 2 · 2 rows · 184 bytes · 1.234 ms",
		"masked     ssn (public.patients.ssn): keep-last-4 by rule ssn, 2 values",
		`command 2 · extended · statement "s1" · allowed by agents-read`,
		"params     $1 = 'O''Brien'",
		"$2 = NULL",
		"$3 = binary, base64 AAAAKg==",
		"result of command 2 · ERROR 42P01 from upstream · 0 rows · 0 bytes · 0.700 ms",
		`error      relation "notes" does not exist`,
		"command 3 · simple · DENIED",
		"reason     ddl is not granted",
		`sql        DROP TABLE patients\x1b[2J`,
		"copy.data of command 4 · offset 0 · 44 bytes",
		"data       1\tJane Doe\t1980-02-03",
		"session.end · terminate · 3 commands · 9.000 ms",
		"-- 8 events verified, chain intact, session closed (terminate); 2026-11-25 20:00:00.000Z to 2026-11-25 20:00:00.010Z; head ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("trail lacks %q", want)
		}
	}
	if strings.Contains(got, "\x1b") {
		t.Error("an escape sequence from the recording reached the output")
	}
	if strings.Count(got, "identity   ") != 1 {
		t.Error("identity repeated although it did not change")
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}

func TestPrintJSONIsTheRecording(t *testing.T) {
	dir := t.TempDir()
	recordClosed(t, dir)
	var out bytes.Buffer
	if err := PrintSession(context.Background(), &out, spool.DirStore{Dir: dir}, idClosed, Options{JSON: true}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "sessions", idClosed+".rec"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := record.NewReader(f, idClosed)
	sc := bufio.NewScanner(&out)
	n := 0
	for ; sc.Scan(); n++ {
		if _, err := rd.Next(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sc.Bytes(), rd.Payload()) {
			t.Fatalf("line %d is not the recorded payload:\n%s\n%s", n, sc.Bytes(), rd.Payload())
		}
		var ev record.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Seq != uint64(n) {
			t.Fatalf("line %d: %v (seq %d)", n, err, ev.Seq)
		}
	}
	if n != 8 {
		t.Fatalf("%d lines, want 8", n)
	}
}

func TestPrintStopsAtTheBreak(t *testing.T) {
	dir := t.TempDir()
	recordClosed(t, dir)
	path := filepath.Join(dir, "sessions", idClosed+".rec")
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte inside event 3's SQL.
	i := bytes.Index(file, []byte("SELECT note FROM"))
	file[i+7] ^= 0x20
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []Options{{}, {JSON: true}} {
		var out bytes.Buffer
		err := PrintSession(context.Background(), &out, spool.DirStore{Dir: dir}, idClosed, opts)
		var ce *record.ChainError
		if !errors.As(err, &ce) || ce.Index != 3 {
			t.Fatalf("json %v: got %v, want a chain break at event 3", opts.JSON, err)
		}
		got := out.String()
		if opts.JSON {
			if n := strings.Count(got, "\n"); n != 3 {
				t.Fatalf("printed %d events before the break, want 3", n)
			}
			continue
		}
		if !strings.Contains(got, "#2 ") || strings.Contains(got, "#3 ") || strings.Contains(got, "events verified") {
			t.Fatalf("trail around the break:\n%s", got)
		}
	}
}

func TestLiveAndUnclosedSessions(t *testing.T) {
	dir := t.TempDir()
	sp, stop := runSpool(t, dir)
	s := newSession(t, sp, idOpen)
	s.typical()
	// The node is running: the session is live and what is there verifies.
	// Frames reach the session file just after they are durable in the
	// journal, so poll (with a deadline) until all seven are visible.
	var out bytes.Buffer
	for deadline := time.Now().Add(10 * time.Second); ; {
		out.Reset()
		if err := PrintSession(context.Background(), &out, spool.DirStore{Dir: dir}, idOpen, Options{}); err != nil {
			t.Fatalf("live session: %v", err)
		}
		if strings.Contains(out.String(), "7 events verified, chain intact, session open (live)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live footer missing:\n%s", out.String())
		}
		runtime.Gosched()
	}
	list, err := List(context.Background(), spool.DirStore{Dir: dir})
	if err != nil || len(list) != 1 || list[0].Status != StatusOpen {
		t.Fatalf("list while live: %+v %v", list, err)
	}

	// The node stops without closing it (a crash, as far as the recording
	// knows): now it is an unclosed recording, reported as such.
	stop()
	out.Reset()
	err = PrintSession(context.Background(), &out, spool.DirStore{Dir: dir}, idOpen, Options{})
	var ce *record.ChainError
	if !errors.As(err, &ce) || ce.Index != 7 || !strings.Contains(ce.Reason, "truncated after event 6: session not closed") {
		t.Fatalf("unclosed session: %v", err)
	}
	if !strings.Contains(out.String(), "#6 ") {
		t.Fatalf("verified events not printed before the error:\n%s", out.String())
	}
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	sp, stop := runSpool(t, dir)
	for _, id := range []string{idClosed, idBroken, idCut} {
		s := newSession(t, sp, id)
		s.typical()
		s.end("client closed")
	}
	open := newSession(t, sp, idOpen)
	open.typical()
	stop()

	broken := filepath.Join(dir, "sessions", idBroken+".rec")
	file, _ := os.ReadFile(broken)
	file[bytes.Index(file, []byte("DROP TABLE"))] ^= 1
	os.WriteFile(broken, file, 0o600)
	cut := filepath.Join(dir, "sessions", idCut+".rec")
	file, _ = os.ReadFile(cut)
	os.WriteFile(cut, file[:len(file)-10], 0o600)

	list, err := List(context.Background(), spool.DirStore{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		status   Status
		events   uint64
		brokenAt int64
	}{
		idClosed: {StatusClosed, 8, -1},
		idOpen:   {StatusBroken, 7, 7}, // no node holds the spool: not live, not closed
		idBroken: {StatusBroken, 5, 5},
		idCut:    {StatusBroken, 7, 7},
	}
	if len(list) != len(want) {
		t.Fatalf("listed %d sessions", len(list))
	}
	for _, s := range list {
		w := want[s.ID]
		at := int64(-1)
		if s.BrokenAt != nil {
			at = int64(*s.BrokenAt)
		}
		if s.Status != w.status || s.Events != w.events || at != w.brokenAt || s.Identity != "claims-agent" || s.Resource != "patients" {
			t.Errorf("%s: %+v (broken at %d), want %+v", s.ID, s, at, w)
		}
	}
	if list[0].ID != idClosed || list[0].Reason != "client closed" || !list[0].Start.Equal(t0) {
		t.Errorf("first entry %+v", list[0])
	}

	var table bytes.Buffer
	if err := PrintList(&table, list, false); err != nil {
		t.Fatal(err)
	}
	for _, wantLine := range []string{"SESSION", idClosed, "closed", "at event 5: payload hash mismatch", "truncated"} {
		if !strings.Contains(table.String(), wantLine) {
			t.Errorf("table lacks %q:\n%s", wantLine, table.String())
		}
	}
	var nd bytes.Buffer
	if err := PrintList(&nd, list, true); err != nil {
		t.Fatal(err)
	}
	var back []SessionInfo
	for dec := json.NewDecoder(&nd); dec.More(); {
		var s SessionInfo
		if err := dec.Decode(&s); err != nil {
			t.Fatal(err)
		}
		back = append(back, s)
	}
	if len(back) != 4 || back[2].Status != StatusBroken || *back[2].BrokenAt != 5 {
		t.Fatalf("NDJSON list: %+v", back)
	}

	// After a restart the node recovers the open session and closes it.
	sp2, _ := runSpool(t, dir)
	if got := sp2.Recovered(); len(got) != 1 || got[0] != idOpen {
		t.Fatalf("recovered %v", got)
	}
}

func TestPrintHonoursContext(t *testing.T) {
	dir := t.TempDir()
	recordClosed(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := PrintSession(ctx, &bytes.Buffer{}, spool.DirStore{Dir: dir}, idClosed, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled print: %v", err)
	}
}

func TestPrintUnknownSession(t *testing.T) {
	if err := PrintSession(context.Background(), &bytes.Buffer{}, spool.DirStore{Dir: t.TempDir()}, idClosed, Options{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":       "plain text",
		"a\x1b[31mred":     `a\x1b[31mred`,
		"tab\there":        `tab\x09here`,
		"bad \xff utf8":    `bad \xff utf8`,
		"bidi \u202e flip": `bidi \u202e flip`,
		"ünïcødé ok":       "ünïcødé ok",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
	if got := cleanMultiline("a\n\tb\r"); got != "a\n\tb\\x0d" {
		t.Errorf("cleanMultiline kept %q", got)
	}
}
