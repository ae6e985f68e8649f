package harness

import (
	"os"
	"path/filepath"
	"strings"
)

// WriteReadmeSection puts section into dir/README.md in place of an
// earlier one, or at the end. The section is one program's part of a file
// several programs write: it starts with the line begin and ends with the
// line end, markers of that program's own (see ReplaceSection). A begin
// marker is an HTML comment line, "<!-- <program>: begin ...", which is
// how WriteReadmeTop tells the sections from the top.
func WriteReadmeSection(dir, begin, end, section string) error {
	path := filepath.Join(dir, "README.md")
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(ReplaceSection(string(b), begin, end, section)), 0o644)
}

// ReplaceSection returns doc with the text from begin to end (markers
// included, and the newline after end) replaced by section, or with
// section appended after a blank line when doc has no such markers.
func ReplaceSection(doc, begin, end, section string) string {
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i >= 0 && j > i {
		rest := doc[j+len(end):]
		rest = strings.TrimPrefix(rest, "\n")
		return doc[:i] + section + rest
	}
	if doc != "" && !strings.HasSuffix(doc, "\n") {
		doc += "\n"
	}
	if doc != "" {
		doc += "\n"
	}
	return doc + section
}

// WriteReadmeTop puts top into dir/README.md in place of everything before
// the first program's section (see ReplaceTop): the part of the file that
// bench/pg writes, above the sections other programs write.
func WriteReadmeTop(dir, top string) error {
	path := filepath.Join(dir, "README.md")
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(ReplaceTop(string(b), top)), 0o644)
}

// ReplaceTop returns doc with the text before its first section begin
// marker (a line that starts with "<!-- " and holds ": begin") replaced by
// top, a blank line between; or top alone when doc has no section.
func ReplaceTop(doc, top string) string {
	rest := ""
	for off := 0; off < len(doc); {
		line, _, _ := strings.Cut(doc[off:], "\n")
		if strings.HasPrefix(line, "<!-- ") && strings.Contains(line, ": begin") {
			rest = doc[off:]
			break
		}
		off += len(line) + 1
	}
	if rest == "" {
		return top
	}
	top = strings.TrimRight(top, "\n")
	return top + "\n\n" + rest
}
