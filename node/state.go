package node

import (
	"bytes"
	"crypto/ecdh"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/identity/oidc"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/resource"
)

// compiledProfile remembers what a masking profile was compiled from, so
// that a rebuild whose profile is unchanged hands out the same
// *mask.Profile: sessions masked by it then go on (session.Snapshot.Readmit
// ends those whose profile changed).
type compiledProfile struct {
	conf    mask.ProfileConfig
	keys    mask.Keys
	profile *mask.Profile
}

// local is what a node has of its own rather than from the cluster: the
// certificate agents see, and the pseudonym key.
type local struct {
	tls  *tls.Config
	keys mask.Keys
	// accepting says whether new sessions are taken (Snapshot.Accepting).
	accepting func() error
}

// loadLocal reads the node's certificate; pseudonym is the pseudonym key
// in use (the cluster's, or the node's own file).
func loadLocal(cfg *Config, pseudonym []byte) (local, error) {
	t, err := loadTLS(cfg)
	if err != nil {
		return local{}, err
	}
	if len(pseudonym) < mask.MinKeyLen {
		return local{}, fmt.Errorf("node: pseudonym key is %d bytes, want at least %d", len(pseudonym), mask.MinKeyLen)
	}
	return local{tls: t, keys: mask.Keys{Pseudonym: pseudonym}}, nil
}

