package mask

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Keys are per-deployment secrets.
type Keys struct {
	// Pseudonym is the HMAC-SHA256 key for keyed hashes and pseudonyms. It
	// must be at least 32 bytes when a profile uses a keyed action.
	Pseudonym []byte
}

// MinKeyLen is the shortest accepted [Keys.Pseudonym].
const MinKeyLen = 32

// ProfileConfig is a masking profile as written in the node's YAML
// configuration. The zero value masks nothing.
type ProfileConfig struct {
	// Rules are tried in order; the first that matches a column decides.
	Rules []RuleConfig `yaml:"rules"`
	// Detect turns on content detection: columns without a rule are
	// classified from their name and first values, and free-text columns
	// are scanned value by value. Nil: column rules only.
	Detect *DetectConfig `yaml:"detect"`
}

// RuleConfig selects columns and names what happens to their values.
// Exactly one of Column and Pattern must be set.
type RuleConfig struct {
	// Name is recorded as the rule that masked a column. Default: derived
	// from the selector ("column:public.patients.ssn", "pattern:(?i)ssn").
	Name string `yaml:"name"`
	// Column is "schema.table.column", or "table.column" for any schema.
	// Compared case-insensitively with the column's source.
	Column string `yaml:"column"`
	// Pattern is a Go regexp matched case-insensitively against the source
	// column name and the output name (alias).
	Pattern string `yaml:"pattern"`
	// Action is one of redact, keep-last-4, hash, null, pseudonym,
	// date-shift, generalize, detect.
	Action string `yaml:"action"`
}

// Action names a masking action.
type Action uint8

// Actions.
const (
	ActionNone Action = iota
	ActionRedact
	ActionKeepLast4
	ActionHash
	ActionNull
	ActionPseudonym  // keyed, format-preserving; names become other names
	ActionDateShift  // dates move back by a keyed number of days, per subject
	ActionGeneralize // dates keep the year, ZIP codes three digits, ages over 89 become 90
	ActionDetect     // free text: the content detectors find PHI inside the value
)

var actionNames = [...]string{
	ActionNone:       "none",
	ActionRedact:     "redact",
	ActionKeepLast4:  "keep-last-4",
	ActionHash:       "hash",
	ActionNull:       "null",
	ActionPseudonym:  "pseudonym",
	ActionDateShift:  "date-shift",
	ActionGeneralize: "generalize",
	ActionDetect:     "detect",
}

// keyed reports whether the action needs the pseudonym key.
func (a Action) keyed() bool {
	return a == ActionHash || a == ActionPseudonym || a == ActionDateShift || a == ActionDetect
}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ParseAction returns the action called name.
func ParseAction(name string) (Action, error) {
	for a, n := range actionNames {
		if a != int(ActionNone) && strings.EqualFold(n, name) {
			return Action(a), nil
		}
	}
	return ActionNone, fmt.Errorf("unknown action %q (want redact, keep-last-4, hash, null, pseudonym, date-shift, generalize or detect)", name)
}

// ErrShortKey is returned by [Compile] when a profile needs a key and the
// configured one is shorter than [MinKeyLen].
var ErrShortKey = errors.New("mask: pseudonym key shorter than 32 bytes")

// Profile is a compiled masking profile. It is immutable and safe for
// concurrent use.
type Profile struct {
	name  string
	rules []rule
	key   []byte

	// Content detection (nil det: column rules only).
	det          *Detector
	scanText     bool
	classify     bool
	textAction   Action
	classActions [numTypes]Action
	shiftDays    int

	textPlans sync.Pool // idle *Plan for MaskText
}

// defaultClassActions say what happens to a whole column classified as
// holding one kind of PHI, following HIPAA Safe Harbor: dates keep their
// year, ZIP codes their first three digits, identifiers that are used for
// joins get keyed pseudonyms, the rest is redacted.
var defaultClassActions = [numTypes]Action{
	TypeName: ActionPseudonym, TypeAddress: ActionRedact, TypeLocation: ActionRedact, TypeZip: ActionGeneralize,
	TypeDate: ActionGeneralize, TypeAge: ActionGeneralize, TypePhone: ActionRedact, TypeFax: ActionRedact,
	TypeEmail: ActionPseudonym, TypeSSN: ActionRedact, TypeMRN: ActionHash, TypeHealthPlanID: ActionHash,
	TypeAccount: ActionHash, TypeCreditCard: ActionRedact, TypeLicense: ActionRedact, TypeVehicleID: ActionRedact,
	TypeDeviceID: ActionRedact, TypeURL: ActionRedact, TypeIP: ActionRedact, TypeID: ActionHash,
}

// HIPAAProfileConfig is the default HIPAA profile: no column rules, every
// column classified by name and values, free text scanned.
func HIPAAProfileConfig() ProfileConfig {
	return ProfileConfig{Detect: &DetectConfig{}}
}

type rule struct {
	name    string
	column  string // lower-case; 2 or 3 parts
	suffix  string // "."+column when column has 2 parts
	pattern *regexp.Regexp
	action  Action
}

