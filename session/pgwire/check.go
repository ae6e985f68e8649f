package pgwire

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/resource"
)

// This file is the role check: the gateway refuses statements a grant does
// not allow, and the database should refuse them too. CheckResource logs in
// with each of a resource's credentials, asks the catalogs what that role
// can really do, and reports where it can do more than the least level of
// the grants that log in with it. It only reads catalogs, in a read-only
// transaction, and never prints a password.

// Severity says how bad a finding is.
type Severity string

const (
	// SeverityDanger: the role can do more than its level allows, so the
	// database would not stop what the gateway should have refused.
	SeverityDanger Severity = "danger"
	// SeverityNote: a recommendation, or something a person should know.
	SeverityNote Severity = "note"
)

// Finding is one thing a role can do, judged against a level.
type Finding struct {
	Level    policy.Level `json:"level"` // the level the role was compared with
	Role     string       `json:"role"`
	Severity Severity     `json:"severity"`
	What     string       `json:"what"`
	// Where lists the objects (database, schema.table, function
	// signatures); empty for what is server-wide.
	Where []string `json:"where,omitempty"`
}

// RoleCheck is one upstream credential of a resource.
type RoleCheck struct {
	Role string `json:"role"`
	// Levels are the access levels whose sessions log in as Role.
	Levels []policy.Level `json:"levels"`
	// Grants are the grants whose sessions log in as Role.
	Grants []string `json:"grants,omitempty"`
	// Level is what Role is compared with: the least level of Grants, or of
	// Levels when no grant uses it.
	Level policy.Level `json:"compared_with"`
	// Error says why the role could not be checked (a login or query
	// failure); its findings are then missing.
	Error string `json:"error,omitempty"`
}

// CheckReport is the outcome of CheckResource.
type CheckReport struct {
	Resource string      `json:"resource"`
	Database string      `json:"database"`
	Address  string      `json:"address"`
	Roles    []RoleCheck `json:"roles"`
	Findings []Finding   `json:"findings"`
}

// Dangers counts the danger findings.
func (r *CheckReport) Dangers() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == SeverityDanger {
			n++
		}
	}
	return n
}

// Failed reports whether some role could not be checked.
func (r *CheckReport) Failed() bool {
	return slices.ContainsFunc(r.Roles, func(rc RoleCheck) bool { return rc.Error != "" })
}

