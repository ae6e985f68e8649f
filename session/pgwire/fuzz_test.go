package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/sqlclass"
)

func testPlan(t testing.TB, n int) *mask.Plan {
	prof, err := mask.Compile("t", mask.ProfileConfig{Rules: []mask.RuleConfig{
		{Pattern: "^(a|c)$", Action: "keep-last-4"},
		{Pattern: "^b$", Action: "null"},
	}}, mask.Keys{Pseudonym: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	cols := make([]mask.Column, n)
	for i := range cols {
		cols[i] = mask.Column{Name: string(rune('a' + i%4)), TypeOID: 25}
	}
	return prof.Plan(cols, mask.Params{})
}

func dataRow(vals ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

func TestAppendMaskedDataRow(t *testing.T) {
	plan := testPlan(t, 4)
	out, err := appendMaskedDataRow(nil, dataRow([]byte("123-45-6789"), []byte("x"), nil, []byte("keep")), plan)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{'D'}, binary.BigEndian.AppendUint32(nil, uint32(4+len(dataRow([]byte("***-**-6789"), nil, nil, []byte("keep")))))...)
	want = append(want, dataRow([]byte("***-**-6789"), nil, nil, []byte("keep"))...)
	if !bytes.Equal(out, want) {
		t.Fatalf("got  %q\nwant %q", out, want)
	}
	for _, bad := range [][]byte{{}, {0}, {0, 1}, {0, 1, 0, 0, 0, 9, 'x'}, {0, 1, 0xff, 0xff, 0xff, 0xfe}, append(dataRow([]byte("x")), 'z')} {
		if _, err := appendMaskedDataRow(nil, bad, plan); !errors.Is(err, errMalformedRow) {
			t.Errorf("row %q: err = %v, want errMalformedRow", bad, err)
		}
	}
}

func FuzzAppendMaskedDataRow(f *testing.F) {
	f.Add(dataRow([]byte("123-45-6789"), []byte("x"), nil, []byte("keep")))
	f.Add([]byte{0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{0, 1, 0x7f, 0xff, 0xff, 0xff})
	plan := testPlan(f, 8)
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := appendMaskedDataRow(nil, body, plan)
		if err != nil {
			if len(out) != 0 {
				t.Fatalf("error with %d bytes left in dst", len(out))
			}
			return
		}
		if n := binary.BigEndian.Uint32(out[1:5]); int(n) != len(out)-1 || out[0] != 'D' {
			t.Fatalf("bad framing: len field %d, message %d", n, len(out))
		}
		// A well-formed row stays well-formed with the same column count.
		if !bytes.Equal(out[5:7], body[:2]) {
			t.Fatal("column count changed")
		}
	})
}

func TestCopyPlanText(t *testing.T) {
	plan := testPlan(t, 4)
	cp := newCopyPlan(plan, &sqlclass.Copy{Format: "text"})
	out, err := cp.appendRow(nil, []byte("123-45-6789\tsecret\t\\N\tta\\tb\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "***-**-6789\t\\N\t\\N\tta\\tb\n"; string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	out, err = cp.appendRow(nil, []byte("a\\tb\\\\c-1234\tx\tnull\tz\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "*\\t*\\\\*-1234\t\\N\tnull\tz\n"; string(out) != want {
		t.Fatalf("escaped: got %q, want %q", out, want)
	}
}

func TestCopyPlanCSV(t *testing.T) {
	plan := testPlan(t, 4)
	cp := newCopyPlan(plan, &sqlclass.Copy{Format: "csv", Header: true})
	rows := []string{"a,b,c,d\n", "\"12,34-5678\",x,,\"q\"\"uote\"\n", "plain,\"y\",\"\",last\n"}
	want := []string{"a,b,c,d\n", "\"**,**-5678\",,,\"q\"\"uote\"\n", "*lain,,\"\",last\n"}
	for i, r := range rows {
		out, err := cp.appendRow(nil, []byte(r))
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		if string(out) != want[i] {
			t.Errorf("row %d: got %q, want %q", i, out, want[i])
		}
	}
	if _, err := cp.appendRow(nil, []byte("\"unterminated\n")); !errors.Is(err, errMalformedRow) {
		t.Fatalf("unterminated quote: %v", err)
	}
}

func FuzzCopyRow(f *testing.F) {
	f.Add([]byte("123-45-6789\tsecret\t\\N\tta\\tb\n"), false)
	f.Add([]byte("\"12,34-5678\",x,,\"q\"\"uote\"\n"), true)
	f.Add([]byte("\\"), false)
	f.Add([]byte("\""), true)
	plan := testPlan(f, 6)
	f.Fuzz(func(t *testing.T, row []byte, csv bool) {
		format := "text"
		if csv {
			format = "csv"
		}
		cp := newCopyPlan(plan, &sqlclass.Copy{Format: format})
		_, _ = cp.appendRow(nil, row)
	})
}

func TestFrameReader(t *testing.T) {
	msg := func(typ byte, body string) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{typ}, uint32(4+len(body))), body...)
	}
	big := bytes.Repeat([]byte("x"), 100)
	stream := bytes.Join([][]byte{msg('Q', "SELECT 1\x00"), msg('S', ""), msg('d', string(big))}, nil)
	fr := newFrameReader("client", bytes.NewReader(stream), 16, 1000)
	for _, want := range []struct {
		typ  byte
		body string
	}{{'Q', "SELECT 1\x00"}, {'S', ""}, {'d', string(big)}} {
		typ, body, err := fr.next()
		if err != nil || typ != want.typ || string(body) != want.body || !bytes.Equal(fr.raw[5:], body) {
			t.Fatalf("next = %q %q %v, want %q %q", typ, body, err, want.typ, want.body)
		}
	}
	if _, _, err := fr.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
	fr = newFrameReader("client", bytes.NewReader(msg('d', string(big))), 16, 50)
	if _, _, err := fr.next(); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	fr = newFrameReader("client", bytes.NewReader([]byte{'Q', 0, 0, 0, 3}), 16, 50)
	if _, _, err := fr.next(); !errors.Is(err, ErrBadLength) {
		t.Fatalf("bad length: %v", err)
	}
	fr = newFrameReader("client", bytes.NewReader(msg('Q', "SELECT")[:7]), 16, 50)
	if _, _, err := fr.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
}

