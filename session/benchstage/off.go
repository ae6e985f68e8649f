//go:build !phigate_bench

package benchstage

// Name is the stage in force: always empty in the product build.
const Name = ""

// Relay reports whether sessions relay bytes only, after login.
func Relay() bool { return false }

// NoRecord reports whether nothing is recorded (classification goes on).
func NoRecord() bool { return false }

// NoFsync reports whether the spool skips fdatasync.
func NoFsync() bool { return false }
