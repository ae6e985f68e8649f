package proof

import (
	"bytes"
	"errors"
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
	var events []*record.Event
	c := NewCollector("S1", k.PublicKey(), func(ev *record.Event) error {
		events = append(events, ev)
		return nil
	})
	raws := [][]byte{}
	for i := 0; i < batchSize+10; i++ {
		raw := []byte("123-45-" + string(rune('0'+i%10)) + "789")
		raws = append(raws, raw)
		c.Row = int64(i + 1)
		c.Add(7, &mask.Proof{Column: 2, Rule: "column:patients.ssn", Action: mask.Action(0), Start: 0, End: len(raw), Raw: raw})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[0].Kind != record.KindMaskKey || events[1].Kind != record.KindMaskProof || len(events[1].Proof.Values) != batchSize {
		t.Fatalf("events: %d, first %s", len(events), events[0].Kind)
	}
	o, err := NewOpener(k, events[0].Key, "S1")
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for _, ev := range events[1:] {
		for j := range ev.Proof.Values {
			v := &ev.Proof.Values[j]
			raw, err := o.Open(v)
			if err != nil || !bytes.Equal(raw, raws[i]) || v.Row != int64(i+1) || ev.Proof.Command != 7 {
				t.Fatalf("value %d: %q %v", i, raw, err)
			}
			if bytes.Contains(v.Sealed, raws[i]) {
				t.Fatal("raw value visible in its sealed form")
			}
			i++
		}
	}
	if i != len(raws) {
		t.Fatalf("opened %d of %d", i, len(raws))
	}
	other, _ := GenerateAuditorKey()
	if _, err := NewOpener(other, events[0].Key, "S1"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("opener with another key: %v", err)
	}
}
