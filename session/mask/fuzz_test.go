package mask

import (
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

var fuzzActions = []string{"redact", "keep-last-4", "hash", "null"}

// FuzzAppendValue feeds arbitrary bytes as values of every type, format and
// action. Masking must never panic, a NULL result appends nothing, and a
// valid input (one pgx decodes) gives a valid output.
func FuzzAppendValue(f *testing.F) {
	m := pgtype.NewMap()
	for _, tc := range typeCases() {
		for _, format := range []int16{0, 1} {
			src, err := m.Encode(tc.oid, format, tc.value, nil)
			if err != nil {
				continue
			}
			f.Add(tc.oid, tc.typmod, uint8(2), format == 1, src)
		}
	}
	profiles := make([]*Profile, len(fuzzActions))
	for i, a := range fuzzActions {
		profiles[i] = mustCompile(f, RuleConfig{Pattern: ".", Action: a})
	}
	f.Fuzz(func(t *testing.T, oid uint32, typmod int32, action uint8, bin bool, v []byte) {
		p := profiles[int(action)%len(profiles)]
		format := int16(0)
		if bin {
			format = 1
		}
		pl := p.Plan([]Column{{Name: "c", TypeOID: oid, TypeMod: typmod, Binary: bin}}, Params{})
		out, null := pl.AppendValue([]byte("dst"), 0, v)
		if string(out[:3]) != "dst" {
			t.Fatalf("dst clobbered: %q", out)
		}
		out = out[3:]
		if null {
			if len(out) != 0 {
				t.Fatalf("NULL with bytes %q", out)
			}
			return
		}
		if _, known := m.TypeForOID(oid); !known {
			return
		}
		var in any
		if err := m.Scan(oid, format, v, &in); err != nil {
			return // invalid input: only "no panic" is promised
		}
		var dec any
		if err := m.Scan(oid, format, out, &dec); err != nil {
			t.Fatalf("oid %d format %d action %s: input %q decodes, masked %q does not: %v", oid, format, fuzzActions[int(action)%len(fuzzActions)], v, out, err)
		}
		if k, arr := typeOf(oid); !arr && k.textLike() {
			if lim := charLimit(k, typmod); lim >= 0 && utf8.RuneCount(v) <= lim && utf8.RuneCount(out) > lim {
				t.Fatalf("%q exceeds %d characters", out, lim)
			}
		}
	})
}
