package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

const testSession = "01JDZ3Y6W5K8Q2M4N7P9R1S3T5"

var t0 = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

// sampleEvents is a small but complete session: start, two commands with
// results (one masked, one failed), a denial, and the end.
func sampleEvents(session string) []*Event {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	return []*Event{
		{Time: at(0), Kind: KindSessionStart, Session: session, Node: "n1", Identity: "claims-agent", Resource: "patients",
			Start: &SessionStart{Protocol: "postgres", Client: "127.0.0.1:50000", TLS: true, TLSVersion: "TLS 1.3", IdentityKind: "agent", Groups: []string{"billing"}, Database: "patients", Application: "psql"}},
		{Time: at(1), Kind: KindCommand, Session: session, Node: "n1", Identity: "claims-agent", Resource: "patients",
			Command: &Command{ID: 1, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{Flow: FlowSimple, SQL: "SELECT name, ssn FROM patients WHERE id < 3"}, Classes: []string{"read"}, Decision: "allow", Rule: "agents-read"}},
		{Time: at(3), Kind: KindResult, Session: session, Node: "n1", Identity: "claims-agent", Resource: "patients",
			Result: &Result{Command: 1, Tag: "SELECT 2", Rows: 2, Bytes: 120, DurationUS: 1800, Masked: []MaskedColumn{{Column: "ssn", Source: "public.patients.ssn", Rule: "ssn", Action: "keep-last-4", Values: 2}}}},
		{Time: at(4), Kind: KindCommand, Session: session, Node: "n1", Identity: "claims-agent", Resource: "patients",
			Command: &Command{ID: 2, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{Flow: FlowExtended, Step: StepExecute, SQL: "SELECT * FROM notes WHERE patient = $1", Statement: "s1", Params: []Param{{Value: "42"}, {Null: true}}}, Decision: "allow"}},
		{Time: at(6), Kind: KindResult, Session: session, Node: "n1", Identity: "claims-agent", Resource: "patients",
			Result: &Result{Command: 2, DurationUS: 700, Error: &SQLError{Code: "42P01", Message: `relation "notes" does not exist`, Source: "upstream"}}},
		{Time: at(7), Kind: KindCommand, Session: session, Node: "n1", Identity: "claims-agent", Resource: "patients",
			Command: &Command{ID: 3, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{Flow: FlowSimple, SQL: "DROP TABLE patients"}, Classes: []string{"ddl"}, Decision: "deny", Reason: "ddl not granted"}},
		{Time: at(9), Kind: KindSessionEnd, Session: session, Node: "n1", Identity: "claims-agent", Resource: "patients",
			End: &SessionEnd{Reason: "terminate", Commands: 3, DurationUS: 9000}},
	}
}

// buildRecording seals events into a recording file and returns it with the
// offset at which each event's frame starts (plus the file length at the end).
func buildRecording(t testing.TB, session string, events []*Event) ([]byte, []int) {
	t.Helper()
	c := NewChain(session)
	var file []byte
	var starts []int
	for _, ev := range events {
		before := len(file)
		var err error
		file, err = c.Seal(file, ev)
		if err != nil {
			t.Fatalf("seal %s: %v", ev.Kind, err)
		}
		if before == 0 {
			before = HeaderSize
		}
		starts = append(starts, before)
	}
	return file, append(starts, len(file))
}

func verifyAll(t *testing.T, file []byte, session string, live bool) ([]*Event, Summary, error) {
	t.Helper()
	var got []*Event
	sum, err := Verify(bytes.NewReader(file), session, live, func(ev *Event, payload []byte) error {
		var again Event
		if err := json.Unmarshal(payload, &again); err != nil {
			t.Fatalf("payload handed to visit is not the event's JSON: %v", err)
		}
		got = append(got, ev)
		return nil
	})
	return got, sum, err
}

func chainError(t *testing.T, err error) *ChainError {
	t.Helper()
	var ce *ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ChainError", err, err)
	}
	return ce
}

