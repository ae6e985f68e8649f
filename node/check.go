package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/session/policy"
)

// roleCheckTimeout bounds the role check a node runs when it starts.
const roleCheckTimeout = time.Minute

// CheckResource reports what each upstream role of the resource named name
// can really do, judged against the grants of p that log in with it (see
// pgwire.CheckResource). It reads the passwords p names (p itself is not
// changed) but prepares no node: it creates no data directory,
// certificate or key.
func CheckResource(ctx context.Context, p *Policy, name string) (*pgwire.CheckReport, error) {
	b, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	if p, err = ParsePolicy(b); err != nil {
		return nil, err
	}
	var rc *ResourceConfig
	var names []string
	for i := range p.Resources {
		names = append(names, p.Resources[i].Name)
		if p.Resources[i].Name == name {
			rc = &p.Resources[i]
		}
	}
	if rc == nil {
		return nil, fmt.Errorf("node: no resource named %q (configured: %s)", name, strings.Join(names, ", "))
	}
	if err := p.Resolve(); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	r, err := buildResource(*rc, nil)
	if err != nil {
		return nil, fmt.Errorf("node: resource %q: %w", name, err)
	}
	grants, err := buildGrants(p)
	if err != nil {
		return nil, err
	}
	if _, err := policy.New(grants, names, slices.Collect(maps.Keys(p.Masking.Profiles))); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return pgwire.CheckResource(ctx, r, grants)
}

// warnStrongRoles runs the role check on every resource and logs a warning
// for each danger finding (never a password, SQL or data: role, level, what
// and object names). It gives up quietly when ctx ends because the node
// stops.
func (n *Node) warnStrongRoles(ctx context.Context, snap *session.Snapshot) {
	grants := snap.Policy.Grants()
	for _, name := range slices.Sorted(maps.Keys(snap.Resources)) {
		rep, err := pgwire.CheckResource(ctx, snap.Resources[name], grants)
		if err != nil {
			n.log.Warn("resource check failed", "resource", name, "err", err)
			continue
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return
		}
		for _, rc := range rep.Roles {
			if rc.Error != "" {
				n.log.Warn("resource check: cannot check an upstream role", "resource", name, "role", rc.Role, "err", rc.Error)
			}
		}
		notes := 0
		for _, f := range rep.Findings {
			if f.Severity != pgwire.SeverityDanger {
				notes++
				continue
			}
			n.log.Warn("DANGER: upstream role is stronger than the grants that log in with it",
				"resource", name, "level", f.Level, "role", f.Role, "finding", f.What, "where", pgwire.ShortList(f.Where, 8))
		}
		switch {
		case rep.Dangers() > 0:
			n.log.Warn("resource check: the database would not refuse what these roles' grants forbid; give the resource least-privilege roles (resources[].roles)",
				"resource", name, "dangers", rep.Dangers(), "notes", notes, "details", "phigate resource check "+name)
		case !rep.Failed():
			n.log.Info("resource check: no upstream role is stronger than its grants", "resource", name, "notes", notes)
		}
	}
}
