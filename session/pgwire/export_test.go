package pgwire

// The fixed statements phigate runs for snapshots, for the tests that hold
// the server's log against the recording.
const (
	ResolveSQLForTest = resolveSQL
)

// IsGuardForTest reports whether sql is one of phigate's guard statements.
func IsGuardForTest(sql string) bool {
	for n := 1; n <= 64; n++ {
		if sql == guardSQL(n) {
			return true
		}
	}
	return false
}
