package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testBegin = "<!-- bench/x: begin -->"
	testEnd   = "<!-- bench/x: end -->"
)

func TestReplaceSection(t *testing.T) {
	section := testBegin + "\nnew\n" + testEnd + "\n"
	for _, tc := range []struct{ doc, want string }{
		{"", section},
		{"# bench/results\n\ntable\n", "# bench/results\n\ntable\n\n" + section},
		{"# t\nno newline", "# t\nno newline\n\n" + section},
		{"# t\n\n" + testBegin + "\nold\nold\n" + testEnd + "\n", "# t\n\n" + section},
		{"# t\n\n" + testBegin + "\nold\n" + testEnd + "\nafter\n", "# t\n\n" + section + "after\n"},
		{"# t\n\n<!-- bench/y: begin -->\ny\n<!-- bench/y: end -->\n", "# t\n\n<!-- bench/y: begin -->\ny\n<!-- bench/y: end -->\n\n" + section},
	} {
		if got := ReplaceSection(tc.doc, testBegin, testEnd, section); got != tc.want {
			t.Errorf("ReplaceSection(%q) =\n%q\nwant\n%q", tc.doc, got, tc.want)
		}
	}
}

func TestWriteReadmeSection(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# bench/results\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"first", "again"} {
		if err := WriteReadmeSection(dir, testBegin, testEnd, testBegin+"\n"+body+"\n"+testEnd+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	if got := string(b); got != "# bench/results\n\n"+testBegin+"\nagain\n"+testEnd+"\n" || strings.Contains(got, "first") {
		t.Fatalf("README.md:\n%s", got)
	}
}

func TestReplaceTop(t *testing.T) {
	y := "<!-- bench/y: begin (written by go run ./bench/y) -->\ny\n<!-- bench/y: end -->\n"
	for _, tc := range []struct{ doc, want string }{
		{"", "# new\n"},
		{"# old\ntable\n", "# new\n"},
		{"# old\n\n" + y, "# new\n\n" + y},
		{"# old\n\n" + y + "\n" + testBegin + "\nx\n" + testEnd + "\n", "# new\n\n" + y + "\n" + testBegin + "\nx\n" + testEnd + "\n"},
		{y, "# new\n\n" + y},
		// A marker quoted inside a line is not a section.
		{"# old: `<!-- bench/y: begin -->`\n", "# new\n"},
	} {
		if got := ReplaceTop(tc.doc, "# new\n"); got != tc.want {
			t.Errorf("ReplaceTop(%q) =\n%q\nwant\n%q", tc.doc, got, tc.want)
		}
	}
}
