// Package policy decides who may use which resource and what they may do
// there, in terms every protocol shares: classes of operation (read, write,
// ddl, admin, export, import; tx and session always pass), the Actions a
// proxy classifies a request into (session/sqlclass does it for SQL), and
// the upstream access Level a grant needs. It is pure: decisions are
// functions of the policy, the identity and the classified request, with no
// I/O and no clock; it must never learn a protocol's syntax.
//
// Access is denied by default. Grants are evaluated in configuration order;
// the first grant that matches the identity and the resource admits the
// session and decides which classes it may run and which masking profile
// applies to its results. A new policy revision is judged again for live
// sessions (session.Snapshot.Readmit). A grant's approval rules
// (approval.go) make some of what it allows wait for people's approval.
package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/phigate/phigate/session/identity"
)

// Grant admits identities to resources.
type Grant struct {
	Name string
	// Who: an identity matches if its name is in Identities, or it is in one
	// of Groups, or its kind is in Kinds. At least one must be set.
	Identities []string
	Groups     []string
	Kinds      []identity.Kind
	// Resources the grant applies to ("*" for all).
	Resources []string
	// Allow lists statement classes the session may run; transaction control
	// and session statements are always allowed.
	Allow []Class
	// Masking names the masking profile for result rows ("" for none).
	Masking string
	// Functions names functions that sessions may call whatever class a
	// call of them would otherwise need (functions outside the built-in
	// allowlist of side-effect-free ones need write or admin unless named
	// here), as calls are written: "schema.name" matches calls qualified
	// with that schema only, a bare "name" matches unqualified calls
	// (resolved by the server through search_path), and pg_catalog.name
	// and name are the same.
	Functions []string
	// Approvals are the rules under which some of what the grant allows
	// waits for people's approval (the first matching rule applies).
	Approvals []ApprovalRule
	// ReadAhead lets proven reads of a grant that may write run while
	// their event is being made durable; their output still waits for it.
	// Off by default: every command is durable before it runs.
	ReadAhead bool
}

func (g *Grant) matches(id identity.Identity, resource string) bool {
	if !slices.Contains(g.Resources, resource) && !slices.Contains(g.Resources, "*") {
		return false
	}
	if slices.Contains(g.Identities, id.Name) || slices.Contains(g.Kinds, id.Kind) {
		return true
	}
	for _, grp := range g.Groups {
		if id.InGroup(grp) {
			return true
		}
	}
	return false
}

// Allows reports whether the grant lets a session run statements of class c.
func (g *Grant) Allows(c Class) bool {
	return c.AlwaysAllowed() || slices.Contains(g.Allow, c)
}

// ReadOnly reports whether the grant allows nothing that changes data or
// schema; the proxy then also opens the upstream session read-only.
func (g *Grant) ReadOnly() bool {
	for _, c := range g.Allow {
		if c != Read && c != Export && !c.AlwaysAllowed() {
			return false
		}
	}
	return true
}

// Policy is a validated, ordered list of grants.
type Policy struct {
	grants []Grant
}

// New validates grants against the known resources and masking profiles.
func New(grants []Grant, resources, profiles []string) (*Policy, error) {
	seen := map[string]bool{}
	grants = slices.Clone(grants)
	for i, g := range grants {
		if g.Name == "" {
			return nil, fmt.Errorf("policy: grant %d has no name", i)
		}
		if seen[g.Name] {
			return nil, fmt.Errorf("policy: grant %q defined twice", g.Name)
		}
		seen[g.Name] = true
		if len(g.Identities)+len(g.Groups)+len(g.Kinds) == 0 {
			return nil, fmt.Errorf("policy: grant %q names no identities, groups or kinds", g.Name)
		}
		if len(g.Resources) == 0 {
			return nil, fmt.Errorf("policy: grant %q names no resources", g.Name)
		}
		for _, r := range g.Resources {
			if r != "*" && !slices.Contains(resources, r) {
				return nil, fmt.Errorf("policy: grant %q: unknown resource %q", g.Name, r)
			}
		}
		if g.Masking != "" && !slices.Contains(profiles, g.Masking) {
			return nil, fmt.Errorf("policy: grant %q: unknown masking profile %q", g.Name, g.Masking)
		}
		rules := map[string]bool{}
		g.Approvals = slices.Clone(g.Approvals)
		for j := range g.Approvals {
			r := &g.Approvals[j]
			if err := r.validate(g.Name); err != nil {
				return nil, err
			}
			if rules[r.Name] {
				return nil, fmt.Errorf("policy: grant %q: approval rule %q defined twice", g.Name, r.Name)
			}
			rules[r.Name] = true
		}
		grants[i] = g
	}
	return &Policy{grants: grants}, nil
}

// Grants returns a copy of the grants, in order.
func (p *Policy) Grants() []Grant { return slices.Clone(p.grants) }

// ParseAllow turns configured class names into classes; "all" means every class.
func ParseAllow(names []string) ([]Class, error) {
	var out []Class
	for _, n := range names {
		if n == "all" {
			return slices.Clone(Classes), nil
		}
		c, err := ParseClass(n)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Decision is the outcome of a policy check. Reason is safe to show to the
// client: it names classes and resources, never data.
type Decision struct {
	Allowed bool
	Grant   *Grant
	Reason  string
}

// Rule names the grant that decided, for the recording.
func (d Decision) Rule() string {
	if d.Grant == nil {
		return ""
	}
	return d.Grant.Name
}

// Connect decides whether id may open a session on resource.
func (p *Policy) Connect(id identity.Identity, resource string) Decision {
	for i := range p.grants {
		if g := &p.grants[i]; g.matches(id, resource) {
			return Decision{Allowed: true, Grant: g}
		}
	}
	return Decision{Reason: fmt.Sprintf("no grant gives %q access to resource %q", id.Name, resource)}
}

// Command decides whether a session admitted by g may run the classified
// actions of one command (the statements of one SQL query). Every action
// must be allowed: its class, and the class of every call inside it that
// the grant does not name. An action the classifier refused is refused
// whatever the grant.
func Command(g *Grant, actions []Action) Decision {
	var classes, funcs []string
	for _, s := range actions {
		if s.Refused != "" {
			return Decision{Grant: g, Reason: s.Refused}
		}
		if !g.Allows(s.Class) && !slices.Contains(classes, string(s.Class)) {
			classes = append(classes, string(s.Class))
		}
		for _, c := range s.Calls {
			if g.Allows(c.Class) || g.namesFunction(c.Name) {
				continue
			}
			if f := fmt.Sprintf("%s (%s)", c.Name, c.Class); !slices.Contains(funcs, f) {
				funcs = append(funcs, f)
			}
		}
	}
	var why []string
	if len(classes) > 0 {
		why = append(why, strings.Join(classes, ", ")+" statements")
	}
	if len(funcs) > 0 {
		why = append(why, "calling "+strings.Join(funcs, ", "))
	}
	if len(why) == 0 {
		return Decision{Allowed: true, Grant: g}
	}
	return Decision{Grant: g, Reason: fmt.Sprintf("grant %q does not allow %s", g.Name, strings.Join(why, " or "))}
}

// namesFunction reports whether the grant allows a function by name; a
// pg_catalog function may be named with or without its schema.
func (g *Grant) namesFunction(name string) bool {
	if slices.Contains(g.Functions, name) {
		return true
	}
	if bare, ok := strings.CutPrefix(name, "pg_catalog."); ok {
		return slices.Contains(g.Functions, bare)
	}
	return slices.Contains(g.Functions, "pg_catalog."+name)
}
