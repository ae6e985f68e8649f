package pgwire

// The fixed statements phigate runs for snapshots, for the tests that hold
// the server's log against the recording.
const (
	ResolveSQLForTest = resolveSQL
	GuardSQLForTest   = guardSQL
)
