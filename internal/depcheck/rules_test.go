package depcheck

import (
	"slices"
	"strings"
	"testing"
)

const testModule = "example.com/gw"

// graphOf builds a graph from "pkg: imp imp ..." lines; packages of the
// module are written relative to it, standard ones start with "std:".
func graphOf(lines ...string) *Graph {
	var pkgs []*Package
	full := func(path string) (string, bool) {
		if p, ok := strings.CutPrefix(path, "std:"); ok {
			return p, true
		}
		if strings.Contains(strings.SplitN(path, "/", 2)[0], ".") {
			return path, false
		}
		return testModule + "/" + path, false
	}
	for _, line := range lines {
		name, imps, _ := strings.Cut(line, ":")
		path, std := full(strings.TrimSpace(name))
		p := &Package{ImportPath: path, Standard: std}
		for _, imp := range strings.Fields(imps) {
			ip, _ := full(imp)
			p.Imports = append(p.Imports, ip)
		}
		pkgs = append(pkgs, p)
	}
	return NewGraph(testModule, pkgs)
}

// pureGraph is a module whose pure packages all exist and are clean, to
// which a test adds the lines under test.
func pureGraph(extra ...string) *Graph {
	lines := []string{
		"session/approval: std:crypto/sha256 std:time",
		"session/identity: std:fmt std:log/slog",
		"session/lineage: session/sqlclass",
		"session/mask: std:embed std:time example.org/phonenumbers",
		"session/policy: session/identity",
		"session/record: std:time std:log/slog",
		"session/resource: session/policy",
		"session/sqlclass: session/policy example.org/pgquery",
		"storage/chunk: std:crypto/ed25519",
		"session/change: example.org/pgquery std:fmt",
		"example.org/phonenumbers: std:os std:regexp", // a third party's os is not the pure package's
		"example.org/pgquery: std:os std:fmt",
		"std:fmt: std:os",
		"std:log/slog: std:log",
		"std:log: std:os",
		"std:os: std:io/fs",
		"std:net: std:os",
		"std:net/http: std:net std:crypto/tls",
		"std:crypto/tls: std:net",
		"std:crypto/x509: std:net",
		"session: session/mask std:crypto/tls",
		"session/pgwire: session std:net std:os",
		"node: session/pgwire",
		"node/cli: node",
		"node/cmd/gw: node/cli",
		"internal/pgtest: std:os std:testing",
		"bench/pg: internal/pgtest session/pgwire",
		"chaos: node",
		"session/sqlclass/internal/genfuncs: internal/pgtest",
		"cluster: go.etcd.io/etcd/client/v3 github.com/hashicorp/memberlist",
		"go.etcd.io/etcd/client/v3: std:net",
	}
	return graphOf(append(lines, extra...)...)
}

func check(t *testing.T, g *Graph) []string {
	t.Helper()
	vs, missing := Check(g)
	if len(missing) > 0 {
		t.Fatalf("pure packages missing from the test graph: %v", missing)
	}
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule+" | "+strings.Join(v.Chain, " -> "))
	}
	slices.Sort(out)
	return out
}

func TestCheckCleanGraph(t *testing.T) {
	if got := check(t, pureGraph()); len(got) != 0 {
		t.Fatalf("violations in a clean graph:\n%s", strings.Join(got, "\n"))
	}
}

