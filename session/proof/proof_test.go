package proof

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/record"
)

func TestWrapUnwrap(t *testing.T) {
	k, err := GenerateAuditorKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivate(MarshalPrivate(k))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublic(MarshalPublic(k.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	dataKey := bytes.Repeat([]byte{9}, 32)
	w, err := WrapDataKey(pub, dataKey, "S1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnwrapDataKey(priv, w, "S1")
	if err != nil || !bytes.Equal(got, dataKey) {
		t.Fatalf("unwrap = %x, %v", got, err)
	}
	if _, err := UnwrapDataKey(priv, w, "S2"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other session: %v", err)
	}
	other, _ := GenerateAuditorKey()
	if _, err := UnwrapDataKey(other, w, "S1"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other key: %v", err)
	}
	w[len(w)-1] ^= 1
	if _, err := UnwrapDataKey(priv, w, "S1"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := ParsePublic(MarshalPrivate(k)); err == nil {
		t.Fatal("a private key parsed as public")
	}
}

func TestCollectorAndOpener(t *testing.T) {
	k, _ := GenerateAuditorKey()
	var events []record.Event
	c := NewCollector("S1", k.PublicKey(), func(ev *record.Event) error {
		cp := *ev // the collector reuses its buffers once emit returns: keep a deep copy
		if ev.Proof != nil {
			p := *ev.Proof
			p.Rules = append([]record.ProofRule(nil), p.Rules...)
			p.Spans = append([][4]int64(nil), p.Spans...)
			p.RawHMAC = append([]byte(nil), p.RawHMAC...)
			p.Sealed = append([]byte(nil), p.Sealed...)
			cp.Proof = &p
		}
		events = append(events, cp)
		return nil
	})
	var raws []string
	n := batchSpans + 10
	for i := 0; i < n; i++ {
		raw := fmt.Sprintf("123-45-%04d", i)
		raws = append(raws, raw)
		c.Row = int64(i + 1)
		col, rule := 2, "column:patients.ssn"
		if i%3 == 0 {
			col, rule = 5, "detect"
		}
		c.Add(7, &mask.Proof{Column: col, Rule: rule, Start: 0, End: len(raw), Raw: []byte(raw)})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[0].Kind != record.KindMaskKey || events[1].Kind != record.KindMaskProof || len(events[1].Proof.Spans) != batchSpans {
		t.Fatalf("events: %d, first %s", len(events), events[0].Kind)
	}
	if len(events[1].Proof.Rules) != 2 {
		t.Fatalf("rules = %+v, want the two distinct rules once each", events[1].Proof.Rules)
	}
	o, err := NewOpener(k, events[0].Key, "S1")
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for _, ev := range events[1:] {
		got, err := o.Open(ev.Proof)
		if err != nil {
			t.Fatal(err)
		}
		for j, raw := range got {
			sp := ev.Proof.Spans[j]
			rule := ev.Proof.Rules[sp[1]]
			wantCol := 2
			if i%3 == 0 {
				wantCol = 5
			}
			if string(raw) != raws[i] || sp[0] != int64(i+1) || rule.Column != wantCol || ev.Proof.Command != 7 {
				t.Fatalf("value %d: %q span %v rule %+v", i, raw, sp, rule)
			}
			i++
		}
		if bytes.Contains(ev.Proof.Sealed, []byte(raws[0])) {
			t.Fatal("raw value visible in its sealed form")
		}
	}
	if i != n {
		t.Fatalf("opened %d of %d", i, n)
	}
	// A tampered hash is caught.
	bad := *events[1].Proof
	bad.RawHMAC = append([]byte(nil), bad.RawHMAC...)
	bad.RawHMAC[40] ^= 1
	if _, err := o.Open(&bad); err == nil {
		t.Fatal("tampered hash accepted")
	}
	other, _ := GenerateAuditorKey()
	if _, err := NewOpener(other, events[0].Key, "S1"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("opener with another key: %v", err)
	}
}

// TestCollectorPhases: the values of a change event's rows are proven in
// batches of their own, named by their phase, apart from the statement's
// result rows.
func TestCollectorPhases(t *testing.T) {
	k, _ := GenerateAuditorKey()
	var proofs []record.MaskProof
	c := NewCollector("S2", k.PublicKey(), func(ev *record.Event) error {
		if ev.Proof != nil {
			proofs = append(proofs, record.MaskProof{Command: ev.Proof.Command, Statement: ev.Proof.Statement, Phase: ev.Proof.Phase,
				Spans: append([][4]int64(nil), ev.Proof.Spans...)})
		}
		return nil
	})
	for _, phase := range []string{record.ChangeBefore, "", "", record.ChangeAfter} {
		c.Phase, c.Row = phase, 1
		c.Add(3, &mask.Proof{Column: 1, Rule: "r", End: 3, Raw: []byte("raw")})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range proofs {
		got = append(got, fmt.Sprintf("%s:%d", p.Phase, len(p.Spans)))
	}
	if want := []string{"before:1", ":2", "after:1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
}
