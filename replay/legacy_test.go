package replay

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/spool"
)

// TestFirstLayoutPrintsAsBefore: testdata/v1 is a spool directory holding a
// recording in the first command layout (before protocol bodies), and
// testdata/v1.* is what replay printed for it then. It must print the same
// now: the readable trail, the NDJSON (the recorded payloads, unchanged) and
// the list.
func TestFirstLayoutPrintsAsBefore(t *testing.T) {
	const id = "01JDZ3Y6W5K8Q2M4N7P9R1S3V1"
	store := spool.DirStore{Dir: "testdata/v1"}
	for golden, opts := range map[string]Options{"testdata/v1.txt": {}, "testdata/v1.ndjson": {JSON: true}} {
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := PrintSession(context.Background(), &out, store, id, opts); err != nil {
			t.Fatalf("%s: %v", golden, err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%s: output changed:\n got %s\nwant %s", golden, out.Bytes(), want)
		}
	}
	list, err := List(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := PrintList(&out, list, true); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/v1-list.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("list changed:\n got %s\nwant %s", out.Bytes(), want)
	}
}

// TestPrintCommandOfAnotherProtocol: a command with no PostgreSQL body (as
// an HTTP or SSH proxy will record) prints its protocol, and no SQL.
func TestPrintCommandOfAnotherProtocol(t *testing.T) {
	const id = "01JDZ3Y6W5K8Q2M4N7P9R1S3V2"
	c := record.NewChain(id)
	var file []byte
	for _, ev := range []*record.Event{
		{Time: t0, Kind: record.KindSessionStart, Start: &record.SessionStart{Protocol: "ssh"}},
		{Time: t0, Kind: record.KindCommand, Command: &record.Command{ID: 1, Protocol: "ssh", Classes: []string{"exec"}, Decision: "allow", Rule: "ops"}},
		{Time: t0, Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: "client closed", Commands: 1}},
	} {
		var err error
		if file, err = c.Seal(file, ev); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := Print(context.Background(), &out, bytes.NewReader(file), id, Options{}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.Contains(got, "command 1 · ssh · allowed by ops\n       classes    exec\n") || strings.Contains(got, "sql ") {
		t.Fatalf("trail:\n%s", got)
	}
}
