package depcheck

import (
	"fmt"
	"slices"
	"strings"
)

// Package is one package of an import graph, with the fields of
// `go list -deps -json` that the rules read.
type Package struct {
	ImportPath     string
	Dir            string
	Standard       bool
	Imports        []string // non-test imports, for the build configuration listed
	GoFiles        []string
	CgoFiles       []string
	IgnoredGoFiles []string // excluded by build constraints; still read for [CheckSource]
	Module         *Module
	Error          *PackageError
}

// Module is the module a package belongs to.
type Module struct {
	Path string
	Main bool // the module under test
}

// PackageError is an error `go list -e` reports for a package.
type PackageError struct {
	Err string
}

// Graph is an import graph: a module's packages and all their dependencies.
type Graph struct {
	module string
	pkgs   map[string]*Package
}

// NewGraph returns the graph of pkgs; module is the path of the module
// whose packages the rules judge.
func NewGraph(module string, pkgs []*Package) *Graph {
	g := &Graph{module: module, pkgs: make(map[string]*Package, len(pkgs))}
	for _, p := range pkgs {
		g.pkgs[p.ImportPath] = p
	}
	return g
}

// Package returns the package with the import path, or nil.
func (g *Graph) Package(path string) *Package { return g.pkgs[path] }

// Rel returns path relative to the module ("session/mask"), or path
// unchanged for a package outside it.
func (g *Graph) Rel(path string) string {
	if path == g.module {
		return "."
	}
	if rel, ok := strings.CutPrefix(path, g.module+"/"); ok {
		return rel
	}
	return path
}

// InModule reports whether path is a package of the judged module.
func (g *Graph) InModule(path string) bool {
	return path == g.module || strings.HasPrefix(path, g.module+"/")
}

// ModulePackages returns the import paths of the module's packages, sorted.
func (g *Graph) ModulePackages() []string {
	var out []string
	for path := range g.pkgs {
		if g.InModule(path) {
			out = append(out, path)
		}
	}
	slices.Sort(out)
	return out
}

// chain returns the shortest chain of imports from root to a package bad
// accepts, root first; nil if there is none. The imports of root are always
// read; those of any other package only when follow accepts it, which is
// how a rule says which dependencies answer for their own imports (a rule
// on non-standard dependencies does not hold fmt responsible for importing
// os). Among chains of equal length the first in import order is returned,
// so messages are stable.
func (g *Graph) chain(root string, bad func(string) bool, follow func(*Package) bool) []string {
	parent := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		p := g.pkgs[cur]
		if p == nil || (cur != root && !follow(p)) {
			continue
		}
		for _, imp := range p.Imports {
			if _, seen := parent[imp]; seen {
				continue
			}
			parent[imp] = cur
			if bad(imp) {
				var out []string
				for at := imp; at != ""; at = parent[at] {
					out = append(out, at)
				}
				slices.Reverse(out)
				return out
			}
			queue = append(queue, imp)
		}
	}
	return nil
}

// Violation is one broken rule.
type Violation struct {
	Package string   // the package that breaks the rule, relative to the module
	Rule    string   // the rule, with its reason
	Chain   []string // for an import: the package first, the forbidden import last
	Pos     string   // for source: file:line:column
	What    string   // for source: what was found there ("time.Now", `import "os"`)
}

func (v Violation) String() string {
	if v.Pos != "" {
		return fmt.Sprintf("%s: %s: %s", v.Pos, v.What, v.Rule)
	}
	return fmt.Sprintf("%s depends on %s: %s\n\timport chain: %s", v.Package, v.Chain[len(v.Chain)-1], v.Rule, strings.Join(v.Chain, " -> "))
}

// forbid returns a violation of rule for every root from which a package bad
// accepts can be reached (see [Graph.chain]), with the chain that reaches it.
func (g *Graph) forbid(rule string, roots []string, bad func(string) bool, follow func(*Package) bool) []Violation {
	var out []Violation
	for _, root := range roots {
		c := g.chain(root, bad, follow)
		if c == nil {
			continue
		}
		for i := range c {
			c[i] = g.Rel(c[i])
		}
		out = append(out, Violation{Package: g.Rel(root), Rule: rule, Chain: c})
	}
	return out
}
