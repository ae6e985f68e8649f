package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/phigate/phigate/session/mask"
)

// Config is a node's YAML configuration. Every field documents its zero
// value; examples/phigate.yaml shows a complete file.
type Config struct {
	Node struct {
		// ID names the node in logs and recordings. Empty: the host name.
		ID string `yaml:"id"`
		// DataDir holds recordings (spool), the development TLS certificate
		// and generated keys. Empty: ./phigate-data.
		DataDir string `yaml:"data_dir"`
	} `yaml:"node"`

	Listen struct {
		// Postgres is the address agents' PostgreSQL clients connect to.
		// Empty: ":6432".
		Postgres string `yaml:"postgres"`
		// CleartextLoopback lets clients on loopback send their token
		// without TLS. False: TLS is always required.
		CleartextLoopback bool `yaml:"cleartext_loopback"`
		// API is the address (host:port) of the node's HTTPS API for
		// operators: /healthz, /readyz and /metrics (Prometheus), served
		// with the agents' TLS certificate. Empty: no API.
		API string `yaml:"api"`
	} `yaml:"listen"`

	TLS struct {
		// CertFile and KeyFile are the PEM certificate and key agents see.
		// Empty: a self-signed development certificate is created in
		// DataDir/tls on first start (and reused after).
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	} `yaml:"tls"`

	Limits struct {
		// MaxMessageBytes caps one protocol message. Zero: 64 MiB.
		MaxMessageBytes int `yaml:"max_message_bytes"`
		// DrainTimeout is how long a node asked to stop (SIGTERM) lets
		// open sessions finish before it ends them, each recorded. Zero:
		// 30s; negative: none (end them at once).
		DrainTimeout time.Duration `yaml:"drain_timeout"`
		// MaxSessions caps the PostgreSQL sessions the node holds at
		// once; a login beyond it is refused with 53300 (too many
		// connections), before its token is read. Zero: what the
		// process's open-file limit allows, (RLIMIT_NOFILE - 1024 -
		// 256) / 2: two sockets a session, a reserve, and the spool's
		// open session files (see sessionCap). Set above that, the node
		// warns at start.
		MaxSessions int `yaml:"max_sessions"`
	} `yaml:"limits"`

	Keys struct {
		// PseudonymKeyFile holds the HMAC key (at least 32 bytes) for keyed
		// hashes and pseudonyms. Empty: DataDir/keys/pseudonym.key, created
		// with 32 random bytes on first start. Every node of a deployment
		// must use the same key for masked values to join across nodes.
		PseudonymKeyFile string `yaml:"pseudonym_key_file"`
		// AuditorPublicKeyFile is the auditors' public key (`phigate keys
		// auditor`): each session's data key is sealed to it, and raw
		// values behind masked output are sealed under that data key (the
		// masking proof). Only the private key's holder can unseal, with
		// `phigate unseal`. Empty: DataDir/keys/auditor.pub; if missing, a
		// development key pair is created there on first start (move
		// auditor.key off the node). "none" turns the masking proof off.
		AuditorPublicKeyFile string `yaml:"auditor_public_key_file"`
		// ClusterKeyFile or ClusterKeyEnv holds the key (32 bytes, or 64
		// hex digits) that seals upstream credentials in the cluster
		// state. Neither: the cluster's own key, created by the first node
		// in its data directory and handed to nodes that join. Set it on
		// every node to keep the key off their disks (or in a KMS-backed
		// file); it never enters the cluster state.
		ClusterKeyFile string `yaml:"cluster_key_file"`
		ClusterKeyEnv  string `yaml:"cluster_key_env"`
	} `yaml:"keys"`

	Log struct {
		// Level is debug, info, warn or error. Empty: info.
		Level string `yaml:"level"`
		// Format is text or json (one object per line). Empty: text.
		Format string `yaml:"format"`
	} `yaml:"log"`

	Cluster ClusterConfig `yaml:"cluster"`

	// Store is where the node ships its recordings for the long term.
	Store StoreConfig `yaml:"store"`

	// Recording says what sessions' recordings hold beyond every command.
	Recording RecordingConfig `yaml:"recording"`

	// Policy is the bootstrap policy: applied as the cluster's first
	// revision when this node creates the cluster, ignored afterwards
	// (`phigate policy apply` changes the policy in force).
	Policy `yaml:",inline"`
}

