package chunk

import (
	"crypto/ecdh"
	"fmt"
	"testing"
	"time"

	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
)

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func auditorKey(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := proof.GenerateAuditorKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// frames records n realistic events of a PostgreSQL session and returns
// their frames (event 0's with the recording magic) and times.
func frames(t testing.TB, session string, n int) ([][]byte, []time.Time) {
	t.Helper()
	c := record.NewChain(session)
	var out [][]byte
	var times []time.Time
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		ev := &record.Event{Time: at, Node: "n1", Identity: "agent-7", Resource: "ehr"}
		switch {
		case i == 0:
			ev.Kind = record.KindSessionStart
			ev.Start = &record.SessionStart{}
		case i == n-1:
			ev.Kind = record.KindSessionEnd
			ev.End = &record.SessionEnd{}
		case i%2 == 1:
			ev.Kind = record.KindCommand
			ev.Command = &record.Command{ID: uint64(i/2 + 1), Protocol: record.ProtocolPostgres, Decision: "allow", Classes: []string{"read"},
				Postgres: &record.PostgresCommand{Flow: record.FlowExtended, Step: record.StepExecute,
					SQL:    "SELECT p.id, p.name, p.birth_date, e.code FROM patients p JOIN encounters e ON e.patient_id = p.id WHERE p.id = $1 AND e.date > $2",
					Params: []record.Param{{Value: fmt.Sprint(100000 + i*7919%50000)}, {Value: "2026-01-01"}}}}
		default:
			ev.Kind = record.KindResult
			ev.Result = &record.Result{Command: uint64(i / 2), Tag: "SELECT 3", Rows: 3, Bytes: int64(180 + i%97), DurationUS: int64(300 + i*31%700)}
		}
		b, err := c.Seal(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
		times = append(times, at)
	}
	return out, times
}

// sealSession cuts frames into chunks of at most maxBytes, the last closing.
func sealSession(t testing.TB, session string, pub *ecdh.PublicKey, fr [][]byte, times []time.Time, maxBytes int) []*Sealed {
	t.Helper()
	b, err := NewBuilder(Config{Session: session, Node: "n1", Auditor: pub, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	var out []*Sealed
	for i, f := range fr {
		err := b.Add(f, times[i])
		if err == ErrFull {
			s, serr := b.Seal(false)
			if serr != nil {
				t.Fatal(serr)
			}
			out = append(out, s)
			err = b.Add(f, times[i])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := b.Seal(true)
	if err != nil {
		t.Fatal(err)
	}
	return append(out, s)
}
