package node

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A policy document goes through three forms:
//
//   - as written: credentials and CA bundles named by file or environment
//     variable (password_file, password_env, ca_file, public_key_file);
//   - resolved (Policy.Resolve, where the file is applied: the admin's
//     `phigate policy apply`, or the node bootstrapping the cluster): what
//     they name is read into the document, passwords as SealedSecret.Value;
//   - stored (sealPolicy, on the node that applies it): every password
//     sealed under the cluster key, nothing in clear. This is the form
//     kept in the cluster state and shown by `phigate policy get`; applied
//     again unchanged, it keeps every password.

// ParsePolicy parses a policy document (YAML). Unknown fields are errors,
// so that a typo does not silently weaken a policy.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return &p, nil
}

// Marshal is p as YAML.
func (p *Policy) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return buf.Bytes(), nil
}

// Resolve reads into p what it names by file or environment variable:
// passwords (into SealedSecret.Value), CA bundles (into ca_pem) and the
// auditors' public key. Every problem is reported, joined.
func (p *Policy) Resolve() error {
	var errs []error
	for i := range p.Resources {
		rc := &p.Resources[i]
		where := fmt.Sprintf("resources[%d] (%q)", i, rc.Name)
		if err := resolvePassword(&rc.Password, &rc.PasswordFile, &rc.PasswordEnv); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		for name, role := range rc.Roles {
			if err := resolvePassword(&role.Password, &role.PasswordFile, &role.PasswordEnv); err != nil {
				errs = append(errs, fmt.Errorf("%s.roles.%s: %w", where, name, err))
			}
			rc.Roles[name] = role
		}
		if err := resolvePEM(&rc.CAPEM, &rc.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	}
	for i := range p.Identities.OIDC {
		oc := &p.Identities.OIDC[i]
		if err := resolvePEM(&oc.CAPEM, &oc.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("identities.oidc[%d]: %w", i, err))
		}
	}
	if f := p.Auditors.PublicKeyFile; f != "" {
		if p.Auditors.PublicKey != "" {
			errs = append(errs, errors.New("auditors: set public_key or public_key_file, not both"))
		} else if b, err := os.ReadFile(f); err != nil {
			errs = append(errs, fmt.Errorf("auditors.public_key_file: %w", err))
		} else {
			p.Auditors.PublicKey, p.Auditors.PublicKeyFile = string(b), ""
		}
	}
	return errors.Join(errs...)
}

func resolvePassword(dst **SealedSecret, file, env *string) error {
	if *file == "" && *env == "" {
		return nil
	}
	if *dst != nil {
		return errors.New("set password_file, password_env or password, not two of them")
	}
	pw, err := loadPassword(*file, *env)
	if err != nil {
		return err
	}
	*dst = &SealedSecret{Value: pw.Reveal()}
	*file, *env = "", ""
	return nil
}

func resolvePEM(dst, file *string) error {
	if *file == "" {
		return nil
	}
	if *dst != "" {
		return errors.New("set ca_file or ca_pem, not both")
	}
	b, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("ca_file: %w", err)
	}
	*dst, *file = string(b), ""
	return nil
}

// unresolved lists what p still names by file or environment: a node
// applies only resolved documents (the files are where the admin is).
func (p *Policy) unresolved() error {
	var errs []error
	for i, rc := range p.Resources {
		if rc.PasswordFile != "" || rc.PasswordEnv != "" || rc.CAFile != "" {
			errs = append(errs, fmt.Errorf("resources[%d] (%q) names a file or variable (password_file, password_env, ca_file): resolve it where the file is (`phigate policy apply` does)", i, rc.Name))
		}
		for name, role := range rc.Roles {
			if role.PasswordFile != "" || role.PasswordEnv != "" {
				errs = append(errs, fmt.Errorf("resources[%d] (%q).roles.%s names a password file or variable: resolve it where the file is", i, rc.Name, name))
			}
		}
	}
	for i, oc := range p.Identities.OIDC {
		if oc.CAFile != "" {
			errs = append(errs, fmt.Errorf("identities.oidc[%d] names a ca_file: resolve it where the file is", i))
		}
	}
	if p.Auditors.PublicKeyFile != "" {
		errs = append(errs, errors.New("auditors names a public_key_file: resolve it where the file is"))
	}
	return errors.Join(errs...)
}

// sealPolicy seals every password p carries in clear under s, and checks
// that every sealed one opens (one sealed by another cluster, or moved to
// another place in the document, does not).
func sealPolicy(p *Policy, s Sealer) error {
	var errs []error
	for i := range p.Resources {
		rc := &p.Resources[i]
		if err := sealSecret(rc.Password, s, "resource/"+rc.Name); err != nil {
			errs = append(errs, fmt.Errorf("resources[%d] (%q).password: %w", i, rc.Name, err))
		}
		for name, role := range rc.Roles {
			if err := sealSecret(role.Password, s, "resource/"+rc.Name+"/role/"+name); err != nil {
				errs = append(errs, fmt.Errorf("resources[%d] (%q).roles.%s.password: %w", i, rc.Name, name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func sealSecret(sec *SealedSecret, s Sealer, where string) error {
	if sec == nil {
		return nil
	}
	if sec.Value != "" {
		if sec.Sealed != "" {
			return errors.New("has both a value and a sealed value")
		}
		b, err := s.Seal([]byte(sec.Value), where)
		if err != nil {
			return err
		}
		*sec = SealedSecret{Sealed: base64.StdEncoding.EncodeToString(b), Fingerprint: s.Fingerprint([]byte(sec.Value))}
		return nil
	}
	pt, err := openSecret(sec, s, where)
	if err != nil {
		return err
	}
	if fp := s.Fingerprint(pt); fp != sec.Fingerprint {
		sec.Fingerprint = fp
	}
	return nil
}

// openSecret is the password sec holds, opened with s when sealed. A
// clear value is accepted only before sealing (validating a resolved
// document).
func openSecret(sec *SealedSecret, s Sealer, where string) ([]byte, error) {
	switch {
	case sec == nil:
		return nil, nil
	case sec.Value != "":
		return []byte(sec.Value), nil
	case sec.Sealed == "":
		return nil, errors.New("is empty")
	case s == nil:
		return nil, errors.New("is sealed, and this node has no cluster key to open it")
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sec.Sealed))
	if err != nil {
		return nil, errSealed
	}
	return s.Open(b, where)
}