// buildSnapshot turns a policy document into the state sessions are
// decided with: identities, resources with their passwords (opened with
// sealer), grants, masking profiles, the auditors' key, and loc's
// certificate. p must be resolved (no file references). It reads nothing
// and writes nothing. prev holds the profiles of the snapshot it replaces
// (nil at start) and is not changed; the profiles of the new one are
// returned beside it. Every error found is reported, joined, each with
// where in p it is.
func buildSnapshot(p *Policy, loc local, sealer Sealer, prev map[string]compiledProfile, log *slog.Logger) (*session.Snapshot, map[string]compiledProfile, error) {
	var errs []error
	snap := &session.Snapshot{TLS: loc.tls, Accepting: loc.accepting}
	auth, err := buildAuth(p, log)
	if err != nil {
		errs = append(errs, err)
	}
	snap.Auth = auth

	snap.Resources = map[string]*resource.Resource{}
	for i, rc := range p.Resources {
		r, err := buildResource(rc, sealer)
		if err != nil {
			errs = append(errs, fmt.Errorf("node: resource %d (%q): %w", i, rc.Name, err))
			continue
		}
		if snap.Resources[r.Name] != nil {
			errs = append(errs, fmt.Errorf("node: resource %q defined twice", r.Name))
			continue
		}
		snap.Resources[r.Name] = r
	}

	snap.Profiles = map[string]*mask.Profile{}
	profiles := map[string]compiledProfile{}
	for _, name := range slices.Sorted(maps.Keys(p.Masking.Profiles)) {
		pc := p.Masking.Profiles[name]
		cp, ok := prev[name]
		if !ok || !reflect.DeepEqual(cp.conf, pc) || !bytes.Equal(cp.keys.Pseudonym, loc.keys.Pseudonym) {
			prof, err := mask.Compile(name, pc, loc.keys)
			if err != nil {
				errs = append(errs, fmt.Errorf("node: masking profile %q: %w", name, err))
				continue
			}
			cp = compiledProfile{conf: pc, keys: loc.keys, profile: prof}
		}
		profiles[name] = cp
		snap.Profiles[name] = cp.profile
	}

	grants, err := buildGrants(p)
	if err != nil {
		errs = append(errs, err)
	} else {
		// Checked against the names the document defines, built or not,
		// so that a bad resource does not hide a bad grant.
		var names []string
		for _, rc := range p.Resources {
			names = append(names, rc.Name)
		}
		if snap.Policy, err = policy.New(grants, names, slices.Sorted(maps.Keys(p.Masking.Profiles))); err != nil {
			errs = append(errs, fmt.Errorf("node: %w", err))
		}
	}
	if snap.Auditor, err = parseAuditorKey(p.Auditors); err != nil {
		errs = append(errs, err)
	}
	if err := checkAdmins(p.Admins); err != nil {
		errs = append(errs, err)
	}
	for i, rc := range p.Resources {
		if rc.Retention == "" {
			continue
		}
		if _, err := parseRetention(rc.Retention); err != nil {
			errs = append(errs, fmt.Errorf("node: resources[%d] (%q).retention: %w", i, rc.Name, err))
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return snap, profiles, nil
}

// parseAuditorKey reads the auditors' public key of a resolved policy;
// "none" turns the masking proof off, nothing at all is an error (a
// policy that forgot the key must not turn the proof off silently).
func parseAuditorKey(a AuditorsConfig) (*ecdh.PublicKey, error) {
	switch strings.TrimSpace(a.PublicKey) {
	case "none":
		return nil, nil
	case "":
		return nil, errors.New(`node: auditors.public_key is required: the auditors' public key (PEM, from ` + "`phigate keys auditor`" + `), or "none" to turn the masking proof off`)
	}
	pub, err := proof.ParsePublic([]byte(a.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("node: auditors.public_key: %w", err)
	}
	return pub, nil
}

// checkAdmins checks the names in admins.
func checkAdmins(a AdminsConfig) error {
	for _, s := range append(slices.Clone(a.Identities), a.Groups...) {
		if strings.TrimSpace(s) == "" || s == "*" {
			return fmt.Errorf("node: admins: %q is not an identity or group name", s)
		}
	}
	return nil
}

// buildAuth builds the authenticator of cfg's identities: the static
// tokens, and when issuers are configured, the OIDC authenticator beside
// them. It fetches nothing (an issuer's keys are fetched on first use, and
// an issuer unchanged since the last build keeps the keys it had).
func buildAuth(p *Policy, log *slog.Logger) (identity.Authenticator, error) {
	var tokens []identity.StaticToken
	for i, t := range p.Identities.Tokens {
		clients, err := parseClients(t.Clients)
		if err != nil {
			return nil, fmt.Errorf("node: identities.tokens[%d] (%q).clients: %w", i, t.Name, err)
		}
		tokens = append(tokens, identity.StaticToken{
			Identity: identity.Identity{Name: t.Name, Kind: identity.Kind(t.Kind), Groups: t.Groups},
			SHA256:   t.TokenSHA256,
			Clients:  clients,
		})
	}
	static, err := identity.NewStaticTokens(tokens)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if len(p.Identities.OIDC) == 0 {
		return static, nil
	}
	var issuers []oidc.Issuer
	for i, oc := range p.Identities.OIDC {
		clients, err := parseClients(oc.Clients)
		if err != nil {
			return nil, fmt.Errorf("node: identities.oidc[%d].clients: %w", i, err)
		}
		issuers = append(issuers, oidc.Issuer{
			URL: oc.Issuer, Audience: oc.Audience, CAFile: oc.CAFile, CAPEM: pemBytes(oc.CAPEM),
			NameClaim: oc.NameClaim, KindClaim: oc.KindClaim, Kind: identity.Kind(oc.Kind), GroupsClaim: oc.GroupsClaim,
			Clients: clients, ClockSkew: oc.ClockSkew,
		})
	}
	jwt, err := oidc.New(oidc.Config{Issuers: issuers, Logger: log})
	if ce := (*oidc.ConfigError)(nil); errors.As(err, &ce) {
		return nil, fmt.Errorf("node: identities.oidc[%d].%s: %w", ce.Issuer, ce.Field, ce.Err)
	} else if err != nil {
		return nil, fmt.Errorf("node: identities.oidc: %w", err)
	}
	return identity.Combine(static, jwt), nil
}

// buildResource turns a resource's configuration into a validated
// resource, opening its passwords with sealer.
func buildResource(rc ResourceConfig, sealer Sealer) (*resource.Resource, error) {
	pw, err := openSecret(rc.Password, sealer, "resource/"+rc.Name)
	if err != nil {
		return nil, fmt.Errorf("password %w", err)
	}
	r := &resource.Resource{
		Name: rc.Name, Protocol: rc.Protocol, Address: rc.Address, Database: rc.Database, User: rc.User,
		Password: resource.NewSecret(string(pw)), TLS: rc.TLS, CAFile: rc.CAFile, CAPEM: pemBytes(rc.CAPEM), ServerName: rc.ServerName,
	}
	for _, name := range slices.Sorted(maps.Keys(rc.Roles)) {
		level, err := policy.ParseLevel(name)
		if err != nil {
			return nil, fmt.Errorf("roles: %w", err)
		}
		role := rc.Roles[name]
		pw, err := openSecret(role.Password, sealer, "resource/"+rc.Name+"/role/"+name)
		if err != nil {
			return nil, fmt.Errorf("roles: %s: password %w", name, err)
		}
		if r.Roles == nil {
			r.Roles = map[policy.Level]resource.Credential{}
		}
		r.Roles[level] = resource.Credential{User: role.User, Password: resource.NewSecret(string(pw))}
	}
	var serr error
	r.Subjects, serr = mask.NewSubjects(rc.Subjects)
	if err := errors.Join(serr, pgwire.ValidateResource(r)); err != nil {
		return nil, err
	}
	return r, nil
}

// pemBytes is s as bytes, nil when empty.
func pemBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// loadPassword reads a password from a file (its trailing newline removed)
// or an environment variable; neither is no password.
func loadPassword(file, env string) (resource.Secret, error) {
	switch {
	case file != "" && env != "":
		return resource.Secret{}, errors.New("set password_file or password_env, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return resource.Secret{}, fmt.Errorf("password_file: %w", err)
		}
		return resource.NewSecret(strings.TrimRight(string(b), "\r\n")), nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return resource.Secret{}, fmt.Errorf("password_env: %s is not set", env)
		}
		return resource.NewSecret(v), nil
	}
	return resource.Secret{}, nil
}

// buildGrants turns the grants' configuration into policy grants (which
// policy.New then checks against resources and profiles).
func buildGrants(p *Policy) ([]policy.Grant, error) {
	var grants []policy.Grant
	for _, gc := range p.Grants {
		g := policy.Grant{Name: gc.Name, Identities: gc.Identities, Groups: gc.Groups, Resources: gc.Resources, Masking: gc.Masking,
			ReadAhead: gc.ReadAhead}
		for _, k := range gc.Kinds {
			kind, err := identity.ParseKind(k)
			if err != nil {
				return nil, fmt.Errorf("node: grant %q: %w", gc.Name, err)
			}
			g.Kinds = append(g.Kinds, kind)
		}
		var err error
		if g.Allow, err = policy.ParseAllow(gc.Allow); err != nil {
			return nil, fmt.Errorf("node: grant %q: %w", gc.Name, err)
		}
		for _, f := range gc.Functions {
			name := strings.ToLower(f)
			if !functionName.MatchString(name) {
				return nil, fmt.Errorf("node: grant %q: functions: %q is not a function name (schema.name, or name for pg_catalog; no arguments or quotes)", gc.Name, f)
			}
			if !slices.Contains(g.Functions, name) {
				g.Functions = append(g.Functions, name)
			}
		}
		for _, ac := range gc.Approvals {
			r := policy.ApprovalRule{Name: ac.Name, When: ac.When, MaxRows: ac.MaxRows, Approvers: ac.Approvers,
				Required: ac.Required, TTL: ac.TTL, Mode: policy.ApprovalMode(ac.Mode), Hold: ac.Hold, MaxWindow: ac.MaxWindow}
			for _, t := range ac.Tables {
				r.Tables = append(r.Tables, foldRelation(t))
			}
			g.Approvals = append(g.Approvals, r)
		}
		grants = append(grants, g)
	}
	return grants, nil
}

// foldRelation folds a configured relation name as PostgreSQL folds an
// identifier: parts in double quotes keep their case, others go to lower
// case.
func foldRelation(s string) string {
	var parts []string
	for _, p := range strings.Split(s, ".") {
		if len(p) >= 2 && p[0] == '"' && p[len(p)-1] == '"' {
			parts = append(parts, strings.ReplaceAll(p[1:len(p)-1], `""`, `"`))
		} else {
			parts = append(parts, strings.ToLower(p))
		}
	}
	return strings.Join(parts, ".")
}

// functionName is an unquoted, optionally schema-qualified function name.
var functionName = regexp.MustCompile(`^[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)?$`)

// restartOnly lists what a reload cannot change in a running node, so
// that Reload can say a restart is needed rather than ignore it.
func restartOnly(old, next *Config) []string {
	var out []string
	if !reflect.DeepEqual(old.Node, next.Node) {
		out = append(out, "node")
	}
	if !reflect.DeepEqual(old.Listen, next.Listen) {
		out = append(out, "listen")
	}
	if !reflect.DeepEqual(old.Limits, next.Limits) {
		out = append(out, "limits")
	}
	if !reflect.DeepEqual(old.Log, next.Log) {
		out = append(out, "log")
	}
	if !reflect.DeepEqual(old.Cluster, next.Cluster) {
		out = append(out, "cluster")
	}
	if !reflect.DeepEqual(old.Keys, next.Keys) {
		out = append(out, "keys")
	}
	return out
}
