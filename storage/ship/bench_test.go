package ship_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/ship"
)

// BenchmarkSealAndShip measures the shipper's cost per recorded byte:
// sessions of COPY-like events (8 KiB of data each) recorded into a real
// spool, then sealed, made durable and uploaded to a directory store. MB/s
// is of recorded frames.
func BenchmarkSealAndShip(b *testing.B) {
	r := newRig(b, nil)
	row := strings.Repeat("1042\tMateo Williams\t1978-05-31\t503-555-0135\tPortland\t97201\tfollow-up in 2 weeks\n", 120)[:8192]
	cfg := r.config(func(c *ship.Config) { c.Tick = time.Hour }) // ticks driven below
	s, err := ship.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	var raw int64
	// Recording costs the same with shipping on or off: only the shipper's
	// own work is timed.
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		rs := r.create(fmt.Sprintf("bench-%06d", i))
		rs.add(b, &record.Event{Kind: record.KindSessionStart, Identity: "agent-7", Resource: "ehr", Start: &record.SessionStart{Protocol: "postgres"}})
		for j := 0; j < 256; j++ {
			rs.addLazy(b, &record.Event{Kind: record.KindCopyData, Identity: "agent-7", Resource: "ehr", Copy: &record.CopyData{Command: 1, Offset: int64(j * len(row)), Data: []byte(row)}})
		}
		rs.add(b, &record.Event{Kind: record.KindSessionEnd, Identity: "agent-7", Resource: "ehr", End: &record.SessionEnd{Reason: "terminate"}})
		if err := rs.log.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		raw += int64(len(rs.bytes))
		b.StartTimer()
		if err := s.Tick(); err != nil {
			b.Fatal(err)
		}
	}
	for !s.Drained() {
		if err := s.Tick(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	b.SetBytes(raw / int64(b.N))
}
