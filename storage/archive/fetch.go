package archive

import (
	"context"
	"crypto/sha256"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
)

// DefaultConcurrency is the number of Gets in flight when none is set.
const DefaultConcurrency = 16

// readAheadBytes caps, by listed size, what one ordered fetch holds ahead
// of its reader (at least one object, however large).
const readAheadBytes = 8 << 20

// fetcher gets objects with at most cap(slots) Gets in flight across every
// ordered fetch it serves, so that many sessions read at once still put a
// fixed load on the store.
type fetcher struct {
	store blob.Store
	slots chan struct{}
}

func newFetcher(store blob.Store, concurrency int) *fetcher {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	return &fetcher{store: store, slots: make(chan struct{}, concurrency)}
}

// get fetches one object, retrying what blob.Retryable says may pass
// (an overloaded or briefly unreachable store, a corrupted transfer).
func (f *fetcher) get(ctx context.Context, key string) ([]byte, error) {
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		b, err := f.store.Get(ctx, key)
		if err == nil || attempt == 4 || !blob.Retryable(err) {
			return b, err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		delay *= 3
	}
}

// ordered fetches objs and yields them in the order given, with up to the
// fetcher's concurrency in flight and readAheadBytes held ahead of the
// reader. A failed Get is yielded with its key and the error; the reader
// decides whether to go on. Breaking out of the loop cancels what is in
// flight.
func (f *fetcher) ordered(ctx context.Context, objs []blob.Info) iter.Seq2[chunk.Object, error] {
	return func(yield func(chunk.Object, error) bool) {
		var wg sync.WaitGroup
		defer wg.Wait()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // before wg.Wait: in-flight Gets end early

		type result struct {
			b   []byte
			err error
		}
		var pending []chan result
		var ahead int64
		next := 0
		for i := range objs {
			for next < len(objs) && (len(pending) == 0 ||
				(len(pending) < cap(f.slots) && ahead+objs[next].Size <= readAheadBytes)) {
				select {
				case f.slots <- struct{}{}:
				case <-ctx.Done():
					yield(chunk.Object{Key: objs[i].Key}, ctx.Err())
					return
				}
				ch := make(chan result, 1)
				key := objs[next].Key
				wg.Add(1)
				go func() {
					defer wg.Done()
					b, err := f.get(ctx, key)
					<-f.slots
					ch <- result{b, err}
				}()
				pending = append(pending, ch)
				ahead += objs[next].Size
				next++
			}
			r := <-pending[0]
			pending = pending[1:]
			ahead -= objs[i].Size
			if r.err != nil {
				r.err = fmt.Errorf("archive: get %s: %w", objs[i].Key, r.err)
			}
			if !yield(chunk.Object{Key: objs[i].Key, Bytes: r.b}, r.err) {
				return
			}
		}
	}
}

func sha256Sum(b []byte) [chunk.HashSize]byte { return sha256.Sum256(b) }
