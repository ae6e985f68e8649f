package blob_test

import (
	"strings"
	"testing"

	"github.com/phigate/phigate/storage/blob"
)

func TestParseLocation(t *testing.T) {
	for in, want := range map[string]string{
		"/var/lib/phigate/store":                                       "file:///var/lib/phigate/store",
		"file:///srv/store/":                                           "file:///srv/store",
		"s3://phi?endpoint=https://s3.internal:9000":                   "s3://phi?endpoint=https%3A%2F%2Fs3.internal%3A9000",
		"s3://phi?endpoint=http://127.0.0.1:9000&region=eu&ca=/ca.pem": "s3://phi?ca=%2Fca.pem&endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu",
	} {
		l, err := blob.ParseLocation(in)
		if err != nil || l.String() != want {
			t.Errorf("ParseLocation(%q) = %q, %v; want %q", in, l.String(), err, want)
		}
	}
	for in, why := range map[string]string{
		"":                                  "empty",
		"s3://ak:sk@phi?endpoint=https://h": "credentials",
		"s3://phi":                          "endpoint",
		"s3://phi/x?endpoint=https://h":     "want s3://BUCKET",
		"s3://phi?endpoint=https://h&key=1": "unknown parameter",
		"file://host/dir":                   "local path",
		"file:relative":                     "want file:///absolute",
		"gs://bucket":                       "unknown scheme",
	} {
		if _, err := blob.ParseLocation(in); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("ParseLocation(%q) = %v, want an error about %s", in, err, why)
		}
	}
}

// FuzzParseLocation: no panic; a location that parses prints as one that
// parses to the same; no credentials ever survive into a location.
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"/a/b", "file:///x", "s3://b?endpoint=https://h:1&region=r&ca=/c", "s3://u:p@b?endpoint=x", "file://h/x", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := blob.ParseLocation(s)
		if err != nil {
			return
		}
		again, err := blob.ParseLocation(l.String())
		if err != nil || again != l {
			t.Fatalf("%q -> %q -> %+v, %v", s, l.String(), again, err)
		}
		if strings.Contains(l.String(), "@") && strings.HasPrefix(s, "s3://") && strings.Contains(s[:strings.IndexByte(s+"?", '?')], "@") {
			t.Fatalf("credentials kept: %q", l.String())
		}
	})
}
