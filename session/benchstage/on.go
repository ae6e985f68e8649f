//go:build phigate_bench

package benchstage

import (
	"fmt"
	"os"
)

// Name is the stage in force, from PHIGATE_BENCH_STAGE.
var Name = stage()

func stage() string {
	s := os.Getenv("PHIGATE_BENCH_STAGE")
	switch s {
	case "", "relay", "classify", "nofsync":
		return s
	}
	panic(fmt.Sprintf("benchstage: unknown PHIGATE_BENCH_STAGE %q (relay, classify, nofsync or empty)", s))
}

// Relay reports whether sessions relay bytes only, after login.
func Relay() bool { return Name == "relay" }

// NoRecord reports whether nothing is recorded (classification goes on).
func NoRecord() bool { return Name == "relay" || Name == "classify" }

// NoFsync reports whether the spool skips fdatasync.
func NoFsync() bool { return Name != "" }