// ClusterConfig is how a node takes part in the cluster. A node with no
// join addresses bootstraps a cluster of its own (or restarts as the
// member it was); a node started with join addresses and a join token
// joins the cluster they belong to.
type ClusterConfig struct {
	// Peer is host:port for etcd peer traffic (mutual TLS under the
	// cluster CA); other nodes must reach it. Empty: a free loopback port,
	// for a node that stays alone.
	Peer string `yaml:"peer"`
	// Client is host:port for etcd's client listener (mutual TLS), for
	// tools on the node itself. Empty: a free loopback port.
	Client string `yaml:"client"`
	// Gossip is IP:port (an address, not a name) for membership gossip,
	// TCP and UDP (encrypted with the cluster's gossip key). Empty: a free
	// loopback port.
	Gossip string `yaml:"gossip"`
	// API is host:port of the node-to-node HTTPS API (mutual TLS): joins
	// and forwarded cancel requests. Joining nodes name it in join.
	// Empty: a free loopback port.
	API string `yaml:"api"`
	// Join lists node-to-node API addresses of existing nodes; used on
	// first start only (with a join token), a restarted node rejoins as
	// the member it is. Empty: bootstrap a new cluster.
	Join []string `yaml:"join"`
	// JoinTokenFile holds the join token (`phigate cluster join-token`);
	// `phigate node --join-token` overrides it.
	JoinTokenFile string `yaml:"join_token_file"`
	// Voters is how many members vote (1, 3 or 5); further members are
	// learners, promoted when a voter goes. Zero: 3.
	Voters int `yaml:"voters"`
	// Lease is how long a node cut off from the cluster's quorum goes on
	// deciding with the last policy it has; then it refuses new sessions
	// and commands (57P03) until the quorum is back. Zero: 30s.
	Lease time.Duration `yaml:"lease"`
}

// RecordingConfig tunes what a session's recording holds.
type RecordingConfig struct {
	// DisableChangeSnapshots turns off the before and after rows of data
	// changes (UPDATE, DELETE, INSERT ... ON CONFLICT, MERGE), which are
	// read in the statement's own transaction and recorded, masked like
	// results. False: they are recorded.
	DisableChangeSnapshots bool `yaml:"disable_change_snapshots"`
	// ChangeSnapshotRows bounds the rows of each before or after snapshot
	// (the true count is recorded too). Zero: 100; at most 10000.
	ChangeSnapshotRows int `yaml:"change_snapshot_rows"`
}

// StoreConfig is where recordings are kept for the long term: sealed into
// compressed, encrypted, signed chunks (storage/chunk) and shipped from the
// spool by storage/ship.
type StoreConfig struct {
	// Location is a local directory (a path or file:///dir) or an
	// S3-compatible bucket: s3://BUCKET?endpoint=https://host:port
	// (&region=R, &ca=FILE for a private CA). Empty: DataDir/store.
	Location string `yaml:"location"`
	// CredentialsFile (s3) holds "access_key = ..." and "secret_key = ..."
	// lines. Empty: PHIGATE_S3_ACCESS_KEY and PHIGATE_S3_SECRET_KEY (or
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) from the environment.
	CredentialsFile string `yaml:"credentials_file"`
	// AllowUnlocked lets the node ship to an S3 bucket without versioning
	// and object lock. False: such a bucket stops the node from starting
	// (anyone with the bucket's credentials could delete recordings).
	AllowUnlocked bool `yaml:"allow_unlocked"`
	// Retention is how long every object is kept under retention: "6y",
	// "400d" or a Go duration ("72h"). Empty: 6y. A resource's own
	// retention (resources[].retention) overrides it for its sessions.
	Retention string `yaml:"retention"`
	// RetentionMode is GOVERNANCE or COMPLIANCE (S3 object lock modes).
	// Empty: GOVERNANCE.
	RetentionMode string `yaml:"retention_mode"`
	// ChunkBytes caps the events of one chunk. Zero: 1 MiB.
	ChunkBytes int `yaml:"chunk_bytes"`
	// ChunkInterval caps the time from a chunk's first event to its
	// sealing: how soon a session's events are sealed, signed and anchored
	// in the cluster state. Zero: 1s.
	ChunkInterval time.Duration `yaml:"chunk_interval"`
	// BacklogBytes caps what waits on the node for the store (spool files
	// and sealed segments); at the cap the node refuses new sessions and
	// /readyz fails, until the store confirms older recordings. Zero:
	// 10 GiB; negative: no cap.
	BacklogBytes int64 `yaml:"backlog_bytes"`
}

