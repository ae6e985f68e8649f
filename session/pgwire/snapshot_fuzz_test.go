package pgwire

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session/change"
	"github.com/phigate/phigate/session/sqlclass"
)

func encodeAll(t testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// FuzzRestOfPipeline: reading ahead never panics and never consumes
// anything; it allows a block only when a Sync ends what it read, and
// then every Execute before that Sync runs a plain DML or SELECT.
func FuzzRestOfPipeline(f *testing.F) {
	f.Add(encodeAll(f, &pgproto3.Sync{}))
	f.Add(encodeAll(f, &pgproto3.Parse{Name: "s", Query: "UPDATE t SET a = 1"}, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(encodeAll(f, &pgproto3.Parse{Query: "COMMIT"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(encodeAll(f, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "known"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Flush{}, &pgproto3.Sync{}))
	f.Add(encodeAll(f, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Sync{}))
	f.Add([]byte{'S', 0, 0, 0})
	classes := sqlclass.NewCache(0)
	classify := func(sql string) []sqlclass.Statement { s, _ := classes.Classify(sql); return s }
	known := func(name string) []sqlclass.Statement {
		if name == "known" {
			return classify("SAVEPOINT x")
		}
		return nil
	}
	f.Fuzz(func(t *testing.T, ahead []byte) {
		orig := bytes.Clone(ahead)
		why := restOfPipeline(ahead, classify, known, known)
		if !bytes.Equal(orig, ahead) {
			t.Fatal("reading ahead changed the bytes")
		}
		if why != "" {
			return
		}
		// A block was allowed: the walk must have ended at a Sync after
		// allowed messages only.
		for b := ahead; ; {
			if len(b) < 5 {
				t.Fatalf("allowed without a Sync: %x", ahead)
			}
			n := int(binary.BigEndian.Uint32(b[1:5]))
			if b[0] == 'S' {
				return
			}
			if !strings.ContainsRune("HDCPBE", rune(b[0])) {
				t.Fatalf("allowed past a %q message", b[0])
			}
			b = b[1+n:]
		}
	})
}

// FuzzSplitDataRow: a DataRow body that splits re-encodes to itself.
func FuzzSplitDataRow(f *testing.F) {
	f.Add(dataRow([]byte("a"), nil, []byte{}))
	f.Add([]byte{0, 1, 0xff, 0xff, 0xff, 0xfe})
	f.Add([]byte{0, 2, 0, 0, 0, 9, 'x'})
	f.Fuzz(func(t *testing.T, body []byte) {
		vals, err := splitDataRow(body)
		if err != nil {
			return
		}
		if got := dataRow(vals...); !bytes.Equal(got, body) {
			t.Fatalf("%x splits into values that encode as %x", body, got)
		}
	})
}

// FuzzTextArray: the text[] literal of any names reads back as those
// names (by PostgreSQL's array_in rules for quoted elements).
func FuzzTextArray(f *testing.F) {
	f.Add(`"public"."t"`, `"a\b"`, `{"x"}`)
	f.Fuzz(func(t *testing.T, a, b, c string) {
		elems := []string{a, b, c}
		lit := string(textArray(elems))
		got, ok := parseQuotedArray(lit)
		if !ok || len(got) != 3 || got[0] != a || got[1] != b || got[2] != c {
			t.Fatalf("%q reads back as %q", lit, got)
		}
	})
}

// parseQuotedArray reads a one-dimensional array literal of quoted
// elements as array_in does.
func parseQuotedArray(s string) ([]string, bool) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, false
	}
	s = s[1 : len(s)-1]
	var out []string
	for len(s) > 0 {
		if s[0] != '"' {
			return nil, false
		}
		var e strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				i++
				if i == len(s) {
					return nil, false
				}
			}
			e.WriteByte(s[i])
		}
		if i == len(s) {
			return nil, false
		}
		out = append(out, e.String())
		s = s[i+1:]
		if len(s) > 0 {
			if s[0] != ',' {
				return nil, false
			}
			s = s[1:]
		}
	}
	return out, true
}

// FuzzCheckRelations: any rows the resolve step could send are judged
// without a panic, and a target is accepted only when the server named a
// plain or partitioned table without rules first.
func FuzzCheckRelations(f *testing.F) {
	f.Add([]byte("1\x0016384\x00r\x00f\x002\x00\x00\x00"), 2)
	f.Add([]byte("1\x0016384\x00v\x00f"), 1)
	plan, err := change.Analyze("UPDATE t SET a = 1 FROM u WHERE t.id = u.id", 10)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, n int) {
		var rows [][][]byte
		for _, r := range bytes.Split(raw, []byte{'\n'}) {
			var row [][]byte
			for _, v := range bytes.Split(r, []byte{0}) {
				if len(v) == 0 {
					v = nil
				}
				row = append(row, v)
			}
			rows = append(rows, row)
		}
		target, why := checkRelations(plan, rows)
		if why == "" && target == 0 {
			t.Fatal("accepted without a target")
		}
		if why == "" {
			for _, r := range rows {
				if string(r[0]) == "1" && (string(r[2]) != "r" && string(r[2]) != "p" || string(r[3]) == "t") {
					t.Fatalf("accepted a target of kind %q (rules %q)", r[2], r[3])
				}
			}
		}
	})
}