func TestRoundTrip(t *testing.T) {
	events := sampleEvents(testSession)
	file, starts := buildRecording(t, testSession, events)
	if !bytes.HasPrefix(file, []byte(Magic)) {
		t.Fatalf("recording does not start with %q", Magic)
	}
	got, sum, err := verifyAll(t, file, testSession, false)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(got) != len(events) {
		t.Fatalf("verified %d events, want %d", len(got), len(events))
	}
	for i, ev := range got {
		if ev.Seq != uint64(i) {
			t.Errorf("event %d: seq %d", i, ev.Seq)
		}
		want, _ := json.Marshal(events[i]) // Seal filled in Seq and Prev
		have, _ := json.Marshal(ev)
		if !bytes.Equal(want, have) {
			t.Errorf("event %d round trip:\n got %s\nwant %s", i, have, want)
		}
	}
	if got[0].Prev != fmt.Sprintf("%x", Genesis(testSession)) {
		t.Errorf("event 0 prev %s is not the session genesis", got[0].Prev)
	}
	want := Summary{Events: uint64(len(events)), Bytes: int64(len(file)), First: events[0].Time, Last: events[len(events)-1].Time, Closed: true, EndReason: "terminate"}
	want.Head = sum.Head
	if sum != want {
		t.Errorf("summary %+v, want %+v", sum, want)
	}
	if starts[len(starts)-1] != len(file) {
		t.Fatal("bad test helper")
	}
}

func TestSealSetsChainFields(t *testing.T) {
	c := NewChain(testSession)
	if c.Next() != 0 || c.Head() != fmt.Sprintf("%x", Genesis(testSession)) {
		t.Fatalf("new chain: next %d head %s", c.Next(), c.Head())
	}
	ev := &Event{Time: t0, Kind: KindSessionStart} // Session left empty: Seal fills it in
	first, err := c.Seal(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Seq != 0 || ev.Session != testSession || ev.Prev != fmt.Sprintf("%x", Genesis(testSession)) {
		t.Fatalf("sealed event 0: %+v", ev)
	}
	buf := make([]byte, 0, 4096)
	second, err := c.Seal(buf, &Event{Time: t0, Kind: KindCommand, Command: &Command{ID: 1, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{SQL: "SELECT 1 < 2 AND 'a' <> 'b' & 'c'"}}})
	if err != nil {
		t.Fatal(err)
	}
	if &second[:1][0] != &buf[:1][0] {
		t.Error("Seal did not append into the room dst had")
	}
	if bytes.HasPrefix(second, []byte(Magic)) {
		t.Error("only event 0 carries the file header")
	}
	if !bytes.Contains(second, []byte("1 < 2 AND 'a' <> 'b' & 'c'")) {
		t.Errorf("SQL is not stored readably: %s", second)
	}
	if c.Next() != 2 {
		t.Errorf("next %d, want 2", c.Next())
	}
	if _, err := c.Seal(nil, &Event{Kind: KindCommand, Session: "other"}); err == nil {
		t.Error("sealed an event of another session")
	}
	if c.Next() != 2 {
		t.Error("a failed Seal advanced the chain")
	}
	file := append(first, second...)
	end, _ := c.Seal(nil, &Event{Time: t0, Kind: KindSessionEnd, End: &SessionEnd{Reason: "terminate"}})
	file = append(file, end...)
	if _, err := Verify(bytes.NewReader(file), testSession, false, nil); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestSealTooLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MiB")
	}
	c := NewChain(testSession)
	big := &Event{Kind: KindCopyData, Copy: &CopyData{Data: make([]byte, MaxPayload*3/4+1)}} // base64 grows it past MaxPayload
	out, err := c.Seal(nil, big)
	if !errors.Is(err, ErrTooLarge) || len(out) != 0 || c.Next() != 0 {
		t.Fatalf("seal of oversized event: err %v, %d bytes, next %d", err, len(out), c.Next())
	}
	if _, err := c.Seal(nil, &Event{Kind: KindSessionStart}); err != nil {
		t.Fatalf("chain unusable after ErrTooLarge: %v", err)
	}
}

