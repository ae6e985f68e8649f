package node

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"

	"github.com/phigate/phigate/session/mask"
)

// FuzzApplyPolicy: any bytes sent to the admin API's apply either are
// refused with an error or become a stored document that builds a
// snapshot, opens every password it sealed, and parses back to the same
// document; never a panic, and never a password left in clear.
func FuzzApplyPolicy(f *testing.F) {
	f.Add([]byte("grants: [{name: g, groups: [a], resources: [r], allow: [read]}]\nauditors: {public_key: none}\n"))
	f.Add([]byte("resources: [{name: r, address: '127.0.0.1:5432', database: d, user: u, password: {value: s3cret}, tls: disable}]\nauditors: {public_key: none}\n"))
	f.Add([]byte("resources: [{name: r, address: '127.0.0.1:5432', database: d, roles: {read: {user: u, password: {value: pw}}, admin: {user: a, password: {sealed: AAAA}}}}]\nauditors: {public_key: none}\n"))
	f.Add([]byte("identities: {tokens: [{name: x, kind: agent, token_sha256: " + strings.Repeat("ab", 32) + ", clients: [10.0.0.0/8]}]}\nadmins: {groups: [g]}\nauditors: {public_key: none}\n"))
	f.Add([]byte("masking: {profiles: {p: {rules: [{column: a.b.c, action: redact}], detect: {}}}}\nauditors: {public_key: none}\n"))
	f.Add([]byte("resources: [{name: r, address: '127.0.0.1:5432', database: d, user: u, subjects: {public.patients: id, encounters: patient_id}}]\nauditors: {public_key: none}\n"))
	sealer, err := NewAESSealer(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		f.Fatal(err)
	}
	loc := local{tls: &tls.Config{}, keys: mask.Keys{Pseudonym: bytes.Repeat([]byte{2}, 32)}}
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		if p.unresolved() != nil {
			return
		}
		secrets := clearPasswords(p)
		if err := sealPolicy(p, sealer); err != nil {
			return
		}
		if _, _, err := buildSnapshot(p, loc, sealer, nil, log); err != nil {
			return
		}
		doc, err := p.Marshal()
		if err != nil {
			t.Fatalf("a valid policy does not marshal: %v", err)
		}
		for _, s := range secrets {
			if len(s) >= 4 && bytes.Contains(doc, []byte(s)) {
				t.Fatalf("the stored policy holds a password in clear:\n%s", doc)
			}
		}
		again, err := ParsePolicy(doc)
		if err != nil {
			t.Fatalf("the stored policy does not parse back: %v\n%s", err, doc)
		}
		if _, _, err := buildSnapshot(again, loc, sealer, nil, log); err != nil {
			t.Fatalf("the stored policy does not build again: %v\n%s", err, doc)
		}
	})
}

// clearPasswords lists the passwords p carries in clear.
func clearPasswords(p *Policy) []string {
	var out []string
	for _, rc := range p.Resources {
		if rc.Password != nil && rc.Password.Value != "" {
			out = append(out, rc.Password.Value)
		}
		for _, r := range rc.Roles {
			if r.Password != nil && r.Password.Value != "" {
				out = append(out, r.Password.Value)
			}
		}
	}
	return out
}
