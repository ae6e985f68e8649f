package harness

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/phigate/phigate/node"
)

// TestPhigateConfigIsValid keeps the generated configuration in step with
// what the node accepts: it must parse (unknown fields are errors) and pass
// node.New's validation of tokens, resources, grants and masking rules.
func TestPhigateConfigIsValid(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, g := range []Grant{{}, {Unmasked: true}, {ReadAhead: true}} {
		masked := !g.Unmasked
		conf := PhigateConfig(filepath.Join(dir, "data"), 16432, "127.0.0.1:5432", pw,
			"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", g)
		cfg, err := node.ParseConfig([]byte(conf))
		if err != nil {
			t.Fatalf("%v\n%s", err, conf)
		}
		if err := node.Init(cfg, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := node.New(cfg, nil); err != nil {
			t.Fatalf("%v\n%s", err, conf)
		}
		if cfg.Grants[0].ReadAhead != g.ReadAhead {
			t.Fatalf("%+v: read_ahead %v", g, cfg.Grants[0].ReadAhead)
		}
		if got := cfg.Grants[0].Masking != ""; got != masked {
			t.Fatalf("masked %v: the grant's profile is %q", masked, cfg.Grants[0].Masking)
		}
	}
}