// Policy is the shared policy document: who may connect (identities), to
// what (resources), what they may do there (grants), how results are
// masked (profiles), the auditors' public key, and who may administer the
// cluster. It lives in the cluster state as numbered revisions; `phigate
// policy apply -f FILE` takes a file of these sections.
type Policy struct {
	Identities IdentitiesConfig `yaml:"identities"`
	Resources  []ResourceConfig `yaml:"resources"`
	Grants     []GrantConfig    `yaml:"grants"`
	Masking    MaskingConfig    `yaml:"masking"`
	Auditors   AuditorsConfig   `yaml:"auditors"`
	Admins     AdminsConfig     `yaml:"admins"`
}

// IdentitiesConfig lists who may present a token.
type IdentitiesConfig struct {
	// Tokens are static tokens, by hash. Empty: none.
	Tokens []TokenConfig `yaml:"tokens"`
	// OIDC lists the issuers whose JWTs agents may present as their
	// token (beside static tokens). Empty: none.
	OIDC []OIDCConfig `yaml:"oidc"`
}

// MaskingConfig holds the masking profiles, by name.
type MaskingConfig struct {
	Profiles map[string]mask.ProfileConfig `yaml:"profiles"`
}

// AuditorsConfig is the auditors' public key (`phigate keys auditor`):
// each session's data key is sealed to it, and raw values behind masked
// output are sealed under that data key (the masking proof).
type AuditorsConfig struct {
	// PublicKey is the key in PEM, or "none" to turn the masking proof
	// off. Stored policies always have it (PublicKeyFile is read into
	// it); a bootstrap policy without either takes keys.auditor_public_key_file.
	PublicKey string `yaml:"public_key"`
	// PublicKeyFile is read into PublicKey when the policy is applied.
	PublicKeyFile string `yaml:"public_key_file"`
}

// AdminsConfig names who may administer the cluster through the node API
// (apply policies, issue join tokens, remove nodes): identities by name,
// or by group. Empty: nobody.
type AdminsConfig struct {
	Identities []string `yaml:"identities"`
	Groups     []string `yaml:"groups"`
}

// TokenConfig is one static identity token, stored as its SHA-256.
type TokenConfig struct {
	Name   string   `yaml:"name"`
	Kind   string   `yaml:"kind"` // agent | ci | human
	Groups []string `yaml:"groups"`
	// TokenSHA256 is the hex SHA-256 of the token (`phigate token hash`).
	TokenSHA256 string `yaml:"token_sha256"`
	// Clients are the client address ranges (CIDR, or a bare address)
	// the token may be presented from; from elsewhere it is refused as an
	// invalid token. Empty: any address.
	Clients []string `yaml:"clients"`
}

