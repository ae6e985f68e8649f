//go:build !phigate_bench

package node

// shippingOff is false in product binaries: recordings are always shipped
// (see ship_off.go for the benchmark build).
func shippingOff() bool { return false }
