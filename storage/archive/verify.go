package archive

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/phigate/phigate/storage"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
)

// Problems Verify reports beside storage/chunk's.
const (
	// ProblemIndex: the index disagrees with the store: an entry whose
	// chunks, hashes, node or event count are not what the store holds,
	// entries of one session that differ from day to day, a day the
	// session spanned without its entry, a closed session with no entry,
	// or an index object that does not parse.
	ProblemIndex chunk.Problem = "index-mismatch"
	// ProblemDeleted: a session that digests list, or the index names, of
	// which the store holds no object at all: deleted whole.
	ProblemDeleted chunk.Problem = "deleted-session"
)

// Defaults of Options.
const (
	// DefaultDigestGrace: the digest of an hour is due this long after the
	// hour ends (a node writes it once the hour is over and its chunks are
	// shipped).
	DefaultDigestGrace = 15 * time.Minute
	// DefaultWindowBytes: a session's chunks are verified in windows of
	// about this many stored bytes, so that a session of any size is
	// verified in bounded memory.
	DefaultWindowBytes = 16 << 20
)

// Options says what Verify checks.
type Options struct {
	// From and To bound the range [From, To): the sessions the index
	// lists as running in it, and the hours whose digests are checked.
	// Zero To: Now. Zero From: 24 hours before To. With Session set and
	// both zero, the range is the hours the session's chunks were sealed
	// in.
	From, To time.Time
	// Session, when set, verifies that session only (its chunks,
	// manifests and index entries, and the digests of the nodes that
	// sealed it over the range).
	Session string
	// Progress, when set, is called from Verify's goroutine after each
	// session with the sessions done and the total.
	Progress func(done, total int)
	// Now is when the check runs, for the rule of due digests. Zero:
	// time.Now().
	Now time.Time
	// DigestGrace is how long after an hour ends its digest is due. An
	// hour whose digest is not due yet is not a gap when it has none,
	// and the chunks sealed in it are not unlisted. Zero:
	// DefaultDigestGrace.
	DigestGrace time.Duration
	// Concurrency caps the Gets in flight. Zero: DefaultConcurrency.
	Concurrency int
	// WindowBytes is the stored size of the windows a session's chunks
	// are verified in. Zero: DefaultWindowBytes.
	WindowBytes int
}

// Report is what Verify found.
type Report struct {
	From, To time.Time // the range verified
	Now      time.Time // when: the digests of hours ending before DigestsDue are due
	// DigestsDue: the digest of every hour that ended at or before it
	// must exist (Now - DigestGrace).
	DigestsDue time.Time
	Sessions   int   // sessions verified
	Chunks     int   // chunk objects read
	Manifests  int   // manifest objects read
	Bytes      int64 // stored bytes of the chunks read
	Digests    int   // digests that verified, in the range
	Anchors    int   // cluster-state anchors compared (phigate audit verify --api with a token)
	// Open are sessions with neither a closing chunk nor an index entry:
	// still being recorded (the shipper writes the index entry when a
	// session ends). Not findings: removing a session's end shows in the
	// digests of the hours it was sealed in, once they are due.
	Open     []string
	Nodes    []NodeReport
	Findings []chunk.Finding
	Elapsed  time.Duration
}

// NodeReport is the digest chain of one node over the range.
type NodeReport struct {
	Node    string
	Keys    int // published keys of the node
	Hours   int // hours whose digest was expected (keys valid, due or present)
	Digests int // digests that verified
}

// OK says everything verified.
func (r *Report) OK() bool { return len(r.Findings) == 0 }

// Counts returns the number of findings by problem.
func (r *Report) Counts() map[chunk.Problem]int {
	out := map[chunk.Problem]int{}
	for _, f := range r.Findings {
		out[f.Problem]++
	}
	return out
}

