package blob_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/phigate/phigate/storage/blob"
)

// BenchmarkFSPut stores what a shipper tick of 20 sessions makes (a chunk
// and a manifest each, in a directory per session) into a directory
// store: one Put after another, or one PutMany.
func BenchmarkFSPut(b *testing.B) {
	for _, many := range []bool{false, true} {
		b.Run(fmt.Sprintf("many=%v", many), func(b *testing.B) {
			s, err := blob.NewFS(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			chunk, man := make([]byte, 2000), make([]byte, 400)
			round := 0
			for b.Loop() {
				var objs []blob.Object
				for i := range 20 {
					objs = append(objs, blob.Object{Key: fmt.Sprintf("sessions/s%02d/%08d.chunk", i, round), Data: chunk},
						blob.Object{Key: fmt.Sprintf("sessions/s%02d/%08d.manifest", i, round), Data: man})
				}
				round++
				if many {
					for _, err := range s.PutMany(ctx, objs) {
						if err != nil {
							b.Fatal(err)
						}
					}
					continue
				}
				for _, o := range objs {
					if err := s.Put(ctx, o.Key, o.Data, o.Opts); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/40, "ns/object")
		})
	}
}