// WriteJSON writes the report as one indented JSON document.
func (r *CheckReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person: which level logs in as which
// role, then each role's findings, dangers first.
func (r *CheckReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "resource %s: database %s at %s\n", r.Resource, r.Database, r.Address)
	for _, rc := range r.Roles {
		levels := make([]string, len(rc.Levels))
		for i, l := range rc.Levels {
			levels[i] = string(l)
		}
		grants := "no grant logs in with it"
		if len(rc.Grants) > 0 {
			grants = "grants " + strings.Join(rc.Grants, ", ")
		}
		fmt.Fprintf(&b, "  %s sessions log in as %s (%s)\n", strings.Join(levels, ", "), rc.Role, grants)
	}
	for _, rc := range r.Roles {
		fmt.Fprintf(&b, "\nrole %s, compared with %s:\n", rc.Role, rc.Level)
		if rc.Error != "" {
			fmt.Fprintf(&b, "  NOT CHECKED  %s\n", rc.Error)
			continue
		}
		n := 0
		for _, sev := range []Severity{SeverityDanger, SeverityNote} {
			for _, f := range r.Findings {
				if f.Role != rc.Role || f.Severity != sev {
					continue
				}
				n++
				label := "note  "
				if sev == SeverityDanger {
					label = "DANGER"
				}
				fmt.Fprintf(&b, "  %s  %s", label, f.What)
				if len(f.Where) > 0 {
					fmt.Fprintf(&b, ": %s", ShortList(f.Where, 8))
				}
				b.WriteByte('\n')
			}
		}
		if n == 0 {
			fmt.Fprintf(&b, "  nothing beyond %s\n", rc.Level)
		}
	}
	notes := plural(len(r.Findings)-r.Dangers(), "note")
	switch {
	case r.Dangers() > 0:
		fmt.Fprintf(&b, "\n%s (roles stronger than the grants that log in with them), %s\n", plural(r.Dangers(), "danger finding"), notes)
	case r.Failed():
		fmt.Fprintf(&b, "\nno danger found in the roles that could be checked, but some could not be; %s\n", notes)
	default:
		fmt.Fprintf(&b, "\nno danger found; %s\n", notes)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// ShortList joins up to n items and says how many more there are.
func ShortList(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" and %d more", len(items)-n)
}

// checkConnectTimeout bounds each login of the check, and checkRoleTimeout
// the whole check of one role, when ctx has no earlier deadline.
const (
	checkConnectTimeout = 10 * time.Second
	checkRoleTimeout    = 30 * time.Second
)

// CheckResource logs in to r with each credential that some level uses and
// judges what the role can do against the least level of the grants (among
// grants) that log in with it. A role that cannot be checked is reported
// in its RoleCheck.Error; the error returned is for an invalid resource
// only. Roles are checked concurrently, each bounded by ctx and by 30
// seconds.
func CheckResource(ctx context.Context, r *resource.Resource, grants []policy.Grant) (*CheckReport, error) {
	if err := ValidateResource(r); err != nil {
		return nil, fmt.Errorf("pgwire: check resource %q: %w", r.Name, err)
	}
	rep := &CheckReport{Resource: r.Name, Database: r.Database, Address: r.Address, Findings: []Finding{}}

	// One RoleCheck per distinct login, in level order.
	type target struct {
		check RoleCheck
		login policy.Level // a level that logs in with it
		funcs []string     // functions its grants name
	}
	var targets []*target
	byUser := map[string]*target{}
	for _, l := range policy.Levels {
		user := r.For(l).User
		t := byUser[user]
		if t == nil {
			t = &target{check: RoleCheck{Role: user}, login: l}
			byUser[user] = t
			targets = append(targets, t)
		}
		t.check.Levels = append(t.check.Levels, l)
	}
	for i := range grants {
		g := &grants[i]
		if !slices.Contains(g.Resources, r.Name) && !slices.Contains(g.Resources, "*") {
			continue
		}
		l := g.Level()
		t := byUser[r.For(l).User]
		t.check.Grants = append(t.check.Grants, g.Name)
		if t.check.Level == "" || l.Rank() < t.check.Level.Rank() {
			t.check.Level = l
		}
		t.funcs = append(t.funcs, g.Functions...)
	}

	findings := make([][]Finding, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		if t.check.Level == "" {
			t.check.Level = t.check.Levels[0]
		}
		wg.Go(func() {
			facts, err := gatherRoleFacts(ctx, r, t.login)
			if err != nil {
				t.check.Error = err.Error()
				return
			}
			facts.user = t.check.Role // as configured, to match the RoleCheck
			findings[i] = assessRole(t.check.Level, facts, t.funcs)
			if len(t.check.Grants) == 0 {
				findings[i] = append(findings[i], Finding{Level: t.check.Level, Role: t.check.Role, Severity: SeverityNote,
					What: "no grant logs in with this role (configured for " + joinLevels(t.check.Levels) + ")"})
			}
		})
	}
	wg.Wait()
	for i, t := range targets {
		rep.Roles = append(rep.Roles, t.check)
		rep.Findings = append(rep.Findings, findings[i]...)
	}
	return rep, nil
}

func joinLevels(ls []policy.Level) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = string(l)
	}
	return strings.Join(s, ", ")
}