// Verify checks a store with the published node keys only (it needs no
// private key and reads no payload in clear):
//
//   - every session in the range (from the index, and every session a
//     digest of the range lists): chunk.VerifySession over its chunks and
//     manifests; its index entries against what the store holds (chunk
//     objects, their SHA-256, nodes, event count); a session listed in a
//     digest or named by the index of which nothing is left is
//     ProblemDeleted;
//   - for each node with published keys or sessions in the range:
//     chunk.VerifyDigests over the hours of the range in which one of the
//     node's keys is valid (by the hour's start, the instant its digest is
//     signed for) and whose digest is due (or present), so that a node
//     that joined later or left earlier shows no gap; the digest of the
//     hour before a run of hours is read, when present, to check the
//     first link;
//   - chunk.CheckListed: every chunk a digest lists is present with its
//     hash; a chunk present is ProblemUnlisted only when the digest of
//     the hour its manifest says it was sealed in verified and does not
//     list it (so chunks of hours whose digest is not due yet, or not in
//     the range, are not reported).
//
// Objects are read with bounded concurrency and a session's chunks in
// windows (Options.WindowBytes), so memory stays bounded whatever the
// store's size; the digests of the range are held while sessions are
// checked. An error means the store could not be read (nothing is
// concluded); problems with what it holds are findings.
func Verify(ctx context.Context, store blob.Store, keys chunk.Keys, opts Options) (*Report, error) {
	started := time.Now()
	v := &verifier{
		a:       &Archive{Store: store, Concurrency: opts.Concurrency},
		f:       newFetcher(store, opts.Concurrency),
		keys:    keys,
		opts:    opts,
		index:   map[string][]indexed{},
		listed:  map[string][]*chunk.Digest{},
		checked: map[string]map[int64]bool{},
		nodes:   map[string]bool{},
	}
	if v.opts.Now.IsZero() {
		v.opts.Now = started
	}
	if v.opts.DigestGrace <= 0 {
		v.opts.DigestGrace = DefaultDigestGrace
	}
	if v.opts.WindowBytes <= 0 {
		v.opts.WindowBytes = DefaultWindowBytes
	}
	r := &Report{Now: v.opts.Now.UTC(), DigestsDue: v.opts.Now.Add(-v.opts.DigestGrace).UTC()}
	v.report = r
	for _, k := range keys {
		v.nodes[k.Node] = true
	}

	var sessions []string
	var err error
	if opts.Session != "" {
		sessions, err = v.prepareSession(ctx)
	} else {
		sessions, err = v.prepareRange(ctx)
	}
	if err != nil {
		return nil, err
	}
	r.From, r.To = v.from, v.to

	nodes := make([]string, 0, len(v.nodes))
	for n := range v.nodes {
		if n != "" {
			nodes = append(nodes, n)
		}
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		if err := v.nodeDigests(ctx, n); err != nil {
			return nil, err
		}
	}
	sessions = v.addListedSessions(sessions)

	if err := v.sessions(ctx, sessions); err != nil {
		return nil, err
	}
	sort.SliceStable(r.Findings, func(i, j int) bool { return findingLess(&r.Findings[i], &r.Findings[j]) })
	sort.Strings(r.Open)
	r.Elapsed = time.Since(started)
	return r, nil
}

type indexed struct {
	key string
	day time.Time
	e   *IndexEntry
}

type verifier struct {
	a      *Archive
	f      *fetcher
	keys   chunk.Keys
	opts   Options
	report *Report

	from, to time.Time
	// indexDays are the days whose index was listed whole (range mode).
	indexDays map[int64]bool
	index     map[string][]indexed
	nodes     map[string]bool
	// listed holds, per session, the verified digests of the range that
	// list it, reduced to its entries.
	listed map[string][]*chunk.Digest
	// checked: node -> hour (Unix) -> the node's digest of that hour
	// verified, so its listing is known.
	checked map[string]map[int64]bool
	// findings are added under mu once sessions run in parallel.
	mu sync.Mutex
}

func (v *verifier) add(fs ...chunk.Finding) {
	v.mu.Lock()
	v.report.Findings = append(v.report.Findings, fs...)
	v.mu.Unlock()
}

