package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestModule checks this module against the rules: its import graph, and the
// non-test files of the pure packages.
func TestModule(t *testing.T) {
	root := moduleRoot(t)
	noteInputs(t, root)

	cmd := exec.Command("go", "list", "-e", "-deps",
		"-json=ImportPath,Dir,Standard,Imports,GoFiles,CgoFiles,IgnoredGoFiles,Module,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []*Package
	module := ""
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		p := new(Package)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module != nil && p.Module.Main {
			module = p.Module.Path
		}
		pkgs = append(pkgs, p)
	}
	if module == "" {
		t.Fatal("go list listed no package of the main module")
	}
	g := NewGraph(module, pkgs)
	for _, p := range pkgs {
		// A package go list could not read has imports the graph lacks,
		// so the rules cannot vouch for it.
		if p.Error != nil && g.InModule(p.ImportPath) {
			t.Errorf("%s: cannot read its imports: %s", g.Rel(p.ImportPath), p.Error.Err)
		}
	}

	violations, missing := Check(g)
	for _, rel := range missing {
		t.Errorf("pure package %s does not exist: update depcheck.Pure", rel)
	}
	for _, rel := range Pure {
		p := g.Package(module + "/" + rel)
		if p == nil {
			continue
		}
		files := slices.Concat(p.GoFiles, p.CgoFiles, p.IgnoredGoFiles)
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") || !strings.HasSuffix(name, ".go") {
				continue
			}
			src, err := os.ReadFile(filepath.Join(p.Dir, name))
			if err != nil {
				t.Fatal(err)
			}
			v, err := CheckSource(filepath.ToSlash(filepath.Join(rel, name)), src)
			if err != nil {
				t.Errorf("%v", err)
			}
			violations = append(violations, v...)
		}
	}
	for _, v := range violations {
		t.Error(v)
	}
}

// moduleRoot returns the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not inside a module")
	}
	return filepath.Dir(gomod)
}

// noteInputs reads every directory of the module, so that go test's cache
// keys this test's result on the module's files: go list reads them in a
// subprocess, which the cache does not see, and a cached pass would
// otherwise hide a new forbidden import.
func noteInputs(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