// OIDCConfig is one trusted OpenID Connect issuer: agents present one of
// its JWTs as their PostgreSQL password. Its keys are discovered from
// Issuer (/.well-known/openid-configuration, then jwks_uri) over HTTPS
// only, on first use, and fetched again for an unknown kid or after an
// hour, at most once per 10 s; a reload keeps the keys of an issuer whose
// issuer and ca_file did not change. Tokens must be RS256, ES256 or EdDSA,
// with a kid, an exp, and nbf and iat (when present) that have passed.
type OIDCConfig struct {
	// Issuer is the issuer's URL (https), exactly as tokens' iss says it.
	// Required.
	Issuer string `yaml:"issuer"`
	// Audience must be one of a token's aud values. Required.
	Audience string `yaml:"audience"`
	// CAFile is a PEM file of the CAs to trust for the issuer's HTTPS
	// (a private issuer). Empty: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CAPEM is the CA bundle itself: CAFile is read into it when the
	// policy is applied.
	CAPEM string `yaml:"ca_pem,omitempty"`
	// NameClaim is the claim holding the identity's name, which grants'
	// identities refer to. Empty: "sub". Names share one namespace with
	// static tokens' names: the issuer is trusted to assert any of them.
	NameClaim string `yaml:"name_claim"`
	// KindClaim is a claim holding the kind (agent, ci, human); Kind is a
	// fixed kind for all the issuer's tokens. Set exactly one.
	KindClaim string `yaml:"kind_claim"`
	Kind      string `yaml:"kind"`
	// GroupsClaim is a claim holding an array of strings, the identity's
	// groups; a token without the claim has none. Empty: no groups.
	GroupsClaim string `yaml:"groups_claim"`
	// Clients are the client address ranges (CIDR, or a bare address) the
	// issuer's tokens may be presented from. Empty: any address.
	Clients []string `yaml:"clients"`
	// ClockSkew is how far exp, nbf and iat may be off ("30s"). Zero:
	// 30 s; at most 5m.
	ClockSkew time.Duration `yaml:"clock_skew"`
}