func finding(p chunk.Problem, object, format string, args ...any) chunk.Finding {
	return chunk.Finding{Problem: p, Seq: -1, Event: -1, Object: object, Detail: fmt.Sprintf(format, args...)}
}

// prepareRange reads the index of the days the range touches and returns
// the sessions it lists as running in the range.
func (v *verifier) prepareRange(ctx context.Context) ([]string, error) {
	v.to = v.opts.To
	if v.to.IsZero() {
		v.to = v.opts.Now
	}
	v.from = v.opts.From
	if v.from.IsZero() {
		v.from = v.to.Add(-24 * time.Hour)
	}
	v.from, v.to = v.from.UTC(), v.to.UTC()
	if !v.from.Before(v.to) {
		return nil, fmt.Errorf("archive: verify: empty range %s .. %s", v.from.Format(time.RFC3339), v.to.Format(time.RFC3339))
	}
	v.indexDays = map[int64]bool{}
	for _, d := range Days(v.from, v.to.Add(-time.Nanosecond)) {
		v.indexDays[d.Unix()] = true
	}
	inRange := map[string]bool{}
	err := v.a.indexEntries(ctx, v.from, v.to, func(key string, e *IndexEntry, err error) error {
		if err != nil {
			f := finding(ProblemIndex, key, "%v", err)
			if _, s, ok := ParseIndexKey(key); ok {
				f.Session = s
			}
			v.add(f)
			return nil
		}
		day, _, _ := ParseIndexKey(key)
		v.index[e.Session] = append(v.index[e.Session], indexed{key, day, e})
		v.nodes[e.Node] = true
		for _, c := range e.Chunks {
			v.nodes[c.Node] = true
		}
		if overlaps(e, v.from, v.to) {
			inRange[e.Session] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(inRange))
	for s := range inRange {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// prepareSession places the one session asked for in time (from its
// manifests, else its chunks' headers, unless a range is given) and reads
// its index entries for the days around it.
func (v *verifier) prepareSession(ctx context.Context) ([]string, error) {
	s := v.opts.Session
	l, err := v.a.List(ctx, s)
	if err != nil {
		return nil, err
	}
	var first, last time.Time
	note := func(t time.Time, node string) {
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
		v.nodes[node] = true
	}
	for o, err := range v.f.ordered(ctx, l.Manifests) {
		if err != nil {
			return nil, err
		}
		if m, err := chunk.DecodeManifest(o.Bytes); err == nil {
			note(m.SealedAt, m.Node)
		}
	}
	if first.IsZero() && len(l.Chunks) > 0 {
		ends := []blob.Info{l.Chunks[0], l.Chunks[len(l.Chunks)-1]}
		for o, err := range v.f.ordered(ctx, ends) {
			if err != nil {
				return nil, err
			}
			if h, ok := peekHeader(o.Bytes); ok {
				note(h.FirstTime, h.Node)
				note(h.LastTime, h.Node)
			}
		}
	}
	v.from, v.to = v.opts.From.UTC(), v.opts.To.UTC()
	switch {
	case !v.opts.From.IsZero() && !v.opts.To.IsZero():
	case !v.opts.From.IsZero() || !v.opts.To.IsZero():
		return nil, errors.New("archive: verify: give both From and To, or neither")
	case first.IsZero():
		return nil, fmt.Errorf("archive: session %s: nothing in the store to place it in time (give a range to look for it in the digests): %w", s, storage.ErrNotFound)
	default:
		v.from, v.to = first.UTC().Truncate(time.Hour), last.UTC().Truncate(time.Hour).Add(time.Hour)
	}
	if !v.from.Before(v.to) {
		return nil, fmt.Errorf("archive: verify: empty range %s .. %s", v.from.Format(time.RFC3339), v.to.Format(time.RFC3339))
	}
	// Index entries are per day the session spanned; its first event may
	// precede its first seal by a little, hence the hour of margin.
	for _, day := range Days(v.from.Add(-time.Hour), v.to) {
		if err := v.getIndex(ctx, s, day); err != nil {
			return nil, err
		}
	}
	return []string{s}, nil
}

// getIndex reads session's index entry of day, if there is one.
func (v *verifier) getIndex(ctx context.Context, s string, day time.Time) error {
	key := IndexKey(day, s)
	b, err := v.f.get(ctx, key)
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("archive: get %s: %w", key, err)
	}
	e, err := parseIndexObject(chunk.Object{Key: key, Bytes: b})
	if err != nil {
		f := finding(ProblemIndex, key, "%v", err)
		f.Session = s
		v.add(f)
		return nil
	}
	v.mu.Lock()
	v.index[s] = append(v.index[s], indexed{key, day.UTC().Truncate(24 * time.Hour), e})
	v.mu.Unlock()
	return nil
}

// validAt says whether one of node's published keys is valid at t, the
// instant its digest of the hour starting at t is signed for.
func (v *verifier) validAt(node string, t time.Time) bool {
	for _, k := range v.keys {
		if k.Node == node && (k.NotBefore.IsZero() || !t.Before(k.NotBefore)) && (k.NotAfter.IsZero() || t.Before(k.NotAfter)) {
			return true
		}
	}
	return false
}

// due says whether the digest of the hour starting at h must exist by now.
func (v *verifier) due(h time.Time) bool {
	return !h.Add(time.Hour).After(v.report.DigestsDue)
}

// nodeDigests checks node's digest chain over the range: see Verify.
func (v *verifier) nodeDigests(ctx context.Context, node string) error {
	nr := NodeReport{Node: node}
	for _, k := range v.keys {
		if k.Node == node {
			nr.Keys++
		}
	}
	if err := checkSessionID(node); err != nil {
		// Not a name a digest key can hold; nothing to list.
		v.report.Nodes = append(v.report.Nodes, nr)
		return nil
	}
	first := v.from.Truncate(time.Hour)
	before := first.Add(-time.Hour)

	// The node's digests of the hour before the range to its end.
	var infos []blob.Info
	for _, day := range Days(before, v.to.Add(-time.Nanosecond)) {
		list, err := v.a.Store.List(ctx, DigestDayPrefix(node, day))
		if err != nil {
			return fmt.Errorf("archive: list digests of %s: %w", node, err)
		}
		for _, o := range list {
			n, h, ok := ParseDigestKey(o.Key)
			switch {
			case !ok || n != node:
				v.add(finding(chunk.ProblemMalformed, o.Key, "not a digest key phigate writes"))
			case !h.Before(before) && h.Before(v.to):
				infos = append(infos, o)
			}
		}
	}
	present := map[int64]chunk.Object{}
	for o, err := range v.f.ordered(ctx, infos) {
		if err != nil {
			if errors.Is(err, blob.ErrNotFound) {
				continue // gone since listed: a gap, reported below
			}
			return err
		}
		_, h, _ := ParseDigestKey(o.Key)
		present[h.Unix()] = o
		if d, err := chunk.DecodeDigest(o.Bytes); err == nil && (!d.Hour.Equal(h) || d.Node != node) {
			f := finding(chunk.ProblemMismatch, o.Key, "holds the digest of node %q for %s", d.Node, d.Hour.Format(time.RFC3339))
			f.Node, f.Hour = node, h
			v.add(f)
		}
	}

	expected := func(h time.Time) bool {
		_, ok := present[h.Unix()]
		return v.validAt(node, h) && (ok || v.due(h))
	}
	var good []*chunk.Digest
	for h := first; h.Before(v.to); {
		if !expected(h) {
			if o, ok := present[h.Unix()]; ok {
				// A digest for an hour no key of the node covers.
				_, err := chunk.VerifyDigest(o.Bytes, v.keys)
				f := finding(chunk.ProblemUnknownKey, o.Key, "digest for an hour no published key of the node is valid in: %v", err)
				f.Node, f.Hour = node, h
				v.add(f)
			}
			h = h.Add(time.Hour)
			continue
		}
		a := h
		for h.Before(v.to) && expected(h) {
			h = h.Add(time.Hour)
		}
		nr.Hours += int(h.Sub(a) / time.Hour)
		start := a
		if _, ok := present[a.Add(-time.Hour).Unix()]; ok && v.validAt(node, a.Add(-time.Hour)) {
			start = a.Add(-time.Hour) // to check the link of a's digest
		}
		var objs []chunk.Object
		for t := start; t.Before(h); t = t.Add(time.Hour) {
			if o, ok := present[t.Unix()]; ok {
				objs = append(objs, o)
			}
		}
		ds, fs := chunk.VerifyDigests(node, objs, v.keys, start, h)
		v.add(fs...)
		for _, d := range ds {
			if !d.Hour.Before(a) {
				good = append(good, d)
			}
		}
	}
	nr.Digests = len(good)
	v.report.Digests += len(good)
	v.report.Nodes = append(v.report.Nodes, nr)

	hours := map[int64]bool{}
	for _, d := range good {
		hours[d.Hour.Unix()] = true
		bySession := map[string]*chunk.Digest{}
		for _, e := range d.Entries {
			view := bySession[e.Session]
			if view == nil {
				view = &chunk.Digest{Node: d.Node, KeyID: d.KeyID, Hour: d.Hour}
				bySession[e.Session] = view
				v.listed[e.Session] = append(v.listed[e.Session], view)
			}
			view.Entries = append(view.Entries, e)
		}
	}
	v.checked[node] = hours
	return nil
}

// addListedSessions adds to sessions those the digests list (in range
// mode; the one asked for otherwise), refusing ids that name no prefix.
func (v *verifier) addListedSessions(sessions []string) []string {
	if v.opts.Session != "" {
		return sessions
	}
	have := map[string]bool{}
	for _, s := range sessions {
		have[s] = true
	}
	var extra []string
	for s, views := range v.listed {
		if have[s] {
			continue
		}
		if err := checkSessionID(s); err != nil {
			f := finding(chunk.ProblemMalformed, "", "a digest lists session %q: %v", s, err)
			f.Node, f.Hour = views[0].Node, views[0].Hour
			v.add(f)
			continue
		}
		extra = append(extra, s)
	}
	sort.Strings(extra)
	return append(sessions, extra...)
}

// sessionResult is what one session's check adds to the report.
type sessionResult struct {
	chunks, manifests int
	bytes             int64
	open              bool
	err               error
}

// sessions checks each session, several at once.
func (v *verifier) sessions(ctx context.Context, sessions []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := max(1, cap(v.f.slots)/2)
	jobs := make(chan string)
	results := make(chan sessionResult)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				r := v.session(ctx, s)
				select {
				case results <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for _, s := range sessions {
			select {
			case jobs <- s:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	var firstErr error
	done := 0
	if v.opts.Progress != nil {
		v.opts.Progress(0, len(sessions))
	}
	for r := range results {
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
				cancel()
			}
			continue
		}
		done++
		v.report.Sessions++
		v.report.Chunks += r.chunks
		v.report.Manifests += r.manifests
		v.report.Bytes += r.bytes
		if v.opts.Progress != nil {
			v.opts.Progress(done, len(sessions))
		}
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// chunkInfo is what is kept of a chunk once its bytes are dropped.
type chunkInfo struct {
	key    string
	keySeq uint64
	sum    [chunk.HashSize]byte
	header *chunk.Header // nil when it does not decode
}

// session checks one session: see Verify.
func (v *verifier) session(ctx context.Context, s string) sessionResult {
	var res sessionResult
	var out []chunk.Finding
	add := func(f chunk.Finding) {
		f.Session = s
		out = append(out, f)
	}
	defer func() {
		if res.err == nil {
			v.add(out...)
		}
	}()

	l, err := v.a.List(ctx, s)
	if err != nil {
		res.err = err
		return res
	}
	v.mu.Lock()
	entries := v.index[s]
	v.mu.Unlock()
	views := v.listed[s]
	if l.Empty() {
		if len(entries) == 0 && len(views) == 0 {
			res.err = fmt.Errorf("archive: session %s: nothing in the store, the index or the digests of the range: %w", s, storage.ErrNotFound)
			return res
		}
		n := 0
		for _, d := range views {
			n += len(d.Entries)
		}
		f := finding(ProblemDeleted, SessionPrefix(s), "no object of the session is left; %d of its chunks listed in %d digests, %d index entries", n, len(views), len(entries))
		if len(views) > 0 {
			f.Node, f.Hour = views[0].Node, views[0].Hour
		}
		add(f)
		return res
	}
	for _, o := range l.Other {
		add(finding(chunk.ProblemMalformed, o.Key, "an object under the session's prefix that phigate does not write"))
	}

	// Chunks and manifests in key order: a chunk and its manifest are
	// neighbours, so windows never part them.
	objs := append(append([]blob.Info(nil), l.Chunks...), l.Manifests...)
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })

	var (
		infos     []chunkInfo
		manifests = map[uint64]*chunk.Manifest{} // by seq, verified only
		winC      []chunk.Object
		winM      []chunk.Object
		winBytes  int
		winLo     uint64
		winMax    uint64
		firstWin  = true
		seen      = map[string]bool{}
		missing   = map[int64]bool{}
	)
	flush := func(last bool) {
		for _, f := range chunk.VerifySession(s, winC, winM, v.keys) {
			switch {
			case f.Problem == chunk.ProblemTruncated && !last:
				continue
			case f.Problem == chunk.ProblemMissing && !firstWin && f.Seq >= 0 && uint64(f.Seq) < winLo:
				continue // before the window: not looked at here
			case f.Problem == chunk.ProblemMissing:
				if missing[f.Seq] {
					continue
				}
				missing[f.Seq] = true
			}
			id := fmt.Sprintf("%s\x00%d\x00%s\x00%s", f.Problem, f.Seq, f.Object, f.Detail)
			if seen[id] {
				continue // the chunk windows share, reported once
			}
			seen[id] = true
			add(f)
		}
		// The next window starts with this one's last seq, so that its
		// link to the chunk before is checked.
		keep := func(objs []chunk.Object) []chunk.Object {
			var k []chunk.Object
			for _, o := range objs {
				if _, seq, _, _ := ParseSessionObject(o.Key); seq == winMax {
					k = append(k, o)
				}
			}
			return k
		}
		winC, winM = keep(winC), keep(winM)
		winBytes = 0
		for _, o := range winC {
			winBytes += len(o.Bytes)
		}
		winLo, firstWin = winMax, false
	}
	for o, err := range v.f.ordered(ctx, objs) {
		if errors.Is(err, blob.ErrNotFound) {
			add(finding(chunk.ProblemMissing, o.Key, "listed, then gone before it was read"))
			continue
		}
		if err != nil {
			res.err = err
			return res
		}
		_, seq, kind, _ := ParseSessionObject(o.Key)
		if winBytes >= v.opts.WindowBytes && seq > winMax {
			flush(false)
		}
		winMax = max(winMax, seq)
		if kind == "manifest" {
			res.manifests++
			winM = append(winM, o)
			// For locating findings only: VerifySession checks the
			// signature (and reports a bad one) in the window.
			if m, err := chunk.DecodeManifest(o.Bytes); err == nil && m.Session == s && m.Seq == seq {
				manifests[seq] = m
			}
			continue
		}
		res.chunks++
		res.bytes += int64(len(o.Bytes))
		ci := chunkInfo{key: o.Key, keySeq: seq, sum: sha256.Sum256(o.Bytes)}
		o.Sum = &ci.sum
		winC = append(winC, o)
		winBytes += len(o.Bytes)
		if h, ok := peekHeader(o.Bytes); ok {
			ci.header = &h
			if h.Seq != seq && h.Session == s {
				f := finding(chunk.ProblemReordered, o.Key, "stored under the key of chunk %d, holds chunk %d", seq, h.Seq)
				f.Seq, f.Event = int64(h.Seq), int64(h.FirstEvent)
				add(f)
			}
		}
		infos = append(infos, ci)
	}
	flush(true)

	// Locate: the node that sealed each seq, and its first event.
	type place struct {
		node  string
		event int64
	}
	at := map[int64]place{}
	for seq, m := range manifests {
		at[int64(seq)] = place{m.Node, -1}
	}
	closed := false
	for _, ci := range infos {
		if h := ci.header; h != nil && h.Session == s {
			at[int64(h.Seq)] = place{h.Node, int64(h.FirstEvent)}
			closed = closed || h.Closing()
		}
	}
	if !closed && len(entries) == 0 {
		// Still being recorded, as far as the store says: not truncated.
		kept := out[:0]
		for _, f := range out {
			if f.Problem != chunk.ProblemTruncated {
				kept = append(kept, f)
			}
		}
		out = kept
		res.open = true
		v.mu.Lock()
		v.report.Open = append(v.report.Open, s)
		v.mu.Unlock()
	}

	if len(entries) == 0 && closed {
		// Its entries may be on days the range did not list.
		days := map[int64]bool{}
		for _, ci := range infos {
			if h := ci.header; h != nil {
				for _, d := range Days(h.FirstTime, h.LastTime) {
					if !v.indexDays[d.Unix()] && !days[d.Unix()] {
						days[d.Unix()] = true
						if err := v.getIndex(ctx, s, d); err != nil {
							res.err = err
							return res
						}
					}
				}
			}
		}
		v.mu.Lock()
		entries = v.index[s]
		v.mu.Unlock()
		if len(entries) == 0 {
			object := ""
			if h := infos[0].header; h != nil {
				object = IndexKey(h.FirstTime, s)
			}
			add(finding(ProblemIndex, object, "a closed session with no index entry"))
		}
	}
	for _, f := range v.checkIndex(s, entries, infos, closed) {
		add(f)
	}

	present := make(map[string][chunk.HashSize]byte, len(infos))
	for _, ci := range infos {
		present[ci.key] = ci.sum
	}
	for _, f := range chunk.CheckListed(views, present, false) {
		add(f)
	}
	listed := map[string]bool{}
	for _, d := range views {
		for _, e := range d.Entries {
			listed[e.Object] = true
		}
	}
	for _, ci := range infos {
		m := manifests[ci.keySeq]
		if m == nil || listed[ci.key] {
			continue
		}
		hour := m.SealedAt.UTC().Truncate(time.Hour)
		if !v.checked[m.Node][hour.Unix()] {
			continue // its digest is not due, not in the range, or did not verify
		}
		f := finding(chunk.ProblemUnlisted, ci.key, "sealed at %s; the node's digest of that hour does not list it", m.SealedAt.UTC().Format(time.RFC3339))
		f.Node, f.Hour, f.Seq = m.Node, hour, int64(ci.keySeq)
		add(f)
	}

	// The node that held the session, for what no chunk or manifest
	// places (a chunk removed with its manifest).
	holder := ""
	if len(entries) > 0 {
		holder = entries[0].e.Node
	} else if p, ok := at[0]; ok {
		holder = p.node
	}
	for i := range out {
		f := &out[i]
		if p, ok := at[f.Seq]; ok && f.Seq >= 0 {
			if f.Node == "" {
				f.Node = p.node
			}
			if f.Event < 0 {
				f.Event = p.event
			}
		}
		if f.Node == "" {
			f.Node = holder
		}
	}
	return res
}

// checkIndex compares session s's index entries with the chunks present.
func (v *verifier) checkIndex(s string, entries []indexed, infos []chunkInfo, closed bool) []chunk.Finding {
	if len(entries) == 0 {
		return nil
	}
	var out []chunk.Finding
	add := func(object, format string, args ...any) {
		f := finding(ProblemIndex, object, format, args...)
		f.Session = s
		out = append(out, f)
	}
	e := entries[0]
	for _, o := range entries[1:] {
		if !reflect.DeepEqual(e.e, o.e) {
			add(o.key, "differs from the session's entry %s", e.key)
		}
	}
	have := map[int64]bool{}
	for _, x := range entries {
		have[x.day.Unix()] = true
	}
	if v.indexDays != nil {
		for _, d := range Days(e.e.Start, e.e.End) {
			if v.indexDays[d.Unix()] && !have[d.Unix()] {
				add(IndexKey(d, s), "the session ran on %s and has no index entry for that day", d.Format(time.DateOnly))
			}
		}
	}
	byObject := map[string]IndexChunk{}
	for _, c := range e.e.Chunks {
		byObject[c.Object] = c
	}
	var lastEvent uint64
	for _, ci := range infos {
		c, ok := byObject[ci.key]
		delete(byObject, ci.key)
		sum := hex.EncodeToString(ci.sum[:])
		var node string
		if ci.header != nil {
			node = ci.header.Node
			if ci.header.Closing() {
				lastEvent = ci.header.LastEvent
			}
		}
		f := func(format string, args ...any) {
			add(e.key, format, args...)
			out[len(out)-1].Seq = int64(ci.keySeq)
		}
		switch {
		case !ok:
			f("chunk %d (%s) is in the store, not in the index", ci.keySeq, ci.key)
		case c.SHA256 != sum:
			f("chunk %d: the index says SHA-256 %.12s…, the store holds %.12s…", ci.keySeq, c.SHA256, sum)
		case c.Seq != ci.keySeq:
			f("chunk %d: the index gives it seq %d", ci.keySeq, c.Seq)
		case node != "" && c.Node != node:
			f("chunk %d: the index says node %q, its header %q", ci.keySeq, c.Node, node)
		}
	}
	rest := make([]IndexChunk, 0, len(byObject))
	for _, c := range byObject {
		rest = append(rest, c)
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].Seq < rest[j].Seq })
	for _, c := range rest {
		add(e.key, "the index lists chunk %d (%s), the store does not hold it", c.Seq, c.Object)
		out[len(out)-1].Seq = int64(c.Seq)
	}
	if len(infos) > 0 && infos[0].header != nil && infos[0].header.Node != e.e.Node {
		add(e.key, "the index says node %q held the session, chunk 0 was sealed by %q", e.e.Node, infos[0].header.Node)
	}
	if closed && e.e.Events != lastEvent+1 {
		add(e.key, "the index says %d events, the closing chunk ends at event %d", e.e.Events, lastEvent)
	}
	return out
}

// peekHeader decodes a chunk's clear header without hashing the payload
// (VerifySession does that).
func peekHeader(b []byte) (chunk.Header, bool) {
	const start = len(chunk.ChunkMagic) + 4
	if len(b) < start || string(b[:len(chunk.ChunkMagic)]) != chunk.ChunkMagic {
		return chunk.Header{}, false
	}
	n := binary.BigEndian.Uint32(b[len(chunk.ChunkMagic):])
	if n > chunk.MaxHeader || int(n) > len(b)-start {
		return chunk.Header{}, false
	}
	h, err := chunk.DecodeHeader(b[start : start+int(n)])
	return h, err == nil
}

// findingLess orders findings by session, chunk, node, hour, problem.
func findingLess(a, b *chunk.Finding) bool {
	switch {
	case a.Session != b.Session:
		return a.Session < b.Session
	case a.Seq != b.Seq:
		return a.Seq < b.Seq
	case a.Node != b.Node:
		return a.Node < b.Node
	case !a.Hour.Equal(b.Hour):
		return a.Hour.Before(b.Hour)
	case a.Problem != b.Problem:
		return a.Problem < b.Problem
	}
	return strings.Compare(a.Object, b.Object) < 0
}