func TestCheckFindsViolations(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string // replaces the package of the same name
		want  []string
	}{
		{
			name:  "pure imports net directly",
			extra: []string{"session/record: std:time std:net"},
			want:  []string{RulePureNet + " | session/record -> net"},
		},
		{
			name: "pure reaches net through a third party",
			extra: []string{
				"session/mask: std:embed example.org/geo",
				"example.org/geo: example.org/geo/internal/dns",
				"example.org/geo/internal/dns: std:net/http",
			},
			want: []string{RulePureNet + " | session/mask -> example.org/geo -> example.org/geo/internal/dns -> net/http"},
		},
		{
			name:  "pure reaches net through another module package",
			extra: []string{"session/policy: session/identity session"},
			want: []string{
				// policy imports session, which imports crypto/tls; so do
				// the pure packages that import policy, each reported with
				// its own chain.
				RulePureNet + " | session/policy -> session -> crypto/tls",
				RulePureNet + " | session/resource -> session/policy -> session -> crypto/tls",
				RulePureNet + " | session/sqlclass -> session/policy -> session -> crypto/tls",
				RulePureNet + " | session/lineage -> session/sqlclass -> session/policy -> session -> crypto/tls",
			},
		},
		{
			name:  "pure imports os",
			extra: []string{"session/identity: std:fmt std:os"},
			want: []string{
				RulePureFS + " | session/identity -> os",
				RulePureFS + " | session/lineage -> session/sqlclass -> session/policy -> session/identity -> os",
				RulePureFS + " | session/policy -> session/identity -> os",
				RulePureFS + " | session/resource -> session/policy -> session/identity -> os",
				RulePureFS + " | session/sqlclass -> session/policy -> session/identity -> os",
			},
		},
		{
			name:  "pure imports path/filepath and io/fs",
			extra: []string{"session/mask: std:path/filepath std:io/fs"},
			want:  []string{RulePureFS + " | session/mask -> path/filepath"},
		},
		{
			name:  "pure imports net/netip (address values, no sockets)",
			extra: []string{"session/identity: std:fmt std:log/slog std:net/netip"},
		},
		{
			name:  "pure imports net/http through a subpackage of its own",
			extra: []string{"session/identity: std:fmt session/identity/oidc", "session/identity/oidc: std:net/http"},
			want: []string{
				RulePureNet + " | session/identity -> session/identity/oidc -> net/http",
				RulePureNet + " | session/lineage -> session/sqlclass -> session/policy -> session/identity -> session/identity/oidc -> net/http",
				RulePureNet + " | session/policy -> session/identity -> session/identity/oidc -> net/http",
				RulePureNet + " | session/resource -> session/policy -> session/identity -> session/identity/oidc -> net/http",
				RulePureNet + " | session/sqlclass -> session/policy -> session/identity -> session/identity/oidc -> net/http",
			},
		},
		{
			name:  "a subpackage of a pure package is not pure",
			extra: []string{"session/identity/oidc: session/identity std:net/http std:os std:crypto/tls"},
		},
		{
			name:  "a standard package importing net does not count",
			extra: []string{"session/mask: std:embed std:crypto/x509"},
		},
		{
			name: "etcd reached from the proxy",
			extra: []string{
				"session/pgwire: session cluster",
			},
			want: []string{
				RuleCluster + " | bench/pg -> session/pgwire -> cluster -> go.etcd.io/etcd/client/v3",
				RuleCluster + " | session/pgwire -> cluster -> go.etcd.io/etcd/client/v3",
			},
		},
		{
			name: "a package importing node gets cluster through the wiring",
			extra: []string{
				"node: session/pgwire cluster",
				"internal/clientsuite: node std:os",
			},
		},
		{
			name: "memberlist imported directly outside cluster",
			extra: []string{
				"storage/spool: github.com/hashicorp/memberlist",
				"node: session/pgwire storage/spool",
			},
			// node itself may depend on it; the spool may not.
			want: []string{RuleCluster + " | storage/spool -> github.com/hashicorp/memberlist"},
		},
		{
			name:  "node and its CLI may wire cluster in",
			extra: []string{"node: session/pgwire cluster", "node/cli: node go.etcd.io/etcd/client/v3"},
		},
		{
			name:  "a node subpackage other than the CLI may not",
			extra: []string{"node/config: go.etcd.io/etcd/client/v3"},
			want:  []string{RuleCluster + " | node/config -> go.etcd.io/etcd/client/v3"},
		},
		{
			name:  "production imports a test helper",
			extra: []string{"storage/spool: std:os internal/pgtest"},
			want:  []string{RuleTestOnly + " | storage/spool -> internal/pgtest"},
		},
		{
			name:  "production imports a benchmark package",
			extra: []string{"replay: bench"},
			want:  []string{RuleTestOnly + " | replay -> bench"},
		},
		{
			name: "production reaches chaos through another production package",
			extra: []string{
				"session/pgwire: session chaos/faults",
				"chaos/faults: std:os",
			},
			want: []string{
				RuleTestOnly + " | node -> session/pgwire -> chaos/faults",
				RuleTestOnly + " | node/cli -> node -> session/pgwire -> chaos/faults",
				RuleTestOnly + " | node/cmd/gw -> node/cli -> node -> session/pgwire -> chaos/faults",
				RuleTestOnly + " | session/pgwire -> chaos/faults",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := check(t, pureGraph(tc.extra...))
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestCheckReportsMissingPurePackages(t *testing.T) {
	g := graphOf("session/mask: std:time", "node: session/mask")
	_, missing := Check(g)
	if !slices.Contains(missing, "session/policy") || slices.Contains(missing, "session/mask") {
		t.Fatalf("missing = %v", missing)
	}
}

func TestViolationMessageNamesPackageAndChain(t *testing.T) {
	vs, _ := Check(pureGraph("session/record: example.org/x", "example.org/x: std:net"))
	if len(vs) != 1 {
		t.Fatalf("violations: %v", vs)
	}
	msg := vs[0].String()
	for _, want := range []string{"session/record depends on net", "session/record -> example.org/x -> net", "network"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestCheckSource(t *testing.T) {
	const src = `package p

import (
	"fmt"
	clock "time"
	"time"
	"os"
	_ "net/http/pprof"
)

type T struct{ At time.Time; D clock.Duration }

func f(time2 int) {
	start := time.Now()
	_ = clock.Since(start)
	<-time.After(time.Second)
	fn := time.Sleep
	_ = fn
	fmt.Println(os.Args)
}

func g() {
	time := struct{ Now func() int }{}
	_ = time.Now() // a local variable, not the package
	var t T
	_ = t.At.Before(t.At)
	_ = clock.Unix(0, 0)
}
`
	vs, err := CheckSource("session/x/x.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, v.Pos+" "+v.What)
	}
	want := []string{
		`session/x/x.go:7:2 import "os"`,
		`session/x/x.go:8:2 import "net/http/pprof"`,
		"session/x/x.go:14:11 time.Now",
		"session/x/x.go:15:6 time.Since (as clock.Since)",
		"session/x/x.go:16:4 time.After",
		"session/x/x.go:17:8 time.Sleep",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if vs[0].Rule != RulePureFS || vs[1].Rule != RulePureNet || vs[2].Rule != RulePureTime {
		t.Errorf("rules: %q, %q, %q", vs[0].Rule, vs[1].Rule, vs[2].Rule)
	}
}

func TestCheckSourceDotImport(t *testing.T) {
	vs, err := CheckSource("x.go", []byte("package p\n\nimport . \"time\"\n\nvar _ = Now()\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Rule != RulePureTime || !strings.Contains(vs[0].What, `import . "time"`) {
		t.Fatalf("violations: %v", vs)
	}
}

func TestCheckSourceClean(t *testing.T) {
	const src = `package p

import (
	"embed"
	"net/netip"
	"time"
)

//go:embed data
var data embed.FS

// Age is computed from a time the caller read.
func Age(born, now time.Time) time.Duration { return now.Sub(born) }

// Local compares an address the caller read.
func Local(a netip.Addr) bool { return a.IsLoopback() }
`
	vs, err := CheckSource("x.go", []byte(src))
	if err != nil || len(vs) != 0 {
		t.Fatalf("clean file: %v, %v", vs, err)
	}
}
