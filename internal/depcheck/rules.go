package depcheck

import "strings"

// Pure lists the packages, relative to the module, that compute on values
// only: the proxy and the node do their I/O and hand them what they need
// (ARCHITECTURE.md). A package added here must exist, or the test fails, so
// that a rename cannot leave a rule guarding nothing.
var Pure = []string{
	"session/approval",
	"session/change",
	"session/identity",
	"session/lineage",
	"session/mask",
	"session/policy",
	"session/record",
	"session/resource",
	"session/sqlclass",
	"storage/chunk",
}

// Trees, relative to the module, whose packages may depend on etcd or
// memberlist: cluster/ is their only importer; node wires cluster/ in, and
// the CLI and the main package sit on top of node.
var clusterImporters = []tree{{"cluster", true}, {"node", false}, {"node/cli", true}, {"node/cmd", true}}

// The wiring layer among them: a package that imports node (a test
// harness, a chaos scenario) gets etcd through the wiring, as it should, so
// the rule does not look past these; it does look past cluster/, since
// importing cluster/ is using etcd.
var clusterWiring = []tree{{"node", false}, {"node/cli", true}, {"node/cmd", true}}

// Trees, relative to the module, that are not production code: benchmarks,
// fault scenarios, demos, test helpers and tools (everything under the
// module's internal/ is one of those today), and generators. Production code
// must not depend on their packages; a package under internal/ that
// production code needs belongs elsewhere.
var nonProduction = []tree{{"bench", true}, {"chaos", true}, {"examples", true}, {"internal", true}, {"session/sqlclass/internal/genfuncs", true}}

// Module path prefixes of the libraries only cluster/ may use.
var clusterLibraries = []string{"go.etcd.io/etcd", "github.com/hashicorp/memberlist"}

// The rules, as reported.
const (
	RuleCluster  = "only cluster/ may depend on etcd or memberlist (and node, node/cli and node/cmd/..., which wire it in; importing them is how the rest gets it)"
	RulePureNet  = "a pure package must not reach the network (net, net/... but net/netip, crypto/tls), by its own imports or those of a non-standard package it depends on"
	RulePureFS   = "a pure package must not use the file system (os, os/..., io/fs, io/ioutil, path/filepath), by its own imports or those of a package of this module it depends on; embed is fine"
	RulePureTime = "a pure package must not read or wait on the clock: it takes times as values (time.Time, time.Duration)"
	RuleTestOnly = "production code must not depend on bench/, chaos/, examples/ or internal/ (benchmarks, fault scenarios, demos, test helpers, tools)"
)

// tree is a package, and with sub, every package below it.
type tree struct {
	path string
	sub  bool
}

func inTrees(rel string, trees []tree) bool {
	for _, t := range trees {
		if rel == t.path || (t.sub && strings.HasPrefix(rel, t.path+"/")) {
			return true
		}
	}
	return false
}

func isClusterLibrary(path string) bool {
	for _, m := range clusterLibraries {
		if path == m || strings.HasPrefix(path, m+"/") {
			return true
		}
	}
	return false
}

// IsNetwork reports whether a standard package gives access to the network.
// net/netip does not: it holds IP address and prefix values only (it
// imports nothing that opens a socket or resolves a name), which pure code
// may compare, as identity does with a client's address.
func IsNetwork(path string) bool {
	if path == "net/netip" {
		return false
	}
	return path == "net" || strings.HasPrefix(path, "net/") || path == "crypto/tls"
}

// IsFileSystem reports whether a standard package gives access to the file
// system. embed does not: it reads files at build time only.
func IsFileSystem(path string) bool {
	switch path {
	case "os", "io/fs", "io/ioutil", "path/filepath":
		return true
	}
	return strings.HasPrefix(path, "os/")
}

// Check applies the import rules to the graph's module. Missing lists the
// [Pure] packages the graph does not hold.
func Check(g *Graph) (violations []Violation, missing []string) {
	all := g.ModulePackages()
	var pure []string
	for _, rel := range Pure {
		path := g.module + "/" + rel
		if g.Package(path) == nil {
			missing = append(missing, rel)
			continue
		}
		pure = append(pure, path)
	}

	var notCluster, production []string
	for _, path := range all {
		rel := g.Rel(path)
		if !inTrees(rel, clusterImporters) {
			notCluster = append(notCluster, path)
		}
		if !inTrees(rel, nonProduction) {
			production = append(production, path)
		}
	}
	nonStandard := func(p *Package) bool { return !p.Standard }
	inModule := func(p *Package) bool { return g.InModule(p.ImportPath) }

	beforeWiring := func(p *Package) bool { return !p.Standard && !inTrees(g.Rel(p.ImportPath), clusterWiring) }
	violations = append(violations, g.forbid(RuleCluster, notCluster, isClusterLibrary, beforeWiring)...)
	violations = append(violations, g.forbid(RulePureNet, pure, IsNetwork, nonStandard)...)
	violations = append(violations, g.forbid(RulePureFS, pure, IsFileSystem, inModule)...)
	testOnly := func(path string) bool { return g.InModule(path) && inTrees(g.Rel(path), nonProduction) }
	violations = append(violations, g.forbid(RuleTestOnly, production, testOnly, inModule)...)
	return violations, missing
}