func TestResume(t *testing.T) {
	events := sampleEvents(testSession)
	for cut := 1; cut < len(events); cut++ {
		file, starts := buildRecording(t, testSession, events[:cut])
		last := file[starts[cut-1]:]
		if cut == 1 {
			last = file // header and event 0
		}
		c, ev, err := Resume(testSession, last)
		if err != nil {
			t.Fatalf("resume after %d events: %v", cut, err)
		}
		if ev.Seq != uint64(cut-1) || ev.Kind != events[cut-1].Kind {
			t.Fatalf("resume after %d events: last event seq %d kind %s", cut, ev.Seq, ev.Kind)
		}
		for _, rest := range sampleEvents(testSession)[cut:] {
			file, err = c.Seal(file, rest)
			if err != nil {
				t.Fatal(err)
			}
		}
		whole, _ := buildRecording(t, testSession, sampleEvents(testSession))
		if !bytes.Equal(file, whole) {
			t.Fatalf("resumed after %d events: recording differs from one sealed in one go", cut)
		}
	}

	file, starts := buildRecording(t, testSession, events)
	last := file[starts[len(events)-1]:]
	if _, ev, err := Resume(testSession, last); err != nil || ev.Kind != KindSessionEnd {
		t.Fatalf("resume on a closed recording: %v, %v", ev, err)
	}
	bad := bytes.Clone(last)
	bad[10] ^= 1
	for name, frame := range map[string][]byte{
		"flipped":       bad,
		"short":         last[:20],
		"two frames":    file[starts[len(events)-2]:],
		"empty":         nil,
		"header only":   []byte(Magic),
		"wrong session": last,
	} {
		session := testSession
		if name == "wrong session" {
			session = "01JDZ3Y6W5K8Q2M4N7P9R1S3T6"
		}
		if _, _, err := Resume(session, frame); err == nil {
			t.Errorf("resume from %s frame: no error", name)
		}
	}
}

// eventAt is the index of the event whose frame holds byte i.
func eventAt(starts []int, i int) uint64 {
	for k := len(starts) - 2; k >= 0; k-- {
		if i >= starts[k] {
			return uint64(k)
		}
	}
	return 0 // the file header belongs to event 0
}

func TestEveryFlippedByteIsLocated(t *testing.T) {
	events := sampleEvents(testSession)
	file, starts := buildRecording(t, testSession, events)
	for i := range file {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(file)
			bad[i] ^= mask
			_, _, err := verifyAll(t, bad, testSession, false)
			if err == nil {
				t.Fatalf("flip %#x at byte %d not detected", mask, i)
			}
			ce := chainError(t, err)
			if want := eventAt(starts, i); ce.Index != want {
				t.Fatalf("flip %#x at byte %d: broken at event %d (%s), want %d", mask, i, ce.Index, ce.Reason, want)
			}
			if ce.Offset != int64(starts[ce.Index]) && !(ce.Index == 0 && ce.Offset == 0) {
				t.Fatalf("flip at byte %d: offset %d, want %d", i, ce.Offset, starts[ce.Index])
			}
		}
	}
}

func TestRemovedEventIsLocated(t *testing.T) {
	events := sampleEvents(testSession)
	file, starts := buildRecording(t, testSession, events)
	for k := 0; k < len(events); k++ {
		var bad []byte
		if k == 0 {
			bad = append([]byte(Magic), file[starts[1]:]...)
		} else {
			bad = append(bytes.Clone(file[:starts[k]]), file[starts[k+1]:]...)
		}
		_, sum, err := verifyAll(t, bad, testSession, false)
		ce := chainError(t, err)
		if ce.Index != uint64(k) || sum.Events != uint64(k) {
			t.Errorf("event %d removed: broken at %d after %d verified events (%s)", k, ce.Index, sum.Events, ce.Reason)
		}
		if k == len(events)-1 && !errors.Is(err, ErrTruncated) {
			t.Errorf("removing session.end: %v, want truncation", err)
		} else if k < len(events)-1 && !errors.Is(err, ErrCorrupt) {
			t.Errorf("removing event %d: %v, want corruption", k, err)
		}
	}
}

