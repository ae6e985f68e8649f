package record

import (
	"log/slog"
	"time"
)

// Kind names what an event records.
type Kind string

const (
	// KindSessionStart opens every recording: who connected, from where, to what.
	KindSessionStart Kind = "session.start"
	// KindAuthFailed records a rejected identity token (the token itself is never recorded).
	KindAuthFailed Kind = "auth.failed"
	// KindAccessDenied records a connection refused by policy.
	KindAccessDenied Kind = "access.denied"
	// KindCommand is written before a command is forwarded to the target (write-ahead).
	KindCommand Kind = "command"
	// KindResult closes a command: tag, rows, bytes, error, duration, masking.
	KindResult Kind = "result"
	// KindCopyData carries a slice of the data a client sent with COPY FROM STDIN.
	KindCopyData Kind = "copy.data"
	// KindProtocolError records malformed input that ended the session.
	KindProtocolError Kind = "protocol.error"
	// KindMaskKey carries the session's data key, sealed to the auditors'
	// public key; raw values in mask.proof events are sealed under it.
	KindMaskKey Kind = "mask.key"
	// KindMaskProof carries, for masked values, what masked them and the
	// raw value sealed.
	KindMaskProof Kind = "mask.proof"
	// KindUnseal records an auditor unsealing raw values (in the audit log).
	KindUnseal Kind = "unseal"
	// KindPolicy records a change of the cluster's policy: which revision,
	// by whom (in the recordings of the node that stored it).
	KindPolicy Kind = "policy"
	// KindCancel records a request to cancel the running command.
	KindCancel Kind = "cancel"
	// KindChange records the rows a data-changing statement touched, read
	// in its own transaction: before it ran, after it ran, or why neither.
	KindChange Kind = "change"
	// KindChangeOutcome records how the transaction holding recorded changes
	// ended: committed, rolled back (to a savepoint, by an error, with the
	// session), or prepared for two-phase commit.
	KindChangeOutcome Kind = "change.outcome"
	// KindApproval records a step of a just-in-time approval of one of the
	// session's commands: the request filed, each vote, the decision
	// (approved, denied, expired, withdrawn, abandoned), a command run under
	// an earlier approval, or a gated command refused because approvals
	// could not be reached.
	KindApproval Kind = "approval"
	// KindSessionEnd closes every recording that ended cleanly or was recovered.
	KindSessionEnd Kind = "session.end"
)

