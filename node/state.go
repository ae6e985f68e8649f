package node

import (
	"bytes"
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

// buildSnapshot turns cfg into the state sessions are decided with:
// identities, resources with their passwords, grants, masking profiles, the
// auditors' key and the listener's certificate. It reads files but writes
// none. prev holds the profiles of the snapshot it replaces (nil at start)
// and is not changed; the profiles of the new one are returned beside it.
// Every error is wrapped with where in cfg it is.
func buildSnapshot(cfg *Config, prev map[string]compiledProfile, log *slog.Logger) (*session.Snapshot, map[string]compiledProfile, error) {
	snap := &session.Snapshot{}
	auth, err := buildAuth(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	snap.Auth = auth

	snap.Resources = map[string]*resource.Resource{}
	for i, rc := range cfg.Resources {
		r, err := buildResource(rc)
		if err != nil {
			return nil, nil, fmt.Errorf("node: resource %d (%q): %w", i, rc.Name, err)
		}
		if snap.Resources[r.Name] != nil {
			return nil, nil, fmt.Errorf("node: resource %q defined twice", r.Name)
		}
		snap.Resources[r.Name] = r
	}

	keys, err := loadKeys(cfg)
	if err != nil {
		return nil, nil, err
	}
	snap.Profiles = map[string]*mask.Profile{}
	profiles := map[string]compiledProfile{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Masking.Profiles)) {
		pc := cfg.Masking.Profiles[name]
		cp, ok := prev[name]
		if !ok || !reflect.DeepEqual(cp.conf, pc) || !bytes.Equal(cp.keys.Pseudonym, keys.Pseudonym) {
			p, err := mask.Compile(name, pc, keys)
			if err != nil {
				return nil, nil, fmt.Errorf("node: masking profile %q: %w", name, err)
			}
			cp = compiledProfile{conf: pc, keys: keys, profile: p}
		}
		profiles[name] = cp
		snap.Profiles[name] = cp.profile
	}

	grants, err := buildGrants(cfg)
	if err != nil {
		return nil, nil, err
	}
	if snap.Policy, err = policy.New(grants, slices.Sorted(maps.Keys(snap.Resources)), slices.Sorted(maps.Keys(snap.Profiles))); err != nil {
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	if snap.TLS, err = loadTLS(cfg); err != nil {
		return nil, nil, err
	}
	if snap.Auditor, err = loadAuditorKey(cfg); err != nil {
		return nil, nil, err
	}
	return snap, profiles, nil
}

// buildAuth builds the authenticator of cfg's identities: the static
// tokens, and when issuers are configured, the OIDC authenticator beside
// them. It fetches nothing (an issuer's keys are fetched on first use, and
// an issuer unchanged since the last build keeps the keys it had).
func buildAuth(cfg *Config, log *slog.Logger) (identity.Authenticator, error) {
	var tokens []identity.StaticToken
	for i, t := range cfg.Identities.Tokens {
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
	if len(cfg.Identities.OIDC) == 0 {
		return static, nil
	}
	var issuers []oidc.Issuer
	for i, oc := range cfg.Identities.OIDC {
		clients, err := parseClients(oc.Clients)
		if err != nil {
			return nil, fmt.Errorf("node: identities.oidc[%d].clients: %w", i, err)
		}
		issuers = append(issuers, oidc.Issuer{
			URL: oc.Issuer, Audience: oc.Audience, CAFile: oc.CAFile,
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
// resource, reading the passwords it names.
func buildResource(rc ResourceConfig) (*resource.Resource, error) {
	pw, err := loadPassword(rc.PasswordFile, rc.PasswordEnv)
	if err != nil {
		return nil, err
	}
	r := &resource.Resource{
		Name: rc.Name, Protocol: rc.Protocol, Address: rc.Address, Database: rc.Database, User: rc.User,
		Password: pw, TLS: rc.TLS, CAFile: rc.CAFile, ServerName: rc.ServerName,
	}
	for _, name := range slices.Sorted(maps.Keys(rc.Roles)) {
		level, err := policy.ParseLevel(name)
		if err != nil {
			return nil, fmt.Errorf("roles: %w", err)
		}
		role := rc.Roles[name]
		pw, err := loadPassword(role.PasswordFile, role.PasswordEnv)
		if err != nil {
			return nil, fmt.Errorf("roles: %s: %w", name, err)
		}
		if r.Roles == nil {
			r.Roles = map[policy.Level]resource.Credential{}
		}
		r.Roles[level] = resource.Credential{User: role.User, Password: pw}
	}
	if err := pgwire.ValidateResource(r); err != nil {
		return nil, err
	}
	return r, nil
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
func buildGrants(cfg *Config) ([]policy.Grant, error) {
	var grants []policy.Grant
	for _, gc := range cfg.Grants {
		g := policy.Grant{Name: gc.Name, Identities: gc.Identities, Groups: gc.Groups, Resources: gc.Resources, Masking: gc.Masking}
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
		grants = append(grants, g)
	}
	return grants, nil
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
	return out
}
