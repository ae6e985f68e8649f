package node

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"

	"github.com/phigate/phigate/session/mask"
)

// TestResourceSubjects: a resource's subjects travel in the policy
// document (stored, and read back), reach the snapshot's resource, and are
// validated with every problem reported.
func TestResourceSubjects(t *testing.T) {
	sealer, err := NewAESSealer(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	loc := local{tls: &tls.Config{}, keys: mask.Keys{Pseudonym: bytes.Repeat([]byte{2}, 32)}}
	log := slog.New(slog.DiscardHandler)
	build := func(doc string) (*Policy, error) {
		t.Helper()
		p, err := ParsePolicy([]byte(doc + "\nauditors: {public_key: none}\n"))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = buildSnapshot(p, loc, sealer, nil, log)
		return p, err
	}

	p, err := build(`
resources:
  - name: clinic
    address: '127.0.0.1:5432'
    database: d
    user: u
    subjects:
      public.patients: id
      encounters: patient_id`)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParsePolicy(doc)
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	snap, _, err := buildSnapshot(again, loc, sealer, nil, log)
	if err != nil {
		t.Fatalf("the stored policy does not build: %v\n%s", err, doc)
	}
	if got := again.Resources[0].Subjects; len(got) != 2 || got["public.patients"] != "id" || got["encounters"] != "patient_id" {
		t.Fatalf("subjects after a round trip: %v\n%s", got, doc)
	}
	if snap.Resources["clinic"].Subjects == nil {
		t.Fatal("the snapshot's resource has no subjects")
	}
	// Without subjects, none (and the key is left out of the document).
	p, err = build("resources: [{name: clinic, address: '127.0.0.1:5432', database: d, user: u}]")
	if err != nil {
		t.Fatal(err)
	}
	if doc, _ := p.Marshal(); bytes.Contains(doc, []byte("subjects")) {
		t.Errorf("a resource without subjects stores %s", doc)
	}

	_, err = build(`
resources:
  - name: clinic
    address: '127.0.0.1:5432'
    database: d
    user: u
    subjects: {public.patients.id: id, "": id, encounters: "", visits: "a.b", Labs: id, labs: pid}
  - name: other
    address: '127.0.0.1:5432'
    database: d
    subjects: {patients: id}`)
	if err == nil {
		t.Fatal("bad subjects accepted")
	}
	for _, want := range []string{
		`resource 0 ("clinic"): subjects: table "": want schema.table or table`,
		`subjects: table "public.patients.id": want schema.table or table`,
		`subjects: encounters: column ""`,
		`subjects: visits: column "a.b"`,
		`named twice`,
		`resource 1 ("other"): user is required`, // other problems are reported beside
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}
