// Package nodeprof serves Go's profiles from a phigate node that
// bench/sessions built with it: the benchmark adds one file importing this
// package to node/cmd/phigate with go build -overlay, so the tree and the
// product binary never contain it (production code imports nothing from
// bench/, and internal/depcheck checks the tree).
//
// When PHIGATE_BENCH_PROFILE_ADDR is set (host:port, loopback), the node
// serves there, without TLS:
//
//   - /heap: the live heap (after two collections) as JSON, one record per
//     allocation stack, its bytes and objects scaled from the sampled ones
//     as pprof does, and the stack's function names, innermost first;
//   - /debug/pprof/...: net/http/pprof (CPU profile at /debug/pprof/profile).
//
// It also samples one allocation per 4 KiB (MemProfileRate; Go's default is
// 512 KiB), so that the heap profile of a few thousand sessions counts
// each session's buffers exactly rather than estimating them. Unset, it
// does nothing.
package nodeprof

import (
	"encoding/json"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
)

// Env names the address to serve on.
const Env = "PHIGATE_BENCH_PROFILE_ADDR"

// Record is the live heap of one allocation stack.
type Record struct {
	Bytes   float64  `json:"bytes"`
	Objects float64  `json:"objects"`
	Stack   []string `json:"stack"` // function names, innermost first
}

func init() {
	addr := os.Getenv(Env)
	if addr == "" {
		return
	}
	runtime.MemProfileRate = 4096
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Printf("nodeprof: %v", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/heap", serveHeap)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(ln, mux) }()
}

func serveHeap(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Heap())
}

// Heap is the live heap by allocation stack. The runtime's profile is
// as of the last completed collection, and published one cycle late:
// two collections first make it current.
func Heap() []Record {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	for n := 1024; ; n *= 2 {
		recs = make([]runtime.MemProfileRecord, n)
		got, ok := runtime.MemProfile(recs, false)
		if ok {
			recs = recs[:got]
			break
		}
	}
	rate := float64(runtime.MemProfileRate)
	out := make([]Record, 0, len(recs))
	for _, r := range recs {
		objects, bytes := float64(r.InUseObjects()), float64(r.InUseBytes())
		if objects == 0 || bytes == 0 {
			continue
		}
		// A sampled allocation of size s stands for 1/(1-e^(-s/rate)) of
		// them (runtime/pprof's scaleHeapSample).
		if rate > 1 {
			scale := 1 / (1 - math.Exp(-bytes/objects/rate))
			objects, bytes = objects*scale, bytes*scale
		}
		rec := Record{Bytes: bytes, Objects: objects}
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			rec.Stack = append(rec.Stack, f.Function)
			if !more {
				break
			}
		}
		out = append(out, rec)
	}
	return out
}