func TestReorderedEventsAreLocated(t *testing.T) {
	events := sampleEvents(testSession)
	file, starts := buildRecording(t, testSession, events)
	frame := func(k int) []byte { return file[starts[k]:starts[k+1]] }
	for k := 0; k+1 < len(events); k++ {
		var bad []byte
		bad = append(bad, file[:starts[k]]...)
		bad = append(bad, frame(k+1)...)
		bad = append(bad, frame(k)...)
		bad = append(bad, file[starts[k+2]:]...)
		_, _, err := verifyAll(t, bad, testSession, false)
		if ce := chainError(t, err); ce.Index != uint64(k) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("events %d and %d swapped: broken at %d (%v)", k, k+1, ce.Index, err)
		}
	}
}

func TestTruncationIsLocated(t *testing.T) {
	events := sampleEvents(testSession)
	file, starts := buildRecording(t, testSession, events)
	for n := 0; n < len(file); n++ {
		_, sum, err := verifyAll(t, file[:n], testSession, false)
		ce := chainError(t, err)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v, want truncation", n, err)
		}
		complete := uint64(0)
		for complete < uint64(len(events)) && starts[complete+1] <= n {
			complete++
		}
		if ce.Index != complete || sum.Events != complete {
			t.Fatalf("cut at %d: broken at %d after %d events, want %d (%s)", n, ce.Index, sum.Events, complete, ce.Reason)
		}
		atBoundary := n == starts[complete] || n == 0
		if atBoundary != strings.Contains(ce.Reason, "not closed") {
			t.Fatalf("cut at %d (boundary %v): reason %q", n, atBoundary, ce.Reason)
		}

		// A live session may end anywhere: what is there verifies.
		_, sum, err = verifyAll(t, file[:n], testSession, true)
		if err != nil || sum.Events != complete || sum.Closed {
			t.Fatalf("live, cut at %d: %+v, %v", n, sum, err)
		}
	}
}

func TestWrongSessionIsRejected(t *testing.T) {
	file, _ := buildRecording(t, testSession, sampleEvents(testSession))
	_, _, err := verifyAll(t, file, "01JDZ3Y6W5K8Q2M4N7P9R1S3T6", false)
	if ce := chainError(t, err); ce.Index != 0 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("recording verified as another session's: %v", err)
	}
}

func TestEventAfterEndIsRejected(t *testing.T) {
	events := sampleEvents(testSession)
	events = append(events, &Event{Time: t0, Kind: KindCommand, Command: &Command{ID: 9, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{SQL: "SELECT 1"}}})
	file, _ := buildRecording(t, testSession, events)
	_, sum, err := verifyAll(t, file, testSession, true)
	if ce := chainError(t, err); ce.Index != uint64(len(events)-1) || !sum.Closed {
		t.Fatalf("event after session.end: %v (summary %+v)", err, sum)
	}
}