func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{'Q', 0, 0, 0, 9, 'S', 'E', 'L', '1', 0})
	f.Add([]byte{'X', 0, 0, 0, 4, 'S', 0, 0, 0, 4})
	f.Add([]byte{'d', 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, stream []byte) {
		fr := newFrameReader("client", bytes.NewReader(stream), 32, 256)
		total := 0
		for {
			_, body, err := fr.next()
			if err != nil {
				return
			}
			total += 5 + len(body)
			if total > len(stream) {
				t.Fatalf("read %d bytes from a %d-byte stream", total, len(stream))
			}
		}
	})
}

func TestParseStartupParams(t *testing.T) {
	p, err := parseStartupParams([]byte("user\x00bot\x00database\x00clinic\x00\x00"))
	if err != nil || p["user"] != "bot" || p["database"] != "clinic" {
		t.Fatalf("params = %v, %v", p, err)
	}
	for _, bad := range []string{"", "user\x00bot\x00", "user\x00bot", "database\x00x\x00\x00", "user\x00bot\x00\x00extra"} {
		if _, err := parseStartupParams([]byte(bad)); err == nil {
			t.Errorf("parseStartupParams(%q) accepted", bad)
		}
	}
}

func FuzzParseStartupParams(f *testing.F) {
	f.Add([]byte("user\x00bot\x00database\x00clinic\x00\x00"))
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseStartupParams(b)
		if err == nil && p["user"] == "" {
			t.Fatal("accepted a startup packet without a user")
		}
	})
}

func FuzzReadPacket(f *testing.F) {
	f.Add([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f})
	f.Add([]byte{0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, body, err := readPacket(bytes.NewReader(b))
		if err == nil && len(body) > maxStartupPacket {
			t.Fatal("oversized startup packet accepted")
		}
	})
}

// FuzzParseOptions: the startup "options" reader never panics, yields
// only named settings, and reads back what it would write.
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{"-c search_path=public", "--search-path=a\\ b", "-cx=1 -c y=2", "-F", "-c", "-c =1", "  ", "\\", "-c a=\\\\ -c b=\\ "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pairs, perr := parseOptions(s)
		if perr != nil {
			return
		}
		var enc []string
		for _, kv := range pairs {
			if kv[0] == "" || strings.ContainsAny(kv[0], "=") {
				t.Fatalf("bad name %q from %q", kv[0], s)
			}
			escaped := strings.NewReplacer(`\`, `\\`, " ", `\ `, "\t", "\\\t", "\n", "\\\n", "\r", "\\\r", "\f", "\\\f", "\v", "\\\v").Replace(kv[0] + "=" + kv[1])
			enc = append(enc, "-c "+escaped)
		}
		again, perr := parseOptions(strings.Join(enc, " "))
		if perr != nil || len(again) != len(pairs) {
			t.Fatalf("%q: round trip %v %v", s, again, perr)
		}
		for i := range pairs {
			if again[i] != pairs[i] {
				t.Fatalf("%q: round trip %q != %q", s, again[i], pairs[i])
			}
		}
	})
}

// FuzzJudgeParam: a startup parameter is judged as one SET statement,
// whatever its name and value hold: quoting cannot be broken out of.
func FuzzJudgeParam(f *testing.F) {
	for _, s := range [][2]string{{"search_path", "public"}, {`a"b`, `x'y`}, {"x", `'; DROP TABLE t; --`}, {`"; DELETE FROM t; --`, "1"}, {"n", `\'; SELECT 1; --`}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		if strings.ContainsRune(name+value, 0) || !utf8.ValidString(name+value) {
			return // a startup packet holds C strings; invalid UTF-8 is refused
		}
		stmts, err := sqlclass.Classify("SET " + quoteIdent(name) + " TO " + quoteLiteral(value))
		if err != nil {
			return // refused as an invalid parameter
		}
		if len(stmts) != 1 || stmts[0].Kind != "variable_set_stmt" {
			t.Fatalf("name %q value %q read as %d statements (%v)", name, value, len(stmts), stmts)
		}
	})
}
