package record

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// legacyID is the session of testdata/v1, a recording written by the
// version before Command had protocol bodies (committed as that version
// wrote it).
const legacyID = "01JDZ3Y6W5K8Q2M4N7P9R1S3V1"

// TestFirstLayoutRecordingVerifiesAndDecodes: a recording in the first
// command layout verifies exactly as before (the chain is over the
// recorded bytes, which nobody rewrites) and its commands decode into
// PostgreSQL bodies.
func TestFirstLayoutRecordingVerifiesAndDecodes(t *testing.T) {
	f, err := os.Open("testdata/v1/" + legacyID + ".rec")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []*Command
	sum, err := Verify(f, legacyID, false, func(ev *Event, payload []byte) error {
		if ev.Command != nil {
			cmds = append(cmds, ev.Command)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	// The head the version that wrote it printed (replay/testdata/v1.txt).
	const head = "be90c47b66f4edc5d659d40580fac658d0e59a25c7f65171c9fe7c0bbf25d46d"
	if sum.Events != 12 || !sum.Closed || sum.Head != head {
		t.Fatalf("summary %+v", sum)
	}
	pg := func(flow, step, sql string) *PostgresCommand {
		return &PostgresCommand{Flow: flow, Step: step, SQL: sql}
	}
	want := []*Command{
		{ID: 1, Postgres: pg(FlowSimple, "", "SELECT name, ssn\n  FROM patients\n WHERE id < 3"), Classes: []string{"read"}, Decision: "allow", Rule: "agents-read"},
		{ID: 2, Postgres: pg(FlowExtended, StepParse, "SELECT note FROM notes WHERE patient = $1 AND kind = $2"), Classes: []string{"read"}, Decision: "allow", Rule: "agents-read"},
		{ID: 3, Postgres: pg(FlowExtended, StepExecute, "SELECT note FROM notes WHERE patient = $1 AND kind = $2"), Classes: []string{"read"}, Decision: "allow", Rule: "agents-read"},
		{ID: 4, Postgres: pg(FlowFunction, "", "-- fast-path call of function 1598"), Classes: []string{"admin"}, Decision: "deny", Reason: "admin is not granted"},
		{ID: 5, Postgres: pg(FlowSimple, "", "SELECT '\ufffd'"), Decision: "deny", Reason: "statement is not valid UTF-8"},
		{ID: 6, Postgres: pg(FlowSimple, "", "COPY notes FROM STDIN"), Classes: []string{"write"}, Decision: "deny", Reason: "write is not granted"},
	}
	want[1].Postgres.Statement = "s1"
	want[2].Postgres.Statement, want[2].Postgres.Portal = "s1", "p1"
	want[2].Postgres.Params = []Param{{Value: "O'Brien"}, {Null: true}, {Format: "binary", Value: "AAAAKg=="}, {Value: "/w==", Encoding: "base64"}}
	want[3].Postgres.Params = []Param{{Format: "binary", Value: "AAAAAQ=="}}
	want[4].Postgres.Raw = []byte("SELECT '\xff'")
	if len(cmds) != len(want) {
		t.Fatalf("%d commands, want %d", len(cmds), len(want))
	}
	for i, c := range cmds {
		want[i].Protocol = ProtocolPostgres
		if !reflect.DeepEqual(c, want[i]) {
			t.Errorf("command %d:\n got %+v %+v\nwant %+v %+v", i+1, c, c.Postgres, want[i], want[i].Postgres)
		}
	}
	if got := cmds[0].Text(); got != want[0].Postgres.SQL {
		t.Errorf("Text() = %q", got)
	}
}

// firstLayoutCommand is Command as the first layout encoded it.
type firstLayoutCommand struct {
	ID        uint64   `json:"id"`
	Protocol  string   `json:"protocol"`
	Step      string   `json:"step,omitempty"`
	SQL       string   `json:"sql"`
	Raw       []byte   `json:"raw,omitempty"`
	Statement string   `json:"statement,omitempty"`
	Portal    string   `json:"portal,omitempty"`
	Params    []Param  `json:"params,omitempty"`
	Classes   []string `json:"classes,omitempty"`
	Decision  string   `json:"decision"`
	Rule      string   `json:"rule,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

func TestCommandUnmarshalLayouts(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		want Command
	}{
		"first layout": {`{"id":3,"protocol":"extended","step":"execute","sql":"SELECT $1","statement":"s","portal":"p","params":[{"null":true}],"classes":["read"],"decision":"allow","rule":"r"}`,
			Command{ID: 3, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{Flow: FlowExtended, Step: StepExecute, SQL: "SELECT $1", Statement: "s", Portal: "p", Params: []Param{{Null: true}}},
				Classes: []string{"read"}, Decision: "allow", Rule: "r"}},
		"first layout, empty sql": {`{"id":1,"protocol":"simple","sql":"","decision":"deny","reason":"x"}`,
			Command{ID: 1, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{Flow: FlowSimple}, Decision: "deny", Reason: "x"}},
		"current layout": {`{"id":2,"protocol":"postgres","postgres":{"flow":"simple","sql":"SELECT 1"},"decision":"allow"}`,
			Command{ID: 2, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{Flow: FlowSimple, SQL: "SELECT 1"}, Decision: "allow"}},
		"current layout, no body": {`{"id":2,"protocol":"ssh","decision":"allow"}`,
			Command{ID: 2, Protocol: "ssh", Decision: "allow"}},
		// Never written; the body is what counts.
		"body and a stray sql": {`{"id":2,"protocol":"postgres","postgres":{"flow":"simple","sql":"SELECT 1"},"sql":"SELECT 2","decision":"allow"}`,
			Command{ID: 2, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{Flow: FlowSimple, SQL: "SELECT 1"}, Decision: "allow"}},
	} {
		var got Command
		if err := json.Unmarshal([]byte(tc.in), &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v %+v\nwant %+v %+v", name, got, got.Postgres, tc.want, tc.want.Postgres)
		}
	}
	var c Command
	if err := json.Unmarshal([]byte(`{"id":"one"}`), &c); err == nil {
		t.Error("a command with a string id decoded")
	}
}

// FuzzFirstLayoutDecodes: any command the first layout could encode
// decodes into the same values, in a PostgreSQL body.
func FuzzFirstLayoutDecodes(f *testing.F) {
	f.Add(uint64(1), "simple", "", "SELECT 1", []byte(nil), "", "", "v", true, "allow", "r")
	f.Add(uint64(7), "extended", "execute", "SELECT $1\xff", []byte{0xff}, "s1", "p", "\u2028", false, "deny", "")
	f.Fuzz(func(t *testing.T, id uint64, flow, step, sql string, raw []byte, stmt, portal, param string, null bool, decision, rule string) {
		old := firstLayoutCommand{ID: id, Protocol: flow, Step: step, SQL: sql, Raw: raw, Statement: stmt, Portal: portal,
			Params: []Param{{Value: param, Null: null}}, Classes: []string{rule}, Decision: decision, Rule: rule, Reason: rule}
		payload, err := json.Marshal(old)
		if err != nil {
			t.Fatal(err)
		}
		var back firstLayoutCommand // what the first version decoded
		if err := json.Unmarshal(payload, &back); err != nil {
			t.Fatal(err)
		}
		var got Command
		if err := json.Unmarshal(payload, &got); err != nil {
			t.Fatal(err)
		}
		want := Command{ID: back.ID, Protocol: ProtocolPostgres, Postgres: &PostgresCommand{Flow: back.Protocol, Step: back.Step, SQL: back.SQL, Raw: back.Raw,
			Statement: back.Statement, Portal: back.Portal, Params: back.Params}, Classes: back.Classes, Decision: back.Decision, Rule: back.Rule, Reason: back.Reason}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded\n %+v %+v\nwant %+v %+v", got, got.Postgres, want, want.Postgres)
		}
	})
}
