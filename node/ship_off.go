//go:build phigate_bench

package node

import "os"

// shippingOff is for benchmarks only (a binary built with -tags
// phigate_bench): PHIGATE_BENCH_SHIPPING=off leaves recordings in the
// spool, to measure what sealing and shipping cost. Product binaries are
// built without the tag and always ship.
func shippingOff() bool { return os.Getenv("PHIGATE_BENCH_SHIPPING") == "off" }