// parseClients reads a clients list: CIDR ranges without host bits, or
// bare addresses (a range of one).
func parseClients(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range or an address", s)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("%q has host bits set (did you mean %v?)", s, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}

// ResourceConfig is a protected PostgreSQL database.
type ResourceConfig struct {
	// Name is what agents put in the startup "database" (dbname=...).
	Name     string `yaml:"name"`
	Protocol string `yaml:"protocol"` // postgres (the only one today); empty means postgres
	// Address is host:port or a Unix socket directory.
	Address  string `yaml:"address"`
	Database string `yaml:"database"`
	// User logs in the sessions whose level no role covers (see Roles):
	// with no Roles, every session. It must be empty when Roles has admin
	// (it would never be used) and is required otherwise.
	User string `yaml:"user"`
	// PasswordFile or PasswordEnv names where the upstream password is; the
	// password itself never appears in the configuration. Neither: no
	// password (the server must not ask for one). They are read where the
	// policy is applied (`phigate policy apply`, or the node bootstrapping
	// the cluster) and stored sealed in Password.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Password is the password as the cluster stores it: sealed under the
	// cluster key. Written by apply; `phigate policy get` shows it, and a
	// file applied with it unchanged keeps the password.
	Password *SealedSecret `yaml:"password,omitempty"`
	// Roles holds an upstream login per access level: read (grants that
	// allow only read and export), write (also write and import) and admin
	// (anything more). A session logs in with the role of the least level
	// at or above its grant's that has one, else with User; so the database
	// refuses, as a second wall, what the gateway should have refused.
	// Empty: every session logs in as User. `phigate resource check` says
	// what each role can really do.
	Roles map[string]RoleConfig `yaml:"roles"`
	// TLS is disable, require or verify-full. Empty: verify-full.
	TLS    string `yaml:"tls"`
	CAFile string `yaml:"ca_file"`
	// CAPEM is the CA bundle itself: CAFile is read into it when the
	// policy is applied.
	CAPEM      string `yaml:"ca_pem,omitempty"`
	ServerName string `yaml:"server_name"`
	// Retention is how long the recordings of sessions on this resource
	// are kept ("6y", "400d", "72h"). Empty: the node's store.retention.
	Retention string `yaml:"retention,omitempty"`
	// Subjects maps tables ("schema.table", or "table" in any schema) to
	// the column that names the person each row is about (public.patients:
	// id, public.encounters: patient_id): date-shift then moves each
	// person's dates by that person's own number of days, the same in
	// every query, session and node, and a date of such a table in a
	// result without its subject column is NULL. Empty: one shift per
	// masking profile.
	Subjects map[string]string `yaml:"subjects,omitempty"`
}

// RoleConfig is one upstream login of a resource.
type RoleConfig struct {
	User string `yaml:"user"`
	// PasswordFile or PasswordEnv, as for the resource's own password;
	// Password as the cluster stores it.
	PasswordFile string        `yaml:"password_file"`
	PasswordEnv  string        `yaml:"password_env"`
	Password     *SealedSecret `yaml:"password,omitempty"`
}

// SealedSecret is a credential in a policy document. Stored, it is Sealed
// (base64 of AES-256-GCM under the cluster key) with a keyed Fingerprint;
// Value carries it in clear only from where the policy is applied to the
// node that seals it, and is never stored.
type SealedSecret struct {
	Sealed      string `yaml:"sealed,omitempty" json:"sealed,omitempty"`
	Fingerprint string `yaml:"fingerprint,omitempty" json:"fingerprint,omitempty"`
	Value       string `yaml:"value,omitempty" json:"value,omitempty"`
}

// GrantConfig admits identities to resources.
type GrantConfig struct {
	Name       string   `yaml:"name"`
	Identities []string `yaml:"identities"`
	Groups     []string `yaml:"groups"`
	Kinds      []string `yaml:"kinds"`
	Resources  []string `yaml:"resources"`
	// Allow lists statement classes: read, write, ddl, admin, export,
	// import, or all. Transaction control and session settings are always
	// allowed.
	Allow []string `yaml:"allow"`
	// Masking names a profile under masking.profiles. Empty: no masking.
	Masking string `yaml:"masking"`
	// Functions names functions that sessions may call even where a call
	// would otherwise need a class the grant does not allow, as agents
	// write the call: schema.name allows calls qualified with that schema;
	// a bare name allows unqualified calls, which the server resolves
	// through the session's search_path (name and pg_catalog.name are the
	// same). Names are folded to lower case, as PostgreSQL folds unquoted
	// identifiers. Empty: only the built-in side-effect-free functions.
	Functions []string `yaml:"functions"`
	// Approvals are rules under which some of what the grant allows waits
	// for people's approval (docs/approvals.md). The first matching rule
	// applies. Empty: nothing waits.
	Approvals []ApprovalConfig `yaml:"approvals"`
	// ReadAhead lets a proven read (a SELECT classed read that calls no
	// function off the allowlist and reads no view, foreign table or table
	// with rules) run while its event is being made durable, in a session
	// whose grant may write; its output still leaves only once the event
	// is durable, and the session's start event says read-ahead. A crash
	// in between can lose the record of a read whose rows nobody saw.
	// Off by default: every command is durable before it runs. (A
	// read-only grant's sessions always run this way, made read-only by
	// the database.)
	ReadAhead bool `yaml:"read_ahead"`
}

// ApprovalConfig is one approval rule of a grant (policy.ApprovalRule).
type ApprovalConfig struct {
	Name string `yaml:"name"`
	// When lists what needs approval: statement classes (read, write,
	// ddl, admin, export, import) or risks (ddl, unbounded-write,
	// truncate, bulk-export, table-write, privilege, dangerous-function,
	// unclassified).
	When []string `yaml:"when"`
	// Tables are the tables of table-write and bulk-export (schema.name,
	// or name for any schema; folded to lower case unless double-quoted).
	// Empty for bulk-export: every table.
	Tables []string `yaml:"tables"`
	// MaxRows: a SELECT with a LIMIT of at most this many rows is not a
	// bulk export. 0: any LIMIT will do.
	MaxRows int64 `yaml:"max_rows"`
	// Approvers are the groups whose members may decide; Required how
	// many distinct members must approve (default 1). The requester never
	// counts.
	Approvers []string `yaml:"approvers"`
	Required  int      `yaml:"required"`
	// TTL: how long a request stays open (default 1h). Mode: hold (the
	// default: the command waits up to Hold, default 5m, and runs when
	// approved) or fail-fast (refused at once with the request id; the
	// same statement sent again after approval runs). MaxWindow: the
	// longest time-boxed grant an approver may give (0: one-time runs only).
	TTL       time.Duration `yaml:"ttl"`
	Mode      string        `yaml:"mode"`
	Hold      time.Duration `yaml:"hold"`
	MaxWindow time.Duration `yaml:"max_window"`
}

// LoadConfig reads and parses a YAML configuration file. Unknown fields are
// errors, so that a typo does not silently weaken a policy.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig parses YAML configuration bytes.
func ParseConfig(b []byte) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file is the zero configuration
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}
