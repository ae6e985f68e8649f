package archive_test

import (
	"testing"
	"time"

	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
)

// BenchmarkVerify verifies a store of 16 sessions of 20 000 events each
// (1 MiB chunks of frames, as the node cuts them), with their manifests,
// index entries and digests; MB/s is of the stored chunk bytes. Against a
// local directory it measures the verifier (hashing, signatures); against
// MinIO on loopback, the store's round trips as well.
func BenchmarkVerify(b *testing.B) {
	for _, tc := range []struct {
		name  string
		store func(testing.TB) blob.Store
	}{
		{"fs", func(t testing.TB) blob.Store { return newFS(t) }},
		{"s3", func(t testing.TB) blob.Store { return newS3(t, false) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := newWorld(b, tc.store(b))
			w.node("n1", t0.Add(-24*time.Hour), time.Time{})
			var stored int64
			for i := range 16 {
				s := w.session("n1", t0.Add(time.Duration(i)*3*time.Minute), 20000, 5*time.Millisecond, 1<<20)
				stored += s.entry.Stored
			}
			w.digestsFor("n1", t0, t0.Add(2*time.Hour))
			keys := w.chunkKeys()
			opts := archive.Options{From: t0, To: t0.Add(2 * time.Hour), Now: t0.Add(3 * time.Hour)}
			b.SetBytes(stored)
			b.ResetTimer()
			for b.Loop() {
				r, err := archive.Verify(w.ctx, w.store, keys, opts)
				if err != nil || !r.OK() || r.Bytes != stored {
					b.Fatalf("%v, %d bytes, findings:\n%s", err, r.Bytes, findings(r))
				}
			}
		})
	}
}