// roleFacts is what the catalogs say one role can do in one database.
type roleFacts struct {
	user, database string

	super, createRole, createDB, replication, bypassRLS bool
	// memberOf are roles it can SET ROLE to (directly or through others)
	// that carry one of the attributes above: "name (SUPERUSER, ...)".
	memberOf []string
	// predefined are the predefined roles (pg_signal_backend, ...) it is a
	// member of, directly or through others.
	predefined []string

	ownsDatabase, createOnDatabase, tempOnDatabase bool
	ownedSchemas, createSchemas                    []string

	// Relations (tables, views, materialized views, foreign tables) and
	// sequences, by what it may do to them.
	ownedRelations, insert, update, delete, truncate, references, trigger []string
	ownedSequences, sequenceUsage, sequenceUpdate                         []string

	ownedFunctions []string
	definer        []function // SECURITY DEFINER, executable, owned by another role
	volatile       []function // VOLATILE, executable, SECURITY INVOKER

	loCreate          bool // can run a function that creates large objects
	loCompat          bool // lo_compat_privileges is on
	loOwned, loUpdate int  // large objects owned / writable by grant

	readOnlyDefault bool // default_transaction_read_only is on for its sessions
}

type function struct {
	signature string // schema.name(args), quoted as needed
	name      string // schema.name as grants name it
	owner     string
}

// predefinedRoles are the predefined roles the check looks for. Membership
// is expected of admin roles only; below admin it is a danger when danger is
// set (or dangerRead, at read), else a note.
var predefinedRoles = []struct {
	name, what         string
	danger, dangerRead bool
}{
	{"pg_execute_server_program", "can run programs on the database server (COPY ... PROGRAM)", true, false},
	{"pg_write_server_files", "can write files on the database server (COPY ... TO a file)", true, false},
	{"pg_read_server_files", "can read files on the database server (COPY ... FROM a file, pg_read_file)", true, false},
	{"pg_signal_backend", "can cancel and terminate other sessions (pg_cancel_backend, pg_terminate_backend)", true, false},
	{"pg_checkpoint", "can force checkpoints", true, false},
	{"pg_create_subscription", "can create logical replication subscriptions", true, false},
	{"pg_maintain", "can VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH and LOCK every table", true, false},
	{"pg_write_all_data", "can INSERT, UPDATE and DELETE in every table", false, true},
	{"pg_read_all_data", "can read every table, not only those granted to it", false, false},
	{"pg_monitor", "can see every session's activity and query text, and every setting", false, false},
	{"pg_read_all_stats", "can see every session's query text (pg_stat_activity)", false, false},
	{"pg_read_all_settings", "can read every server setting", false, false},
	{"pg_stat_scan_tables", "can run monitoring functions that take locks on tables", false, false},
	{"pg_use_reserved_connections", "can use connections reserved for administrators", false, false},
}

// pg_monitor's members are members of these too; one finding says it.
var inMonitor = []string{"pg_read_all_settings", "pg_read_all_stats", "pg_stat_scan_tables"}

