package node

import (
	"os"
	"testing"
)

// FuzzParseConfig: any bytes either parse or give an error; never a panic.
func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile("../examples/phigate.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("grants: [{name: g, groups: [a], resources: [r], allow: [read]}]"))
	f.Add([]byte("masking: {profiles: {p: {rules: [{column: a.b.c, action: redact}], detect: {}}}}"))
	f.Add([]byte("node: &a {id: x}\nlisten: *a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err == nil && cfg == nil {
			t.Fatal("nil config without an error")
		}
	})
}
