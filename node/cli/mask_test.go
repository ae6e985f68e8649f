package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runMaskCommand runs `phigate mask args...` through the real command tree
// with stdin and returns stdout, stderr and the error.
func runMaskCommand(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := NewRoot()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"mask"}, args...))
	err := root.Execute()
	return out.String(), errOut.String(), err
}

type maskLine struct {
	ID       json.RawMessage `json:"id"`
	Masked   string          `json:"masked"`
	Findings []maskFinding   `json:"findings"`
	Error    string          `json:"error"`
}

func decodeMaskLines(t *testing.T, out string) []maskLine {
	t.Helper()
	var lines []maskLine
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l maskLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("output line %q is not JSON: %v", sc.Text(), err)
		}
		if l.Findings == nil {
			t.Fatalf("output line %q has no findings array", sc.Text())
		}
		lines = append(lines, l)
	}
	return lines
}

// spans returns the text of each finding, cut by code point offsets.
func spans(text string, fs []maskFinding) []string {
	r := []rune(text)
	var out []string
	for _, f := range fs {
		if f.Start < 0 || f.End > len(r) || f.Start >= f.End {
			out = append(out, "<bad span>")
			continue
		}
		out = append(out, f.Type+":"+string(r[f.Start:f.End]))
	}
	return out
}

func TestMaskCommandJSONLines(t *testing.T) {
	texts := []string{
		"Pt's daughter Maria called, call back 617-555-0142.",
		// non-ASCII before the findings: offsets are code points, not bytes
		"Zoë née Ørsted — wife of Dr. Müller — seen on 3/14/2021 ☎ (508) 555-0199, zoe@example.org",
		"Vitals: T 98.6, HR 72, BP 118/76. Lasix 40 mg IV given.",
		"",
	}
	var in strings.Builder
	for i, txt := range texts {
		id := `"n` + string(rune('0'+i)) + `"`
		if i == 2 {
			id = "42" // ids keep their JSON type
		}
		b, _ := json.Marshal(txt)
		in.WriteString(`{"id": ` + id + `, "text": ` + string(b) + "}\n")
	}
	out, _, err := runMaskCommand(t, in.String())
	if err != nil {
		t.Fatal(err)
	}
	lines := decodeMaskLines(t, out)
	if len(lines) != len(texts) {
		t.Fatalf("%d output lines for %d inputs:\n%s", len(lines), len(texts), out)
	}
	if string(lines[0].ID) != `"n0"` || string(lines[2].ID) != "42" || string(lines[3].ID) != `"n3"` {
		t.Errorf("ids out of order or retyped: %s %s %s", lines[0].ID, lines[2].ID, lines[3].ID)
	}
	want := [][]string{
		{"NAME:Maria", "PHONE:617-555-0142"},
		{"NAME:Müller", "DATE:3/14/2021", "PHONE:(508) 555-0199", "EMAIL:zoe@example.org"},
		nil,
		nil,
	}
	for i, l := range lines {
		got := spans(texts[i], l.Findings)
		for _, w := range want[i] {
			found := false
			for _, g := range got {
				if g == w {
					found = true
				}
			}
			if !found {
				t.Errorf("line %d: want finding %s, got %v", i, w, got)
			}
		}
		if want[i] == nil && len(got) != 0 {
			t.Errorf("line %d: want no findings, got %v", i, got)
		}
		for k := 1; k < len(l.Findings); k++ {
			if l.Findings[k].Start < l.Findings[k-1].End {
				t.Errorf("line %d: findings overlap or are out of order: %v", i, l.Findings)
			}
		}
		// the masked text is the input with each finding replaced by its type
		r := []rune(texts[i])
		var m strings.Builder
		prev := 0
		for _, f := range l.Findings {
			m.WriteString(string(r[prev:f.Start]) + "[" + f.Type + "]")
			prev = f.End
		}
		m.WriteString(string(r[prev:]))
		if l.Masked != m.String() {
			t.Errorf("line %d: masked %q, want %q", i, l.Masked, m.String())
		}
	}
	if strings.Contains(lines[1].Masked, "Müller") || strings.Contains(lines[1].Masked, "555-0199") {
		t.Errorf("PHI left in %q", lines[1].Masked)
	}
}

