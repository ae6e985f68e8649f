package chunk

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/depcheck"
)

// TestPure applies the pure packages' source rules (no network, no file
// system, no clock) to this package's non-test files.
func TestPure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		vs, err := depcheck.CheckSource(name, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			t.Errorf("%v", v)
		}
	}
}

// TestVerifiersTakeNoPrivateKey checks, from their signatures, that no
// verifier can be handed a private key: what they get (objects, published
// keys, times) holds none.
func TestVerifiersTakeNoPrivateKey(t *testing.T) {
	private := []reflect.Type{
		reflect.TypeFor[ed25519.PrivateKey](), reflect.TypeFor[*ecdh.PrivateKey](),
		reflect.TypeFor[Signer](), reflect.TypeFor[*Opener](),
	}
	for name, fn := range map[string]any{
		"Decode": Decode, "DecodeHeader": DecodeHeader, "DecodeManifest": DecodeManifest, "DecodeDigest": DecodeDigest,
		"VerifyManifest": VerifyManifest, "VerifyDigest": VerifyDigest,
		"VerifySession": VerifySession, "VerifyDigests": VerifyDigests, "CheckListed": CheckListed,
	} {
		ft := reflect.TypeOf(fn)
		seen := map[reflect.Type]bool{}
		var walk func(reflect.Type) bool
		walk = func(ty reflect.Type) bool {
			if seen[ty] {
				return false
			}
			seen[ty] = true
			for _, p := range private {
				if ty == p {
					return true
				}
			}
			switch ty.Kind() {
			case reflect.Pointer, reflect.Slice, reflect.Array:
				return walk(ty.Elem())
			case reflect.Map:
				return walk(ty.Key()) || walk(ty.Elem())
			case reflect.Struct:
				for i := 0; i < ty.NumField(); i++ {
					if walk(ty.Field(i).Type) {
						return true
					}
				}
			}
			return false
		}
		for i := 0; i < ft.NumIn(); i++ {
			if walk(ft.In(i)) {
				t.Errorf("%s takes %s, which can carry a private key", name, ft.In(i))
			}
		}
	}
}
