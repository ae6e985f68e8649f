package ship

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
	"github.com/phigate/phigate/storage/spool"
)

// tickRig is a spool with n live sessions and a shipper over it whose
// clock moves by DefaultTick per step, with the upload driven in the
// caller's goroutine (no Run): what one node's shipper does per tick, in
// one place a benchmark or strace can observe.
type tickRig struct {
	sp     *spool.Spool
	s      *Shipper
	logs   []*spool.Log
	chains []*record.Chain
	sizes  []int64
	clock  time.Time
	frame  []byte

	tickTime, upTime time.Duration // spent in Tick, and in uploads
	cpu              time.Duration // the process's CPU time (user and system) during steps
	objects          int           // objects uploaded
	mark             bool          // steps are marked for strace (not the rig's own)
}

func newTickRig(tb testing.TB, sessions int) *tickRig {
	tb.Helper()
	dir := tb.TempDir()
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(dir, "recordings")})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	spDone := make(chan error, 1)
	go func() { spDone <- sp.Run(ctx) }()
	store, err := blob.NewFS(filepath.Join(dir, "store"))
	if err != nil {
		tb.Fatal(err)
	}
	auditor, err := proof.GenerateAuditorKey()
	if err != nil {
		tb.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	r := &tickRig{sp: sp, clock: time.Date(2025, 11, 20, 10, 0, 0, 0, time.UTC)}
	s, err := New(Config{Node: "n1", Dir: filepath.Join(dir, "ship"), Spool: sp, Store: store,
		Signer: chunk.NewSigner(priv), Auditor: func() *ecdh.PublicKey { return auditor.PublicKey() },
		Now: func() time.Time { return r.clock }})
	if err != nil {
		tb.Fatal(err)
	}
	r.s = s
	tb.Cleanup(func() {
		cancel()
		<-spDone
		sp.Close()
		s.led.close()
	})
	for i := 0; i < sessions; i++ {
		id := fmt.Sprintf("bench-%05d", i)
		l, err := sp.Create(id)
		if err != nil {
			tb.Fatal(err)
		}
		r.logs = append(r.logs, l)
		r.chains = append(r.chains, record.NewChain(id))
		r.sizes = append(r.sizes, 0)
		r.append(tb, i, &record.Event{Kind: record.KindSessionStart, Identity: "agent-7", Resource: "ehr",
			Start: &record.SessionStart{Protocol: "postgres", IdentityKind: "agent"}})
	}
	r.settle(tb)
	// Every session's start is read, sealed (1 s later) and uploaded: the
	// steady state of a node whose sessions run.
	for range 6 {
		r.step(tb)
	}
	r.tickTime, r.upTime, r.cpu, r.objects = 0, 0, 0, 0
	r.mark = true
	return r
}

// append records ev in session i without waiting.
func (r *tickRig) append(tb testing.TB, i int, ev *record.Event) {
	ev.Session, ev.Node, ev.Time = r.logs[i].ID(), "n1", r.clock
	f, err := r.chains[i].Seal(r.frame[:0], ev)
	if err != nil {
		tb.Fatal(err)
	}
	r.frame = f
	if _, err := r.logs[i].AppendLazy(f); err != nil {
		tb.Fatal(err)
	}
	r.sizes[i] += int64(len(f))
}

// commands records n command/result pairs in every session.
func (r *tickRig) commands(tb testing.TB, n int) {
	for i := range r.logs {
		for j := 0; j < n; j++ {
			r.append(tb, i, &record.Event{Kind: record.KindCommand, Identity: "agent-7", Resource: "ehr",
				Command: &record.Command{ID: uint64(j), Protocol: record.ProtocolPostgres, Decision: "allow", Classes: []string{"read"},
					Postgres: &record.PostgresCommand{Flow: record.FlowSimple, SQL: "SELECT abalance FROM pgbench_accounts WHERE aid = 4711"}}})
			r.append(tb, i, &record.Event{Kind: record.KindResult, Identity: "agent-7", Resource: "ehr",
				Result: &record.Result{Command: uint64(j), Tag: "SELECT 1", Rows: 1, Bytes: 12}})
		}
	}
}

// settle waits until every frame appended is in its session file.
func (r *tickRig) settle(tb testing.TB) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		done := true
		for i, o := range r.sp.OpenSessions() {
			if o.Applied < r.sizes[i] {
				done = false
				break
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal("the spool did not apply the frames")
		}
		runtime.Gosched()
	}
}

// step is one tick of the shipper: seal, make durable, upload.
func (r *tickRig) step(tb testing.TB) {
	r.clock = r.clock.Add(DefaultTick)
	// Markers for a tracer (strace -f): the system calls between them are
	// the step's.
	if r.mark {
		syscall.Access("/ship-bench-step-start", 0)
		defer syscall.Access("/ship-bench-step-end", 0)
	}
	cpu0 := processCPU()
	defer func() { r.cpu += processCPU() - cpu0 }()
	t0 := time.Now()
	if err := r.s.Tick(); err != nil {
		tb.Fatal(err)
	}
	t1 := time.Now()
	r.tickTime += t1.Sub(t0)
	before := r.s.uploaded.Load()
	ticks, _, err := listSegments(r.s.cfg.Dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, t := range ticks {
		if err := r.s.ship(context.Background(), t); err != nil {
			tb.Fatal(err)
		}
	}
	r.upTime += time.Since(t1)
	r.objects += int(r.s.uploaded.Load() - before)
}

// processCPU is the CPU time the process used so far. The spool is idle
// while a step runs (settle waited for it), so during a step it is the
// shipper's.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTick measures one shipper tick (seal, segment, ledger, upload
// into a directory store) over live sessions that each got `pairs`
// command/result pairs since the last tick; chunks are sealed every fifth
// tick (1 s of events). Recording is outside the timer. Each step is
// marked for strace -f (a faccessat of /ship-bench-step-start, then of
// /ship-bench-step-end): the calls between the marks are the shipper's.
func BenchmarkTick(b *testing.B) {
	for _, c := range []struct{ sessions, pairs int }{{100, 2}, {1000, 2}, {1000, 0}} {
		for _, tick := range []bool{true, false} {
			name := fmt.Sprintf("sessions=%d/pairs=%d/tick=%v", c.sessions, c.pairs, tick)
			b.Run(name, func(b *testing.B) {
				r := newTickRig(b, c.sessions)
				b.ResetTimer()
				for b.Loop() {
					b.StopTimer()
					r.commands(b, c.pairs)
					r.settle(b)
					b.StartTimer()
					if tick {
						r.step(b)
					}
				}
				b.ReportMetric(float64(r.tickTime.Nanoseconds())/float64(b.N), "tick-ns/op")
				b.ReportMetric(float64(r.upTime.Nanoseconds())/float64(b.N), "upload-ns/op")
				b.ReportMetric(float64(r.objects)/float64(b.N), "objects/op")
				b.ReportMetric(float64(r.cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