// assessRole judges facts against level: read may only SELECT and must not
// own anything or be able to write anywhere; write may also INSERT, UPDATE
// and DELETE but not own objects, change schemas or administer; admin may do
// anything. named are the functions the grants that use the role name
// (grants[].functions): calling them is intended.
func assessRole(level policy.Level, f *roleFacts, named []string) []Finding {
	var out []Finding
	add := func(sev Severity, what string, where ...string) {
		out = append(out, Finding{Level: level, Role: f.user, Severity: sev, What: what, Where: where})
	}
	belowAdmin := level.Rank() < policy.LevelAdmin.Rank()
	atRead := level == policy.LevelRead
	// danger below admin, nothing at admin.
	strong := func(ok bool, what string, where ...string) {
		if ok && belowAdmin {
			add(SeverityDanger, what, where...)
		}
	}
	list := func(items []string, sev Severity, what string) {
		if len(items) > 0 {
			add(sev, what, items...)
		}
	}

	if f.super {
		if belowAdmin {
			add(SeverityDanger, "is a superuser: the database checks no privilege for it")
		} else {
			add(SeverityNote, "is a superuser; an admin role that owns the schema and its objects is enough for DDL and grants")
		}
		return out // every privilege below is true for a superuser
	}
	strong(f.createRole, "has CREATEROLE: can create roles and grant itself membership in them")
	strong(f.createDB, "has CREATEDB: can create databases")
	strong(f.replication, "has REPLICATION: can stream the whole cluster's changes and create replication slots")
	strong(f.bypassRLS, "has BYPASSRLS: row-level security policies do not apply to it")
	if len(f.memberOf) > 0 && belowAdmin {
		add(SeverityDanger, "can SET ROLE to roles with these attributes", f.memberOf...)
	}
	for _, p := range predefinedRoles {
		if !slices.Contains(f.predefined, p.name) || !belowAdmin {
			continue
		}
		if slices.Contains(inMonitor, p.name) && slices.Contains(f.predefined, "pg_monitor") {
			continue
		}
		sev := SeverityNote
		if p.danger || (p.dangerRead && atRead) {
			sev = SeverityDanger
		}
		add(sev, "member of "+p.name+": "+p.what)
	}

	strong(f.ownsDatabase, "owns the database: can change and drop it and grant on it", f.database)
	strong(f.createOnDatabase, "has CREATE on the database: can create schemas", f.database)
	if f.tempOnDatabase && belowAdmin {
		add(SeverityNote, "has TEMP on the database: can create temporary tables (PUBLIC has TEMP by default; REVOKE TEMP ON DATABASE ... FROM PUBLIC)", f.database)
	}
	if belowAdmin {
		list(f.ownedSchemas, SeverityDanger, "owns schemas: can create, change and drop anything in them")
		list(f.createSchemas, SeverityDanger, "has CREATE on schemas: can create tables, views and functions in them")
		list(f.ownedRelations, SeverityDanger, "owns tables or views: can change and drop them and grant on them")
		list(f.ownedSequences, SeverityDanger, "owns sequences")
		list(f.ownedFunctions, SeverityDanger, "owns functions: can replace their code")
		list(f.trigger, SeverityDanger, "has TRIGGER on tables: can attach triggers to them")
		list(f.references, SeverityNote, "has REFERENCES on tables: can make foreign keys that refer to them")
	}
	if atRead {
		list(f.insert, SeverityDanger, "can INSERT into")
		list(f.update, SeverityDanger, "can UPDATE")
		list(f.delete, SeverityDanger, "can DELETE from")
		list(f.truncate, SeverityDanger, "can TRUNCATE")
		seq := slices.Clone(f.sequenceUsage)
		for _, s := range f.sequenceUpdate {
			if !slices.Contains(seq, s) {
				seq = append(seq, s)
			}
		}
		slices.Sort(seq)
		list(seq, SeverityDanger, "can advance sequences (USAGE or UPDATE: nextval, setval)")
	} else if belowAdmin {
		list(f.truncate, SeverityNote, "can TRUNCATE (write grants allow TRUNCATE; it skips row triggers and cannot be limited to rows)")
	}

	var definerDanger, definerNamed, volatile []string
	for _, fn := range f.definer {
		where := fn.signature + " owned by " + fn.owner
		if slices.Contains(named, fn.name) {
			definerNamed = append(definerNamed, where)
		} else {
			definerDanger = append(definerDanger, where)
		}
	}
	for _, fn := range f.volatile {
		if !slices.Contains(named, fn.name) {
			volatile = append(volatile, fn.signature)
		}
	}
	if belowAdmin {
		list(definerDanger, SeverityDanger, "can EXECUTE SECURITY DEFINER functions that run with another role's privileges (EXECUTE is granted to PUBLIC by default)")
		list(definerNamed, SeverityNote, "can EXECUTE SECURITY DEFINER functions that its grants name; they run with their owner's privileges")
	}
	if atRead {
		list(volatile, SeverityNote, "can EXECUTE volatile functions (they run with its own privileges, but may have side effects)")
	}

	if atRead {
		strong(f.loCreate, "can create large objects (lo_create, lo_from_bytea: PUBLIC may run them by default, even in a read-only transaction); REVOKE EXECUTE on them FROM PUBLIC")
		strong(f.loCompat, "lo_compat_privileges is on: no privilege check on large objects, any role can read, write and unlink any of them")
		if f.loOwned > 0 {
			add(SeverityDanger, fmt.Sprintf("owns %d large objects: can write and unlink them", f.loOwned))
		}
		if f.loUpdate > 0 {
			add(SeverityDanger, fmt.Sprintf("has UPDATE on %d large objects", f.loUpdate))
		}
		if !f.readOnlyDefault {
			add(SeverityNote, fmt.Sprintf("default_transaction_read_only is off for this role: ALTER ROLE %s SET default_transaction_read_only = on makes its sessions read-only even if the gateway's setting were lost", quoteIdentifier(f.user)))
		}
	} else if belowAdmin && f.loCompat {
		add(SeverityNote, "lo_compat_privileges is on: no privilege check on large objects")
	}
	return out
}