// Event is one entry of a session recording. Exactly one of the kind-specific
// parts is set, matching Kind. Seq and Prev are assigned by Chain.Seal; the
// caller fills in the rest.
//
// Events carry PHI (SQL text, parameters, COPY data): the recording is the
// protected audit store. Event implements slog.LogValuer so that logging one
// prints only its kind and position.
type Event struct {
	Seq  uint64    `json:"seq"`
	Prev string    `json:"prev"` // hex SHA-256 of the previous event's payload, or of the session genesis for seq 0
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`

	Session  string `json:"session"`
	Node     string `json:"node"`
	Identity string `json:"identity,omitempty"` // identity name; empty before authentication
	Resource string `json:"resource,omitempty"`

	Start    *SessionStart  `json:"start,omitempty"`
	Auth     *AuthFailure   `json:"auth,omitempty"`
	Denied   *Denial        `json:"denied,omitempty"`
	Command  *Command       `json:"command,omitempty"`
	Result   *Result        `json:"result,omitempty"`
	Change   *Change        `json:"change,omitempty"`
	Outcome  *ChangeOutcome `json:"outcome,omitempty"`
	Copy     *CopyData      `json:"copy,omitempty"`
	Error    *ProtocolError `json:"error,omitempty"`
	Cancel   *Cancel        `json:"cancel,omitempty"`
	Key      *MaskKey       `json:"key,omitempty"`
	Proof    *MaskProof     `json:"proof,omitempty"`
	Unseal   *Unseal        `json:"unseal,omitempty"`
	Policy   *PolicyChange  `json:"policy,omitempty"`
	Approval *Approval      `json:"approval,omitempty"`
	End      *SessionEnd    `json:"end,omitempty"`
}

// LogValue keeps event contents (which may hold PHI) out of logs.
func (e *Event) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("kind", string(e.Kind)),
		slog.Uint64("seq", e.Seq),
		slog.String("session", e.Session),
	)
}

// SessionStart describes the connection and the identity behind it.
type SessionStart struct {
	Protocol     string   `json:"protocol"` // "postgres"
	Client       string   `json:"client"`   // remote address
	TLS          bool     `json:"tls"`
	TLSVersion   string   `json:"tls_version,omitempty"`
	IdentityKind string   `json:"identity_kind,omitempty"` // agent | ci | human
	Groups       []string `json:"groups,omitempty"`
	User         string   `json:"user,omitempty"` // user name the client presented
	Database     string   `json:"database,omitempty"`
	Application  string   `json:"application,omitempty"`
	Grant        string   `json:"grant,omitempty"` // policy grant that admitted the session
	Masking      string   `json:"masking,omitempty"`
	Upstream     string   `json:"upstream,omitempty"` // target address (never its credential)
	// Durability says when the session's commands were durable: before
	// they ran, or, for plain DML and SELECT inside a transaction block,
	// before their output left and before the block could commit
	// (DurabilityCommand); before their output left (a read-only grant,
	// DurabilityOutput); or as with DurabilityCommand, and proven reads
	// ran while their event synced (DurabilityReadAhead).
	// Empty in recordings made before it was recorded: command.
	Durability string `json:"durability,omitempty"`
}

// The values of SessionStart.Durability.
const (
	DurabilityCommand   = "command"
	DurabilityOutput    = "output"
	DurabilityReadAhead = "read-ahead"
)

// AuthFailure records why a presented token was rejected.
type AuthFailure struct {
	User   string `json:"user,omitempty"`
	Reason string `json:"reason"`
}

// Denial records a policy decision that refused a connection or a command.
type Denial struct {
	Rule   string `json:"rule,omitempty"`
	Reason string `json:"reason"`
}

// Protocols a Command can record. Command.Protocol names which one, and
// the body of that name carries what the protocol says.
const (
	// ProtocolPostgres: the PostgreSQL wire protocol; the body is
	// Command.Postgres.
	ProtocolPostgres = "postgres"
)

// Command is what the client asked the target to do, and what phigate
// decided. What is common to every protocol (the number, the classes, the
// decision) sits here; what only one protocol has (SQL text, a prepared
// statement, an HTTP method and path) sits in that protocol's body, so that
// a proxy for another protocol records its commands without bending the
// others'. Exactly one body is set, the one Protocol names.
//
// Recordings written before the bodies existed carry the PostgreSQL fields
// at the top level; UnmarshalJSON reads them into Postgres.
type Command struct {
	ID       uint64           `json:"id"`                 // per-session command number, starting at 1
	Protocol string           `json:"protocol"`           // ProtocolPostgres
	Postgres *PostgresCommand `json:"postgres,omitempty"` // when Protocol is ProtocolPostgres
	Classes  []string         `json:"classes,omitempty"`  // statement classes, in order (read, write, ddl, ...)
	Decision string           `json:"decision"`           // allow | deny
	Rule     string           `json:"rule,omitempty"`     // grant that decided
	Reason   string           `json:"reason,omitempty"`   // why denied
}

// Text is what ran, as a person reads it in a trail: the SQL for a
// PostgreSQL command. It is empty for a command without a body.
func (c *Command) Text() string {
	if c.Postgres != nil {
		return c.Postgres.SQL
	}
	return ""
}

// How a PostgreSQL command reached the server (PostgresCommand.Flow).
const (
	FlowSimple   = "simple"   // a Query message
	FlowExtended = "extended" // Parse, then Bind and Execute
	FlowFunction = "function" // a fast-path FunctionCall message
)

// Step values of an extended-protocol PostgresCommand.
const (
	StepParse   = "parse"   // a statement prepared, nothing run yet
	StepExecute = "execute" // a portal run
)

// PostgresCommand is the body of a command sent over the PostgreSQL wire
// protocol.
type PostgresCommand struct {
	Flow string `json:"flow"` // FlowSimple | FlowExtended | FlowFunction
	// Step is the extended-protocol message: StepParse or StepExecute.
	// Empty for the other flows.
	Step string `json:"step,omitempty"`
	SQL  string `json:"sql"`
	// Raw holds the statement's bytes when they are not valid UTF-8 (such
	// a statement is always refused); SQL is then only an approximation.
	Raw       []byte  `json:"raw,omitempty"`
	Statement string  `json:"statement,omitempty"` // prepared statement name (extended)
	Portal    string  `json:"portal,omitempty"`
	Params    []Param `json:"params,omitempty"`
}

// Param is one bound parameter value as the client sent it.
type Param struct {
	Null   bool   `json:"null,omitempty"`
	Format string `json:"format,omitempty"` // "text" (default) or "binary"
	Value  string `json:"value,omitempty"`  // text as is; binary as base64
	// Encoding is "base64" for a text value that is not valid UTF-8,
	// recorded as the base64 of its bytes.
	Encoding string `json:"encoding,omitempty"`
}

// Result closes one statement of a command.
type Result struct {
	Command    uint64         `json:"command"` // Command.ID this result belongs to
	Tag        string         `json:"tag,omitempty"`
	Rows       int64          `json:"rows"`
	Bytes      int64          `json:"bytes"` // bytes forwarded to the client for this statement
	DurationUS int64          `json:"duration_us"`
	Error      *SQLError      `json:"error,omitempty"`
	Suspended  bool           `json:"suspended,omitempty"` // portal suspended (Execute row limit reached)
	Masked     []MaskedColumn `json:"masked,omitempty"`
}

// SQLError is an ErrorResponse, by SQLSTATE and message.
type SQLError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Source  string `json:"source"` // upstream | phigate
}

// MaskedColumn says what masking did to a result column: which rule (or
// "derived:RULE" for a value computed from masked columns, "classify:TYPE",
// "detect", "withhold") and how many values it changed, read and found
// clean, or passed without reading them (and why).
type MaskedColumn struct {
	Column  string   `json:"column"`            // output name
	Source  string   `json:"source,omitempty"`  // schema.table.column when it is one unchanged
	Derived []string `json:"derived,omitempty"` // the masked base columns a computed value derives from
	Rule    string   `json:"rule"`
	Action  string   `json:"action"`
	Values  int64    `json:"values"`            // values masked (replaced or made NULL)
	Scanned int64    `json:"scanned,omitempty"` // values the detectors read and found nothing in
	Passed  int64    `json:"passed,omitempty"`  // values passed without being fully read
	Reason  string   `json:"reason,omitempty"`  // why values were withheld or passed
}

// CopyData is a slice of a COPY FROM STDIN stream.
type CopyData struct {
	Command uint64 `json:"command"`
	Offset  int64  `json:"offset"`
	Data    []byte `json:"data"` // base64 in JSON
}

// ProtocolError records input that phigate refused as malformed.
type ProtocolError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// MaskKey is a session's data key sealed (HPKE) to an auditor key.
type MaskKey struct {
	Auditor string `json:"auditor"` // fingerprint of the auditor public key
	Wrapped []byte `json:"wrapped"`
}

// MaskProof proves a batch of masked values of one statement: for each, the
// rule that masked it, where, a keyed hash of the raw bytes, and the raw
// bytes sealed under the session's data key. What the agent received is
// what the rule produces from the raw bytes. The layout is columnar so that
// proving a bulk read costs tens of bytes per value, not hundreds.
type MaskProof struct {
	Command   uint64 `json:"command"`
	Statement int    `json:"statement"` // statement index within the command
	// Phase is ChangeBefore or ChangeAfter for values of a change event's
	// rows (Spans then count rows of that event); empty for the
	// statement's result.
	Phase string      `json:"phase,omitempty"`
	Rules []ProofRule `json:"rules"`
	// Spans are the masked values in order: [row (from 1), index into
	// Rules, start, end (byte offsets in the raw value)].
	Spans [][4]int64 `json:"spans"`
	// RawHMAC holds each span's keyed hash (32 bytes), in span order.
	RawHMAC []byte `json:"raw_hmac"`
	// Sealed is every span's raw bytes, each preceded by its length as a
	// uvarint, sealed together (AES-256-GCM) under the session's data key.
	Sealed []byte `json:"sealed"`
}

// ProofRule is what masked a column's values: a rule and its action, and for
// detected spans the entity type and detector.
type ProofRule struct {
	Column   int    `json:"column"`
	Rule     string `json:"rule"`
	Action   string `json:"action"`
	Type     string `json:"type,omitempty"`
	Detector string `json:"detector,omitempty"`
}

// Unseal records that an auditor unsealed raw values of a session.
type Unseal struct {
	Auditor string `json:"auditor"`
	Session string `json:"session"`
	Reason  string `json:"reason,omitempty"`
	Values  int    `json:"values"`
	Done    bool   `json:"done,omitempty"` // false: intent, written before anything is shown
}

// PolicyChange records a policy revision a node stored in the cluster
// state: the document itself stays there (passwords sealed); its digest
// here ties the two together.
type PolicyChange struct {
	Revision  uint64 `json:"revision"`
	Base      uint64 `json:"base,omitempty"` // the revision it was applied on (0: whatever was current)
	SHA256    string `json:"sha256"`
	AppliedBy string `json:"applied_by"`
}

// Cancel records why phigate asked the target to cancel a running command.
type Cancel struct {
	Reason string `json:"reason"` // client cancel request | client disconnected
}

// Steps of an approval (Approval.Step).
const (
	ApprovalRequested   = "requested"   // a request filed; the command waits (hold) or was refused (fail-fast)
	ApprovalVote        = "vote"        // an approver's vote that did not decide
	ApprovalApproved    = "approved"    // decided: the command runs next
	ApprovalDenied      = "denied"      // decided: the command was refused
	ApprovalExpired     = "expired"     // nobody decided in time: refused
	ApprovalWithdrawn   = "withdrawn"   // the agent left or cancelled while it waited
	ApprovalAbandoned   = "abandoned"   // the request was abandoned: the node holding it lost it
	ApprovalPreapproved = "preapproved" // run under an earlier approval (a fail-fast request, or a time-boxed grant)
	ApprovalUnavailable = "unavailable" // refused: the cluster's approvals could not be reached
)

// Approval is one step of the approval of a command (Command, the id of
// the command event it is for). By names the approvers whose votes it
// records, Reason is theirs (or, for requested, the agent's stated
// reason); Scope and Until say what an approval grants.
type Approval struct {
	Request   string   `json:"request"`
	Step      string   `json:"step"`
	Command   uint64   `json:"command"`
	Rule      string   `json:"rule,omitempty"`
	Matched   []string `json:"matched,omitempty"`
	Approvers []string `json:"approvers,omitempty"` // groups that may decide
	Required  int      `json:"required,omitempty"`
	Mode      string   `json:"mode,omitempty"`
	By        []string `json:"by,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Scope     string   `json:"scope,omitempty"`
	Until     string   `json:"until,omitempty"` // RFC 3339
	At        string   `json:"at,omitempty"`    // when it was decided, on the deciding node (RFC 3339)
	Node      string   `json:"node,omitempty"`  // the deciding node
}

// SessionEnd closes a recording.
type SessionEnd struct {
	Reason     string `json:"reason"` // terminate | client closed | upstream closed | protocol error | node shutdown | recovered
	Commands   uint64 `json:"commands"`
	DurationUS int64  `json:"duration_us"`
}