// Compile validates cfg and returns the profile called name.
func Compile(name string, cfg ProfileConfig, keys Keys) (*Profile, error) {
	p := &Profile{name: name, shiftDays: 365}
	needKey := false
	for i, rc := range cfg.Rules {
		where := fmt.Sprintf("mask: profile %q rule %d", name, i+1)
		if rc.Name != "" {
			where += fmt.Sprintf(" (%s)", rc.Name)
		}
		r := rule{name: rc.Name}
		switch {
		case rc.Column != "" && rc.Pattern != "":
			return nil, fmt.Errorf("%s: set column or pattern, not both", where)
		case rc.Column != "":
			parts := strings.Split(rc.Column, ".")
			if len(parts) < 2 || len(parts) > 3 || slicesContainsEmpty(parts) {
				return nil, fmt.Errorf("%s: column %q: want schema.table.column or table.column", where, rc.Column)
			}
			r.column = strings.ToLower(rc.Column)
			if len(parts) == 2 {
				r.suffix = "." + r.column
			}
			if r.name == "" {
				r.name = "column:" + rc.Column
			}
		case rc.Pattern != "":
			re, err := regexp.Compile("(?i)" + rc.Pattern)
			if err != nil {
				return nil, fmt.Errorf("%s: pattern: %w", where, err)
			}
			r.pattern = re
			if r.name == "" {
				r.name = "pattern:" + rc.Pattern
			}
		default:
			return nil, fmt.Errorf("%s: no column or pattern", where)
		}
		a, err := ParseAction(rc.Action)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		r.action = a
		if a.keyed() {
			needKey = true
		}
		p.rules = append(p.rules, r)
	}
	if dc := cfg.Detect; dc != nil {
		det, err := NewDetector(*dc)
		if err != nil {
			return nil, fmt.Errorf("mask: profile %q: detect: %w", name, err)
		}
		p.det = det
		p.scanText = dc.ScanText == nil || *dc.ScanText
		p.classify = dc.Classify == nil || *dc.Classify
		p.textAction = ActionRedact
		if dc.TextAction != "" {
			if p.textAction, err = ParseAction(dc.TextAction); err != nil || (p.textAction != ActionRedact && p.textAction != ActionPseudonym) {
				return nil, fmt.Errorf("mask: profile %q: detect: text_action %q: want redact or pseudonym", name, dc.TextAction)
			}
		}
		p.classActions = defaultClassActions
		for tn, an := range dc.ClassActions {
			t, err := ParseEntityType(tn)
			if err != nil {
				return nil, fmt.Errorf("mask: profile %q: detect: class_actions: %w", name, err)
			}
			a, err := ParseAction(an)
			if err != nil || a == ActionDetect {
				return nil, fmt.Errorf("mask: profile %q: detect: class_actions %s: bad action %q", name, tn, an)
			}
			p.classActions[t] = a
		}
		p.shiftDays = dc.DateShiftDays
		if p.shiftDays <= 0 {
			p.shiftDays = 365
		}
		needKey = true
	}
	if needKey {
		if len(keys.Pseudonym) < MinKeyLen {
			return nil, fmt.Errorf("mask: profile %q: %w", name, ErrShortKey)
		}
		p.key = append([]byte(nil), keys.Pseudonym...)
	}
	return p, nil
}

func slicesContainsEmpty(parts []string) bool {
	for _, s := range parts {
		if s == "" {
			return true
		}
	}
	return false
}

// Name returns the profile's name.
func (p *Profile) Name() string {
	if p == nil {
		return ""
	}
	return p.name
}

// match returns the index of the first rule that selects c, or -1.
func (p *Profile) match(c Column) int {
	colName := c.Source
	if i := strings.LastIndexByte(colName, '.'); i >= 0 {
		colName = colName[i+1:]
	}
	for i := range p.rules {
		r := &p.rules[i]
		if r.pattern != nil {
			if (colName != "" && r.pattern.MatchString(colName)) || (c.Name != "" && r.pattern.MatchString(c.Name)) {
				return i
			}
			continue
		}
		if c.Source == "" {
			continue
		}
		if strings.EqualFold(c.Source, r.column) {
			return i
		}
		if r.suffix != "" && len(c.Source) > len(r.suffix) && strings.EqualFold(c.Source[len(c.Source)-len(r.suffix):], r.suffix) &&
			strings.Count(c.Source[:len(c.Source)-len(r.suffix)], ".") == 0 {
			return i
		}
	}
	return -1
}

// MaskText appends v, free text that is not a column value (a notification
// payload, a parameter value, an error or notice field, COPY text), with
// the PHI the detectors find in it replaced as in scanned text columns:
// "[NAME]", or keyed look-alikes with text_action pseudonym. changed
// reports whether anything was found. A profile without a detect section
// but with rules scans with the default detector (it masks something, so
// PHI must not leave through messages either); a nil or empty profile
// copies v. MaskText is safe for concurrent use and does not allocate once
// warm.
func (p *Profile) MaskText(dst, v []byte) (out []byte, changed bool) {
	if p == nil || p.det == nil && len(p.rules) == 0 {
		return append(dst, v...), false
	}
	pl, _ := p.textPlans.Get().(*Plan)
	if pl == nil {
		pl = p.Plan(nil, Params{})
	}
	if found := pl.scan(v); len(found) > 0 {
		dst = pl.appendReplaced(dst, v, found, pl.textAction)
		changed = true
	} else {
		dst = append(dst, v...)
	}
	p.textPlans.Put(pl)
	return dst, changed
}
