package record

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzVerify feeds arbitrary bytes to the verifier: it must never panic,
// never loop, and only ever accept what is a closed, intact chain.
func FuzzVerify(f *testing.F) {
	file, starts := buildRecording(f, testSession, sampleEvents(testSession))
	f.Add(file)
	f.Add(file[:starts[3]])
	f.Add(file[:starts[3]+7])
	f.Add([]byte(Magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, live := range []bool{false, true} {
			events := uint64(0)
			sum, err := Verify(bytes.NewReader(data), testSession, live, func(ev *Event, payload []byte) error {
				if ev.Seq != events || ev.Session != testSession {
					t.Fatalf("visited event %d with seq %d session %q", events, ev.Seq, ev.Session)
				}
				events++
				return nil
			})
			if sum.Events != events || sum.Bytes > int64(len(data)) {
				t.Fatalf("summary %+v after %d visited events of %d bytes", sum, events, len(data))
			}
			if err == nil {
				if !live && !sum.Closed {
					t.Fatal("an unclosed recording verified as closed")
				}
				continue
			}
			var ce *ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ChainError", err)
			}
			if ce.Index != sum.Events || !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTruncated)) {
				t.Fatalf("break at %d after %d events: %v", ce.Index, sum.Events, err)
			}
		}
	})
}

// FuzzResume: arbitrary "last frames" never panic, and whatever Resume
// accepts continues into a chain that verifies.
func FuzzResume(f *testing.F) {
	file, starts := buildRecording(f, testSession, sampleEvents(testSession))
	f.Add(file[:starts[1]])
	f.Add(file[starts[2]:starts[3]])
	f.Add(file[starts[6]:])
	f.Add([]byte{0, 0, 0, 1, '{'})
	f.Fuzz(func(t *testing.T, last []byte) {
		c, ev, err := Resume(testSession, last)
		if err != nil {
			return
		}
		if ev.Session != testSession || c.Next() != ev.Seq+1 {
			t.Fatalf("resumed at %d from event %+v", c.Next(), ev)
		}
		head := c.Head()
		next, err := c.Seal(nil, &Event{Kind: KindSessionEnd})
		if err != nil {
			t.Fatal(err)
		}
		_, end, err := Resume(testSession, next)
		if err != nil || end.Seq != ev.Seq+1 || end.Prev != head {
			t.Fatalf("event sealed after resume does not link: %+v, %v", end, err)
		}
	})
}

// FuzzSealVerify: whatever text a client sends, the sealed recording
// verifies and carries the text back (as JSON stores it: valid UTF-8).
func FuzzSealVerify(f *testing.F) {
	f.Add("SELECT 1", "42", []byte{0, 1, 2})
	f.Add("SELECT '\u2028<script>'", "\x00\xff", []byte(nil))
	f.Add("", "", []byte("PHIGREC1"))
	f.Fuzz(func(t *testing.T, sql, param string, data []byte) {
		events := []*Event{
			{Kind: KindSessionStart, Start: &SessionStart{Protocol: "postgres"}},
			{Kind: KindCommand, Command: &Command{ID: 1, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{SQL: sql, Params: []Param{{Value: param}}}}},
			{Kind: KindCopyData, Copy: &CopyData{Command: 1, Data: data}},
			{Kind: KindSessionEnd, End: &SessionEnd{Reason: "terminate"}},
		}
		file, _ := buildRecording(t, testSession, events)
		var got []*Event
		sum, err := Verify(bytes.NewReader(file), testSession, false, func(ev *Event, _ []byte) error {
			got = append(got, ev)
			return nil
		})
		if err != nil || sum.Events != 4 {
			t.Fatalf("verify: %v (%+v)", err, sum)
		}
		if !bytes.Equal(got[2].Copy.Data, data) {
			t.Fatal("COPY data changed in the recording")
		}
		if utf8.ValidString(sql) && got[1].Command.Text() != sql {
			t.Fatalf("SQL %q recorded as %q", sql, got[1].Command.Text())
		}
	})
}
