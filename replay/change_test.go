package replay_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/record"
)

// TestPrintChange: the before and after rows of a data change and its
// transaction's outcome are shown, values as recorded (masked), control
// characters escaped.
func TestPrintChange(t *testing.T) {
	const id = "01JDZ3Y6W5K8Q2M4N7P9R00077"
	c := record.NewChain(id)
	var rec []byte
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	masked, name := "***-**-6789", "Mateo\x1b[31m"
	for i, ev := range []*record.Event{
		{Kind: record.KindSessionStart, Start: &record.SessionStart{Protocol: "postgres"}},
		{Kind: record.KindChange, Change: &record.Change{Command: 1, Phase: record.ChangeBefore, Op: "update", Table: "public.patients",
			Read: "SELECT * FROM public.patients WHERE id = $1 FOR UPDATE", Columns: []string{"id", "name", "ssn"},
			Rows: [][]*string{{ptr("1"), &name, &masked}, {ptr("2"), nil, &masked}}}},
		{Kind: record.KindChange, Change: &record.Change{Command: 1, Phase: record.ChangeAfter, Op: "update", Table: "public.patients", Affected: 2}},
		{Kind: record.KindChange, Change: &record.Change{Command: 2, Phase: record.ChangeNone, Op: "delete", Reason: "a writable CTE"}},
		{Kind: record.KindChangeOutcome, Outcome: &record.ChangeOutcome{Outcome: record.OutcomeRolledBack, Reason: "ROLLBACK", Changes: []record.ChangeRef{{Command: 1}}}},
		{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: "terminate"}},
	} {
		ev.Session, ev.Node, ev.Time = id, "n1", t0.Add(time.Duration(i)*time.Millisecond)
		f, err := c.Seal(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		rec = append(rec, f...)
	}
	var out bytes.Buffer
	if err := replay.Print(context.Background(), &out, bytes.NewReader(rec), id, replay.Options{}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"change · update of command 1 statement 0 · before · public.patients · 2 rows",
		"1 | Mateo\\x1b[31m | ***-**-6789",
		"2 | NULL | ***-**-6789",
		"change · update of command 1 statement 0 · after · public.patients · 0 rows · 2 affected",
		"not analysed",
		"a writable CTE",
		"change.outcome · rolled back",
		"command 1 statement 0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\x1b") {
		t.Error("a control character reached the terminal")
	}
}

func ptr(s string) *string { return &s }