func TestReaderStopsAtFirstError(t *testing.T) {
	file, starts := buildRecording(t, testSession, sampleEvents(testSession))
	bad := bytes.Clone(file)
	bad[starts[2]+10] ^= 1
	rd := NewReader(bytes.NewReader(bad), testSession)
	for i := 0; i < 2; i++ {
		if _, err := rd.Next(); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	_, err1 := rd.Next()
	_, err2 := rd.Next()
	if err1 == nil || err1 != err2 {
		t.Fatalf("errors %v then %v, want the same error twice", err1, err2)
	}
	if rd.Summary().Events != 2 {
		t.Fatalf("summary counts %d events", rd.Summary().Events)
	}
}

func TestEmptyRecording(t *testing.T) {
	if _, err := Verify(bytes.NewReader(nil), testSession, true, nil); err != nil {
		t.Errorf("empty live recording: %v", err)
	}
	_, err := Verify(bytes.NewReader(nil), testSession, false, nil)
	if ce := chainError(t, err); ce.Index != 0 || !errors.Is(err, ErrTruncated) {
		t.Errorf("empty closed recording: %v", err)
	}
	_, err = Verify(strings.NewReader("PHIGRECX"), testSession, true, nil)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("wrong magic: %v", err)
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestReadErrorIsNotAChainError(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := Verify(io.MultiReader(strings.NewReader(Magic), failingReader{boom}), testSession, false, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the read error", err)
	}
	var ce *ChainError
	if errors.As(err, &ce) {
		t.Fatalf("a read error was reported as a chain break: %v", err)
	}
}

func TestVisitErrorStops(t *testing.T) {
	file, _ := buildRecording(t, testSession, sampleEvents(testSession))
	stop := errors.New("stop")
	n := 0
	_, err := Verify(bytes.NewReader(file), testSession, false, func(*Event, []byte) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("visit error: %v after %d events", err, n)
	}
}

func TestHugeLengthDoesNotAllocate(t *testing.T) {
	// A corrupt length just under the cap at the end of a short file must
	// not make the reader allocate the claimed size.
	file := append([]byte(Magic), 0x03, 0xff, 0xff, 0xff, 'x')
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Verify(bytes.NewReader(file), testSession, false, nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Fatalf("verifying a 13-byte file allocated %d bytes", grew)
	}
}

// benchEvents are the two events every proxied statement records: the
// command (SQL and two bound parameters) and its result (three masked
// columns).
func benchEvents() map[string]*Event {
	return map[string]*Event{
		"command": {Time: t0, Kind: KindCommand, Session: testSession, Node: "n1", Identity: "claims-agent", Resource: "patients",
			Command: &Command{ID: 7, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{Flow: FlowExtended, Step: StepExecute,
				SQL:    "SELECT id, name, ssn, dob FROM patients WHERE clinic = $1 AND updated_at > $2",
				Params: []Param{{Value: "42"}, {Value: "2026-11-01"}}}, Classes: []string{"read"}, Decision: "allow", Rule: "agents-read"}},
		"result": {Time: t0, Kind: KindResult, Session: testSession, Node: "n1", Identity: "claims-agent", Resource: "patients",
			Result: &Result{Command: 7, Tag: "SELECT 25", Rows: 25, Bytes: 4096, DurationUS: 850, Masked: []MaskedColumn{
				{Column: "name", Source: "public.patients.name", Rule: "person-name", Action: "pseudonym", Values: 25},
				{Column: "ssn", Source: "public.patients.ssn", Rule: "ssn", Action: "keep-last-4", Values: 25},
				{Column: "dob", Source: "public.patients.dob", Rule: "dob", Action: "year-only", Values: 25},
			}}},
	}
}

func BenchmarkSeal(b *testing.B) {
	for _, name := range []string{"command", "result"} {
		b.Run(name, func(b *testing.B) {
			c := NewChain(testSession)
			ev := benchEvents()[name]
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				buf, err = c.Seal(buf[:0], ev)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	var events []*Event
	for i := 0; i < 1000; i++ {
		events = append(events, sampleEvents(testSession)[1+i%5])
	}
	events = append(events, sampleEvents(testSession)[6])
	file, _ := buildRecording(b, testSession, events)
	b.SetBytes(int64(len(file)))
	for b.Loop() {
		if _, err := Verify(bytes.NewReader(file), testSession, false, nil); err != nil {
			b.Fatal(err)
		}
	}
}