func quoteIdentifier(s string) string {
	plain := s != "" && (s[0] == '_' || s[0] >= 'a' && s[0] <= 'z')
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			plain = false
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// The catalog queries of the check. Each runs as the role being checked,
// so has_*_privilege and pg_has_role answer for it, counting PUBLIC and
// every role it is a member of. A role "is" another when it has its
// privileges (USAGE: inherited, which is how pg_database_owner's implicit
// membership answers) or can SET ROLE to it (MEMBER).
const (
	checkRoleQuery = `SELECT current_user, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
  current_setting('default_transaction_read_only')::bool, current_setting('lo_compat_privileges')::bool, current_database()
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`

	checkMemberOfQuery = `SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls
FROM pg_catalog.pg_roles r
WHERE r.rolname <> current_user
  AND (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls)
  AND (pg_catalog.pg_has_role(current_user, r.oid, 'USAGE') OR pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER'))
ORDER BY 1`

	// checkPredefinedQuery's IN list is filled from predefinedRoles (constants).
	checkPredefinedQuery = `SELECT r.rolname FROM pg_catalog.pg_roles r
WHERE r.rolname IN (%s) AND (pg_catalog.pg_has_role(current_user, r.oid, 'USAGE') OR pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')) ORDER BY 1`

	checkDatabaseQuery = `SELECT (pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE') OR pg_catalog.pg_has_role(current_user, d.datdba, 'MEMBER')),
  pg_catalog.has_database_privilege(d.oid, 'CREATE'), pg_catalog.has_database_privilege(d.oid, 'TEMP')
FROM pg_catalog.pg_database d WHERE d.datname = current_database()`

	checkSchemaQuery = `SELECT * FROM (
  SELECT pg_catalog.quote_ident(n.nspname) AS name,
    (pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE') OR pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER')) AS owner,
    pg_catalog.has_schema_privilege(n.oid, 'CREATE') AS can_create
  FROM pg_catalog.pg_namespace n WHERE n.nspname !~ '^pg_(toast|temp_)') s
WHERE owner OR can_create ORDER BY name`

	// Relations and sequences; CASE keeps each privilege function to the
	// relation kinds it accepts.
	checkRelationQuery = `SELECT * FROM (
  SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS name,
    c.relkind = 'S' AS seq,
    (pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') OR pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER')) AS owner,
    CASE WHEN c.relkind IN ('r','p','v','f') THEN pg_catalog.has_any_column_privilege(c.oid, 'INSERT') ELSE false END AS ins,
    CASE WHEN c.relkind IN ('r','p','v','f') THEN pg_catalog.has_any_column_privilege(c.oid, 'UPDATE') ELSE false END AS upd,
    CASE WHEN c.relkind IN ('r','p','v','f') THEN pg_catalog.has_table_privilege(c.oid, 'DELETE') ELSE false END AS del,
    CASE WHEN c.relkind IN ('r','p','v','f') THEN pg_catalog.has_table_privilege(c.oid, 'TRUNCATE') ELSE false END AS trunc,
    CASE WHEN c.relkind IN ('r','p','v','f') THEN pg_catalog.has_any_column_privilege(c.oid, 'REFERENCES') ELSE false END AS refs,
    CASE WHEN c.relkind IN ('r','p','v','f') THEN pg_catalog.has_table_privilege(c.oid, 'TRIGGER') ELSE false END AS trig,
    CASE WHEN c.relkind = 'S' THEN pg_catalog.has_sequence_privilege(c.oid, 'USAGE') ELSE false END AS seq_usage,
    CASE WHEN c.relkind = 'S' THEN pg_catalog.has_sequence_privilege(c.oid, 'UPDATE') ELSE false END AS seq_update
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r','p','v','m','f','S')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)') x
WHERE owner OR ins OR upd OR del OR trunc OR refs OR trig OR seq_usage OR seq_update
ORDER BY name`

	// Functions and procedures that are not built in (OIDs from 16384 are
	// made after initdb).
	checkFunctionQuery = `SELECT * FROM (
  SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname)
      || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' AS signature,
    n.nspname || '.' || p.proname AS name,
    pg_catalog.pg_get_userbyid(p.proowner) AS owner_name,
    (pg_catalog.pg_has_role(current_user, p.proowner, 'USAGE') OR pg_catalog.pg_has_role(current_user, p.proowner, 'MEMBER')) AS owner,
    pg_catalog.has_function_privilege(p.oid, 'EXECUTE') AS exec,
    p.prosecdef AS definer, p.provolatile = 'v' AS volatile
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  WHERE p.oid >= 16384 AND p.prokind IN ('f', 'p')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')) f
WHERE owner OR (exec AND (definer OR volatile))
ORDER BY signature`

	checkLargeObjectQuery = `SELECT
  pg_catalog.has_function_privilege('pg_catalog.lo_create(oid)', 'EXECUTE')
    OR pg_catalog.has_function_privilege('pg_catalog.lo_creat(integer)', 'EXECUTE')
    OR pg_catalog.has_function_privilege('pg_catalog.lo_from_bytea(oid, bytea)', 'EXECUTE')
    OR pg_catalog.has_function_privilege('pg_catalog.lo_import(text)', 'EXECUTE')
    OR pg_catalog.has_function_privilege('pg_catalog.lo_import(text, oid)', 'EXECUTE'),
  (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata m
    WHERE (pg_catalog.pg_has_role(current_user, m.lomowner, 'USAGE') OR pg_catalog.pg_has_role(current_user, m.lomowner, 'MEMBER'))),
  (SELECT count(DISTINCT m.oid) FROM pg_catalog.pg_largeobject_metadata m, pg_catalog.aclexplode(m.lomacl) a
    WHERE a.privilege_type = 'UPDATE' AND (a.grantee = 0 OR (pg_catalog.pg_has_role(current_user, a.grantee, 'USAGE') OR pg_catalog.pg_has_role(current_user, a.grantee, 'MEMBER'))))`
)

// gatherRoleFacts logs in as the credential of level and reads what that
// role can do. Login errors name the role and the server, never the
// password.
func gatherRoleFacts(ctx context.Context, r *resource.Resource, level policy.Level) (*roleFacts, error) {
	ctx, cancel := context.WithTimeout(ctx, checkRoleTimeout)
	defer cancel()
	cfg, err := connConfig(r, level, checkConnectTimeout)
	if err != nil {
		return nil, err
	}
	// No default_transaction_read_only here: the role's own default is one
	// of the things measured. Everything after the first query runs in a
	// read-only transaction.
	cfg.RuntimeParams = map[string]string{"application_name": "phigate-check"}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("log in as %s: %w", cfg.User, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = conn.Close(cctx)
		cancel()
	}()

	f := &roleFacts{}
	rows, err := queryText(ctx, conn, checkRoleQuery)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("role %s not found in pg_roles", cfg.User)
	}
	row := rows[0]
	f.user = row[0]
	f.super, f.createRole, f.createDB, f.replication, f.bypassRLS = row[1] == "t", row[2] == "t", row[3] == "t", row[4] == "t", row[5] == "t"
	f.readOnlyDefault, f.loCompat, f.database = row[6] == "t", row[7] == "t", row[8]
	if f.super {
		return f, nil
	}
	if _, err := conn.Exec(ctx, "BEGIN READ ONLY").ReadAll(); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}

	if rows, err = queryText(ctx, conn, checkMemberOfQuery); err != nil {
		return nil, err
	}
	attrs := []string{"SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"}
	for _, row := range rows {
		var has []string
		for i, a := range attrs {
			if row[i+1] == "t" {
				has = append(has, a)
			}
		}
		f.memberOf = append(f.memberOf, quoteIdentifier(row[0])+" ("+strings.Join(has, ", ")+")")
	}

	names := make([]string, len(predefinedRoles))
	for i, p := range predefinedRoles {
		names[i] = "'" + p.name + "'"
	}
	if rows, err = queryText(ctx, conn, fmt.Sprintf(checkPredefinedQuery, strings.Join(names, ", "))); err != nil {
		return nil, err
	}
	for _, row := range rows {
		f.predefined = append(f.predefined, row[0])
	}

	if rows, err = queryText(ctx, conn, checkDatabaseQuery); err != nil {
		return nil, err
	}
	if len(rows) == 1 {
		f.ownsDatabase, f.createOnDatabase, f.tempOnDatabase = rows[0][0] == "t", rows[0][1] == "t", rows[0][2] == "t"
	}

	if rows, err = queryText(ctx, conn, checkSchemaQuery); err != nil {
		return nil, err
	}
	for _, row := range rows {
		if row[1] == "t" {
			f.ownedSchemas = append(f.ownedSchemas, row[0])
		}
		if row[2] == "t" {
			f.createSchemas = append(f.createSchemas, row[0])
		}
	}

	if rows, err = queryText(ctx, conn, checkRelationQuery); err != nil {
		return nil, err
	}
	for _, row := range rows {
		name, seq := row[0], row[1] == "t"
		add := func(dst *[]string, col int) {
			if row[col] == "t" {
				*dst = append(*dst, name)
			}
		}
		if seq {
			add(&f.ownedSequences, 2)
			add(&f.sequenceUsage, 9)
			add(&f.sequenceUpdate, 10)
			continue
		}
		add(&f.ownedRelations, 2)
		add(&f.insert, 3)
		add(&f.update, 4)
		add(&f.delete, 5)
		add(&f.truncate, 6)
		add(&f.references, 7)
		add(&f.trigger, 8)
	}

	if rows, err = queryText(ctx, conn, checkFunctionQuery); err != nil {
		return nil, err
	}
	for _, row := range rows {
		fn := function{signature: row[0], name: row[1], owner: row[2]}
		owner, exec, definer, volatile := row[3] == "t", row[4] == "t", row[5] == "t", row[6] == "t"
		switch {
		case owner:
			f.ownedFunctions = append(f.ownedFunctions, fn.signature)
		case exec && definer:
			f.definer = append(f.definer, fn)
		case exec && volatile:
			f.volatile = append(f.volatile, fn)
		}
	}

	if rows, err = queryText(ctx, conn, checkLargeObjectQuery); err != nil {
		return nil, err
	}
	if len(rows) == 1 {
		f.loCreate = rows[0][0] == "t"
		f.loOwned, _ = strconv.Atoi(rows[0][1])
		f.loUpdate, _ = strconv.Atoi(rows[0][2])
	}
	return f, nil
}

// queryText runs a parameterless catalog query and returns its rows as
// text (NULL as "").
func queryText(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	rr := conn.ExecParams(ctx, sql, nil, nil, nil, nil)
	var rows [][]string
	for rr.NextRow() {
		vals := rr.Values()
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = string(v)
		}
		rows = append(rows, row)
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("query catalogs: %w", err)
	}
	return rows, nil
}