func TestMaskCommandMalformedLines(t *testing.T) {
	in := strings.Join([]string{
		`{"id": "a", "text": "Wife Linda at bedside."}`,
		`not json at all`,
		`{"id": "b", "text": 12}`,
		`["id", "text"]`,
		`{"id": "c", "text": "Call 617-555-0142"}`,
		``, // blank lines are not inputs
		`{"id": "d"}`,
	}, "\n") + "\n"
	out, stderr, err := runMaskCommand(t, in)
	if err != nil {
		t.Fatalf("malformed lines must not fail the run (outputs pair with inputs by position): %v", err)
	}
	if !strings.Contains(stderr, "3 of 6 lines") {
		t.Errorf("stderr %q does not count the malformed lines", stderr)
	}
	lines := decodeMaskLines(t, out)
	if len(lines) != 6 {
		t.Fatalf("%d output lines for 6 inputs:\n%s", len(lines), out)
	}
	for _, k := range []int{1, 2, 3} {
		if lines[k].Error == "" || string(lines[k].ID) != "null" || len(lines[k].Findings) != 0 {
			t.Errorf("line %d: want an error line with id null, got %+v", k, lines[k])
		}
	}
	if string(lines[0].ID) != `"a"` || lines[0].Masked != "Wife [NAME] at bedside." {
		t.Errorf("line 0: %+v", lines[0])
	}
	if string(lines[4].ID) != `"c"` || lines[4].Masked != "Call [PHONE]" {
		t.Errorf("line 4: %+v", lines[4])
	}
	if string(lines[5].ID) != `"d"` || lines[5].Masked != "" || lines[5].Error != "" {
		t.Errorf("line 5 (no text): %+v", lines[5])
	}
}

func TestMaskCommandPolicy(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("detect:\n  types: [PHONE]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := `{"id": "x", "text": "Dr. Okafor paged at (617) 555-0100 on 3/14."}` + "\n"
	out, _, err := runMaskCommand(t, in, "--policy", policy)
	if err != nil {
		t.Fatal(err)
	}
	lines := decodeMaskLines(t, out)
	if len(lines) != 1 || len(lines[0].Findings) != 1 || lines[0].Findings[0].Type != "PHONE" {
		t.Fatalf("with types [PHONE]: %s", out)
	}
	if lines[0].Masked != "Dr. Okafor paged at [PHONE] on 3/14." {
		t.Errorf("masked %q", lines[0].Masked)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("detect:\n  types: [NOPE]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runMaskCommand(t, in, "--policy", bad); err == nil {
		t.Error("an unknown type in the policy must fail")
	}
	if _, _, err := runMaskCommand(t, in, "--policy", filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing policy file must fail")
	}
}

// TestMaskCommandMode checks --mode: recall-first (the default) masks what
// only its position says is PHI (a ward named by an unknown word after a
// verb of moving, in capitals), precision does not; a profile's
// detect.mode is overridden by the flag; an unknown mode is an error. Each
// finding names its detector.
func TestMaskCommandMode(t *testing.T) {
	in := `{"id":"1","text":"PT TRANSFERRED TO BRINDLEWOOD 4 ON MONDAY. DR HALVORSEN AWARE."}` + "\n"
	masked := func(args ...string) maskLine {
		t.Helper()
		out, _, err := runMaskCommand(t, in, args...)
		if err != nil {
			t.Fatal(err)
		}
		lines := decodeMaskLines(t, out)
		if len(lines) != 1 {
			t.Fatalf("%d lines", len(lines))
		}
		return lines[0]
	}
	def, recall, precise := masked(), masked("--mode", "recall-first"), masked("--mode", "precision")
	if def.Masked != recall.Masked {
		t.Errorf("default %q, recall-first %q", def.Masked, recall.Masked)
	}
	if strings.Contains(recall.Masked, "BRINDLEWOOD") || strings.Contains(recall.Masked, "HALVORSEN") || !strings.Contains(recall.Masked, "MONDAY") {
		t.Errorf("recall-first: %q", recall.Masked)
	}
	if !strings.Contains(precise.Masked, "BRINDLEWOOD") || strings.Contains(precise.Masked, "HALVORSEN") {
		t.Errorf("precision: %q", precise.Masked)
	}
	for _, f := range recall.Findings {
		if f.Detector == "" {
			t.Errorf("finding without a detector: %+v", f)
		}
	}
	policy := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(policy, []byte("detect:\n  mode: precision\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := masked("--policy", policy); got.Masked != precise.Masked {
		t.Errorf("profile mode precision: %q", got.Masked)
	}
	if got := masked("--policy", policy, "--mode", "recall-first"); got.Masked != recall.Masked {
		t.Errorf("--mode over the profile: %q", got.Masked)
	}
	if _, _, err := runMaskCommand(t, in, "--mode", "loose"); err == nil || !strings.Contains(err.Error(), "recall-first or precision") {
		t.Errorf("unknown mode: %v", err)
	}
}
