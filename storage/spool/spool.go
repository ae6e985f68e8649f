package spool

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MaxAppend caps one Append: a record.Event frame of the largest payload
// (64 MiB) with its header and hash fits.
const MaxAppend = 64<<20 + 64<<10

// DefaultSegmentBytes is the journal segment size when Config leaves it zero.
const DefaultSegmentBytes = 64 << 20

const minSegmentBytes = 64 << 10

var (
	// ErrFailed is wrapped by every error after a write or sync of the spool
	// failed. The spool never retries (after a failed fsync the kernel may
	// have dropped the data): nothing more can be made durable until the
	// node restarts and recovers from the journal.
	ErrFailed = errors.New("spool: failed")
	// ErrClosed is returned by appends after the spool stopped (Run
	// returned or Close was called) or on a Log that was closed.
	ErrClosed = errors.New("spool: closed")
	// ErrExists is returned by Create for a session that already has a file.
	ErrExists = errors.New("spool: session exists")
	// ErrNotFound is returned for a session the spool does not know.
	ErrNotFound = errors.New("spool: no such session")
	// ErrLocked is returned by Open when another process holds the spool.
	ErrLocked = errors.New("spool: directory in use by another process")
)

// LSN is a position in the node's journal: the number of journal bytes
// written before the end of a record. Appends return the LSN to wait for;
// it only grows, also across restarts, and is never zero.
type LSN uint64

// Config configures a Spool.
type Config struct {
	// Dir holds the spool: Dir/journal/ (the write-ahead journal),
	// Dir/sessions/<id>.rec (one recording file per session) and
	// Dir/LOCK. It is created (mode 0700) if missing. Required.
	Dir string
	// SegmentBytes is the size of a journal segment file, preallocated
	// and zero-filled. At each segment roll the open session files are
	// synced and the older segment is recycled, so the journal on disk
	// stays about three segments long. Zero means DefaultSegmentBytes
	// (64 MiB); the minimum is 64 KiB.
	SegmentBytes int64
	// Logger receives recovery and failure reports, never frame contents.
	// Nil discards them.
	Logger *slog.Logger
	// LazyDelay bounds how long a frame appended with AppendLazy waits for
	// a group commit when nothing else asks for one. Zero means 2 ms.
	LazyDelay time.Duration
	// MaxOpenFiles bounds the session files the spool holds open at once.
	// A session's file is opened when there are frames to write into it
	// and closed, least recently written first, when more than
	// MaxOpenFiles are open (after an fdatasync if it holds writes not yet
	// durable), so an idle session holds no descriptor. Zero means
	// DefaultMaxOpenFiles (256).
	MaxOpenFiles int
	// OnCommit, if set, is called after each group commit of the journal
	// with how long its fdatasync took and how much it made durable (for
	// metrics). It runs on the committing goroutine, so it must be cheap
	// and never block; calls come one at a time, in journal order. Nil:
	// nobody is told.
	OnCommit func(Commit)
}

// Commit describes one group commit, for Config.OnCommit.
type Commit struct {
	Sync   time.Duration // the journal's fdatasync (the other batch in flight may have synced meanwhile)
	Frames int           // frames made durable, across all sessions
	Bytes  int
}

// Spool makes the frames of every session on a node durable with one
// journal and group commit, and keeps one readable file per session. See
// the package documentation for the design.
type Spool struct {
	cfg         Config
	fs          fileSystem
	prealloc    preallocation
	log         *slog.Logger
	journalDir  string
	sessionsDir string
	lock        *os.File

	mu  sync.Mutex
	cur *batch // accumulating appends
	// inFlight holds the batches taken from cur and not yet durable, in
	// journal order (at most maxInFlight): being written or synced, or
	// synced and waiting for their predecessor to complete.
	inFlight  []*batch
	free      []*batch
	lsn       LSN // end of the last appended record
	logs      map[string]*Log
	recovered map[string]openSession // open at recovery and not reopened
	err       error                  // sticky failure, wraps ErrFailed
	stopped   bool                   // no more appends
	running   bool

	durable atomic.Uint64 // every record ending at or before this LSN is durable
	kick    chan struct{} // an empty batch became non-empty
	// lazyTimer kicks the syncer for a batch holding only lazy appends.
	lazyTimer *time.Timer
	failed    chan struct{} // closed by fail
	closing   chan struct{} // closed by Close
	runDone   chan struct{} // closed when Run returns

	// wmu serialises the journal's writers: taking a batch, rolling the
	// segment and writing the batch at seg.pos (the fdatasync that
	// follows runs outside it, so that two batches sync at once). It
	// guards the fields below (Open uses them before Run starts).
	wmu      sync.Mutex
	seg      *segment
	nextSeq  uint64
	ckptBuf  []byte
	hdrBuf   []byte
	lastDone chan struct{} // done of the batch taken last; nil before the first

	spareMu sync.Mutex
	spare   *segment      // a preallocated segment with an invalid header, ready to use
	spares  atomic.Uint64 // names spares apart (sparePath)

	applyMu      sync.Mutex
	applied      LSN
	appliedCh    chan struct{} // closed and replaced when applied grows (if anyone waits)
	applyWaiters int

	created atomic.Bool // a session file was created since the sessions directory was last synced

	// Group commits (one journal write and fdatasync each), fdatasyncs of
	// session files, and segment rolls whose older segment was recycled:
	// what tests and benchmarks observe of the commit path.
	commits, sessionSyncs, checkpoints atomic.Uint64
	sessionOpens                       atomic.Uint64 // session files opened by the applier

	files   openFiles // the session files held open
	victims []*Log    // owned by the applier: files it is closing

	closed closedFeeds // sessions whose recording became final, for ClosedFeed

	recoveredIDs []string
	closeOnce    sync.Once
	closeErr     error
	releaseOnce  sync.Once
	releaseErr   error
}

// batch is the unit of group commit: the journal records appended while
// the previous batch was being synced.
type batch struct {
	data   []byte
	refs   []applyRef
	end    LSN
	commit *commit
	kicked bool
	lazy   bool // the lazy timer is armed for this batch
	// Set when a syncer takes the batch (under wmu). done is closed once
	// the batch completed: published as durable and handed to the
	// applier, or given up because the spool failed (failed first, so
	// that a successor sees it). prev is the done of the batch taken
	// before it: batches complete strictly in journal order, so the
	// durable LSN and the applier's input stay a prefix of the journal.
	done, prev chan struct{}
}

// applyRef locates a frame inside a batch and in its session file.
type applyRef struct {
	log        *Log
	off        int64
	start, end int
}

// commit is what waiters on one batch block on.
type commit struct {
	done   chan struct{}
	err    error
	closed bool // guarded by Spool.mu
}

type segment struct {
	f     file
	path  string
	seq   uint64
	start LSN   // LSN of the first record after the checkpoint
	base  int64 // file offset of that record
	pos   int64 // file offset of the next write
}

// Open opens (creating if needed) the spool in cfg.Dir and recovers it: the
// journal is replayed into the session files, which are synced, and the
// sessions it leaves open (no clean Close) are listed by Recovered. Open
// starts no goroutine; call Run to make appends durable.
func Open(cfg Config) (*Spool, error) {
	return open(cfg, osFS{}, zeroFill)
}

// preallocation says how journal segments are made; only benchmarks
// choose anything but zeroFill, to measure why it is the default.
type preallocation int

const (
	zeroFill      preallocation = iota // fallocate, then write zeros: later fdatasyncs flush data only
	fallocateOnly                      // unwritten extents: the first write to each block changes metadata
	growing                            // no preallocation: every append grows the file
)

func open(cfg Config, fsys fileSystem, prealloc preallocation) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("spool: Config.Dir is required")
	}
	if cfg.SegmentBytes == 0 {
		cfg.SegmentBytes = DefaultSegmentBytes
	}
	if cfg.LazyDelay <= 0 {
		cfg.LazyDelay = 2 * time.Millisecond
	}
	if cfg.MaxOpenFiles == 0 {
		cfg.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if cfg.MaxOpenFiles < 0 {
		return nil, fmt.Errorf("spool: MaxOpenFiles %d is negative", cfg.MaxOpenFiles)
	}
	if cfg.SegmentBytes < minSegmentBytes {
		return nil, fmt.Errorf("spool: SegmentBytes %d below the minimum %d", cfg.SegmentBytes, minSegmentBytes)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Spool{
		cfg:         cfg,
		fs:          fsys,
		log:         log.With("component", "spool"),
		journalDir:  filepath.Join(cfg.Dir, "journal"),
		sessionsDir: filepath.Join(cfg.Dir, "sessions"),
		logs:        make(map[string]*Log),
		recovered:   make(map[string]openSession),
		kick:        make(chan struct{}, 1),
		failed:      make(chan struct{}),
		closing:     make(chan struct{}),
		runDone:     make(chan struct{}),
		appliedCh:   make(chan struct{}),
		prealloc:    prealloc,
		files:       openFiles{max: cfg.MaxOpenFiles},
	}
	s.lazyTimer = time.AfterFunc(time.Hour, s.lazyKick)
	s.lazyTimer.Stop()
	for _, d := range []string{cfg.Dir, s.journalDir, s.sessionsDir} {
		if err := fsys.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, err
	}
	s.cur = s.newBatchLocked()
	s.durable.Store(uint64(s.lsn))
	s.applied = s.lsn
	return s, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("spool: lock %s: %w", dir, err)
	}
	return f, nil
}

// inUse reports whether a running spool holds dir, without disturbing it.
// A reader uses it to tell a live session (its node is running: the session
// will be closed or recovered by that node) from one left open by a crash.
func inUse(dir string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); {
	case err == nil:
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, nil
	default:
		return false, fmt.Errorf("spool: lock %s: %w", dir, err)
	}
}

// Recovered lists, sorted, the sessions that Open found open: their files
// hold every frame that was durable, but they were never closed. The caller
// reopens each (Reopen), ends its recording (a session.end event with
// reason "recovered", unless the last frame already is one) and closes it.
func (s *Spool) Recovered() []string { return append([]string(nil), s.recoveredIDs...) }

// Err returns the failure that stopped the spool (wrapping ErrFailed), or nil.
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Spool) sessionPath(id string) string { return filepath.Join(s.sessionsDir, id+".rec") }

// validID accepts names that are safe as file names and fit a journal
// record: 1 to 128 of [A-Za-z0-9._-], not starting with a dot.
func validID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Create starts the recording file of a new session. The file is created
// empty and closed again: the applier opens it when it has frames for it.
func (s *Spool) Create(sessionID string) (*Log, error) {
	if !validID(sessionID) {
		return nil, fmt.Errorf("spool: invalid session id %q", sessionID)
	}
	if err := s.appendable(); err != nil {
		return nil, err
	}
	f, err := s.fs.OpenFile(s.sessionPath(sessionID), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w: %s", ErrExists, sessionID)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: create session: %w", err)
	}
	if err := f.Close(); err != nil {
		s.fs.Remove(s.sessionPath(sessionID))
		return nil, fmt.Errorf("spool: create session: %w", err)
	}
	s.created.Store(true)
	l := &Log{s: s, id: sessionID, last: -1}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.logs[sessionID]; dup || s.err != nil || s.stopped {
		// Stopped or failed meanwhile (or a Log whose empty file was just
		// removed by its Close): take back the file this call created.
		s.fs.Remove(s.sessionPath(sessionID))
		if err := s.appendableLocked(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s", ErrExists, sessionID)
	}
	s.logs[sessionID] = l
	return l, nil
}

// Reopen continues the recording of a session that Recovered listed.
func (s *Spool) Reopen(sessionID string) (*Log, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.appendableLocked(); err != nil {
		return nil, err
	}
	st, ok := s.recovered[sessionID]
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a recovered open session", ErrNotFound, sessionID)
	}
	// The file stays closed until the applier has frames for it; opening
	// it here checks that it is there and writable.
	f, err := s.fs.OpenFile(s.sessionPath(sessionID), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("spool: reopen session: %w", err)
	}
	f.Close()
	l := &Log{s: s, id: sessionID, size: st.size, last: st.last}
	l.applied.Store(st.size)
	l.synced.Store(st.size) // recovery synced it
	delete(s.recovered, sessionID)
	s.logs[sessionID] = l
	return l, nil
}

func (s *Spool) appendable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendableLocked()
}

func (s *Spool) appendableLocked() error {
	if s.err != nil {
		return s.err
	}
	if s.stopped {
		return ErrClosed
	}
	return nil
}

// lazyKick commits a batch of lazy frames once Config.LazyDelay has passed.
func (s *Spool) lazyKick() {
	s.mu.Lock()
	if len(s.cur.data) > 0 {
		s.cur.kicked = true
	}
	s.mu.Unlock()
	s.kickSyncer()
}

// kickSyncer tells a syncer a batch has work; one kick per batch (a
// syncer busy with a batch in flight looks for the next one when done).
func (s *Spool) kickSyncer() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Spool) newBatchLocked() *batch {
	var b *batch
	if n := len(s.free); n > 0 {
		b = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		b = &batch{data: make([]byte, 0, 64<<10)}
	}
	b.data, b.refs, b.end, b.kicked, b.lazy = b.data[:0], b.refs[:0], 0, false, false
	b.commit = &commit{done: make(chan struct{})}
	return b
}

// finishLocked releases the waiters of c.
func finishLocked(c *commit, err error) {
	if !c.closed {
		c.closed = true
		c.err = err
		close(c.done)
	}
}

// Wait returns once every record up to lsn is durable in the journal, or
// with an error wrapping ErrFailed if the spool failed first, or with
// ctx's error.
func (s *Spool) Wait(ctx context.Context, lsn LSN) error {
	if uint64(lsn) <= s.durable.Load() {
		return nil
	}
	s.mu.Lock()
	if uint64(lsn) <= s.durable.Load() {
		s.mu.Unlock()
		return nil
	}
	if s.err != nil {
		s.mu.Unlock()
		return s.err
	}
	if lsn > s.lsn {
		s.mu.Unlock()
		return fmt.Errorf("spool: wait for LSN %d beyond the last append %d", lsn, s.lsn)
	}
	var c *commit
	for _, b := range s.inFlight {
		if lsn <= b.end {
			c = b.commit // the first batch in flight that holds lsn
			break
		}
	}
	kick := false
	if c == nil {
		c = s.cur.commit
		if !s.cur.kicked {
			// Someone waits for lazy frames: commit them now.
			s.cur.kicked, kick = true, true
		}
	}
	s.mu.Unlock()
	if kick {
		s.kickSyncer()
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("spool: wait: %w", ctx.Err())
	}
}

// waitApplied returns once every frame up to lsn is in its session file.
func (s *Spool) waitApplied(ctx context.Context, lsn LSN) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	for s.applied < lsn {
		if err := s.Err(); err != nil {
			return err
		}
		ch := s.appliedCh
		s.applyWaiters++
		s.applyMu.Unlock()
		var err error
		select {
		case <-ch:
		case <-s.failed:
		case <-ctx.Done():
			err = fmt.Errorf("spool: wait: %w", ctx.Err())
		}
		s.applyMu.Lock()
		s.applyWaiters--
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Spool) publishApplied(lsn LSN) {
	s.applyMu.Lock()
	s.applied = lsn
	if s.applyWaiters > 0 {
		close(s.appliedCh)
		s.appliedCh = make(chan struct{})
	}
	s.applyMu.Unlock()
}

// fail puts the spool in its failed state: every pending and future wait
// and append returns an error wrapping ErrFailed.
func (s *Spool) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = fmt.Errorf("%w: %w", ErrFailed, err)
	s.log.Error("spool failed: refusing further recordings", "err", err)
	for _, b := range s.inFlight {
		finishLocked(b.commit, s.err)
	}
	finishLocked(s.cur.commit, s.err)
	close(s.failed)
}

// Run makes appends durable until ctx is done, the spool fails or Close is
// called. On the way out it flushes everything appended before it stopped
// and writes it to the session files; then it returns, with its goroutines
// exited. After Run returns, appends fail with ErrClosed. Run returns nil
// after a clean stop and the failure (wrapping ErrFailed) otherwise. It may
// be called once.
func (s *Spool) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running || s.stopped {
		s.mu.Unlock()
		return errors.New("spool: Run called twice or after Close")
	}
	s.running = true
	s.mu.Unlock()
	defer close(s.runDone)

	work := make(chan applyItem, 8)
	jobs := make(chan checkpointJob, 4)
	var wg sync.WaitGroup
	wg.Go(func() { s.applier(work, jobs) })
	wg.Go(func() { s.checkpointer(jobs) })
	var syncers sync.WaitGroup
	for range maxInFlight {
		syncers.Go(func() { s.syncer(ctx, work) })
	}
	syncers.Wait()
	close(work) // the applier drains it, then closes jobs
	wg.Wait()

	s.mu.Lock()
	s.stopped = true
	err := s.err
	s.mu.Unlock()
	// Nothing more will be written to the journal: release it and the
	// directory lock, so that the spool can be opened again (a restart in
	// the same process). Session files still open stay open until their
	// Log or the spool is closed.
	if rerr := s.releaseJournal(); err == nil && rerr != nil {
		err = fmt.Errorf("spool: %w", rerr)
	}
	return err
}

// applyItem is either a durable batch to write into session files or a
// segment that the journal rolled away from.
type applyItem struct {
	batch *batch
	old   *segment
}

// maxInFlight is how many group commits may be in flight at once, one
// syncer goroutine each. While one batch's fdatasync runs, the next batch
// is written after it in the journal and synced at the same time: the file
// system commits overlapping fdatasyncs together (on this VM's ext4, two
// threads syncing 4 KiB writes to one file made 1.2 to 2.2 times the syncs
// per second of one thread, depending on the disk's other load), so a
// command appended during a sync need not wait for the running one and
// then its own.
const maxInFlight = 2

func (s *Spool) syncer(ctx context.Context, work chan<- applyItem) {
	for {
		select {
		case <-s.kick:
			// The kick came from the first waiter to append after a
			// commit woke it and the others: let them append too, so that
			// this batch is not one frame while the other syncer's batch
			// carries the rest (a yield, not a delay; measured with 1 ms
			// syncs at 16 sessions: 8.3 appends a commit instead of 7.3,
			// +10% appends per second).
			runtime.Gosched()
		case <-ctx.Done():
			s.stopAppends()
		case <-s.closing:
			s.stopAppends()
		case <-s.failed:
			return
		}
		for s.flush(work) {
			// Let the waiters just woken run before taking the next batch:
			// on few cores they would otherwise append only after it was
			// taken and wait for two commits instead of one (measured:
			// +60% appends per second at 16 sessions on 2 cores). This is
			// a yield, not a delay: nothing waits on a timer.
			runtime.Gosched()
		}
		s.mu.Lock()
		done := s.stopped || s.err != nil
		s.mu.Unlock()
		if done {
			return
		}
	}
}

func (s *Spool) stopAppends() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// flush takes the current batch, writes it to the journal after the
// batches in flight and syncs it (while the other syncer may be syncing
// the batch before it), then completes it in journal order: once its
// predecessor completed, it publishes it as durable, releases its waiters
// and hands it to the applier. A failure fails the spool. flush reports
// whether it committed a batch (so there may be another one).
func (s *Spool) flush(work chan<- applyItem) bool {
	s.wmu.Lock()
	s.mu.Lock()
	b := s.cur
	if s.err != nil || len(b.data) == 0 || (!b.kicked && !s.stopped) {
		// Failed, empty, or holding only lazy frames that nobody waits for
		// yet: they ride along with the next commit (or the lazy timer's).
		s.mu.Unlock()
		s.wmu.Unlock()
		return false
	}
	b.end = s.lsn
	s.cur = s.newBatchLocked()
	b.prev, b.done = s.lastDone, make(chan struct{})
	s.lastDone = b.done
	s.inFlight = append(s.inFlight, b)
	seg := s.seg
	roll := seg.pos > seg.base && seg.pos+int64(len(b.data)) > s.cfg.SegmentBytes
	var ckpt []byte
	if roll {
		// The checkpoint describes the open sessions including this batch;
		// the batch's records follow it in the new segment, and replaying
		// them again on top of it is idempotent.
		s.ckptBuf = s.checkpointLocked(s.ckptBuf[:0])
		ckpt = s.ckptBuf
	}
	s.mu.Unlock()
	// Whatever happens, b completes, after the spool failed if it did: a
	// successor waiting for it then publishes nothing.
	defer close(b.done)

	start := b.end - LSN(len(b.data))
	var old *segment
	if roll {
		// The checkpoint also counts the frames of the batch still in
		// flight, in the old segment: it must be durable before the new
		// segment (which recovery would trust instead) is written. Rolls
		// are rare; the next batch waits behind this one meanwhile.
		if b.prev != nil {
			<-b.prev
		}
		if s.Err() != nil {
			s.wmu.Unlock()
			return false
		}
		old = seg
		var err error
		if seg, err = s.rollTo(start, ckpt); err != nil {
			s.wmu.Unlock()
			s.fail(err)
			return false
		}
	}
	if _, err := seg.f.WriteAt(b.data, seg.pos); err != nil {
		s.wmu.Unlock()
		s.fail(fmt.Errorf("write journal: %w", err))
		return false
	}
	seg.pos += int64(len(b.data))
	s.wmu.Unlock()

	syncStart := time.Now()
	if err := seg.f.Datasync(); err != nil {
		// Fail now, whether or not the predecessor is durable yet: the
		// predecessor then publishes nothing either.
		s.fail(fmt.Errorf("sync journal: %w", err))
		return false
	}
	took := time.Since(syncStart)
	s.commits.Add(1)

	if b.prev != nil {
		<-b.prev // published, or the spool failed
	}
	if s.cfg.OnCommit != nil {
		// Called in journal order, never two at once.
		s.cfg.OnCommit(Commit{Sync: took, Frames: len(b.refs), Bytes: len(b.data)})
	}
	s.mu.Lock()
	if s.err != nil { // a predecessor or the applier failed; that failure stands
		s.mu.Unlock()
		return false
	}
	if s.inFlight[0] != b {
		panic("spool: group commits completing out of order")
	}
	s.inFlight = append(s.inFlight[:0], s.inFlight[1:]...)
	s.durable.Store(uint64(b.end))
	finishLocked(b.commit, nil)
	s.mu.Unlock()

	if old != nil {
		work <- applyItem{old: old}
	}
	work <- applyItem{batch: b}
	return true
}

// checkpointLocked encodes the sessions that are open (as of everything
// appended so far) as a checkpoint record's data.
func (s *Spool) checkpointLocked(dst []byte) []byte {
	for id, l := range s.logs {
		if l.size > 0 && !l.closeLogged {
			dst = appendCheckpointEntry(dst, openSession{id: id, size: l.size, last: l.last})
		}
	}
	for _, st := range s.recovered {
		dst = appendCheckpointEntry(dst, st)
	}
	return dst
}

// rollTo starts the next segment: its header and checkpoint are written at
// its start (the caller writes the batch after them and syncs both at once).
func (s *Spool) rollTo(start LSN, ckpt []byte) (*segment, error) {
	next, err := s.takeSpare(s.nextSeq)
	if err != nil {
		return nil, err
	}
	if err := s.startSegment(next, s.nextSeq, start, ckpt); err != nil {
		next.f.Close()
		return nil, err
	}
	s.nextSeq++
	s.seg = next
	return next, nil
}

// startSegment writes a segment's header and checkpoint record; records
// follow at seg.base.
func (s *Spool) startSegment(seg *segment, seq uint64, start LSN, ckpt []byte) error {
	hdr := appendSegmentHeader(s.hdrBuf[:0], seq, start)
	hdr = appendRecord(hdr, recCheckpoint, start, "", 0, ckpt, crc32.Checksum(ckpt, castagnoli))
	s.hdrBuf = hdr
	if _, err := seg.f.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	seg.seq, seg.start = seq, start
	seg.base = int64(len(hdr))
	seg.pos = seg.base
	return nil
}

// takeSpare returns a preallocated segment file named for seq, made by
// the checkpointer in the background, or makes one now.
func (s *Spool) takeSpare(seq uint64) (*segment, error) {
	path := filepath.Join(s.journalDir, fmt.Sprintf("%016x.wal", seq))
	s.spareMu.Lock()
	sp := s.spare
	s.spare = nil
	s.spareMu.Unlock()
	if sp != nil {
		// Recovery reads segment headers, not names: if this rename is lost
		// in a crash, the segment is still found under its spare name.
		if err := s.fs.Rename(sp.path, path); err != nil {
			sp.f.Close()
			return nil, fmt.Errorf("journal: %w", err)
		}
		sp.path = path
		return sp, nil
	}
	return s.makeSegment(path)
}

var zeros = make([]byte, 1<<20)

// makeSegment creates a segment file of SegmentBytes zeros, durable and
// named durably, so that later fdatasyncs of it need no metadata update.
func (s *Spool) makeSegment(path string) (*segment, error) {
	f, err := s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if s.prealloc != growing {
		err = f.Preallocate(s.cfg.SegmentBytes)
	}
	for off := int64(0); err == nil && s.prealloc == zeroFill && off < s.cfg.SegmentBytes; off += int64(len(zeros)) {
		_, err = f.WriteAt(zeros[:min(int64(len(zeros)), s.cfg.SegmentBytes-off)], off)
	}
	if err == nil {
		err = f.Datasync()
	}
	if err == nil {
		err = s.fs.SyncDir(s.journalDir)
	}
	if err != nil {
		f.Close()
		s.fs.Remove(path)
		return nil, fmt.Errorf("journal: prepare segment: %w", err)
	}
	return &segment{f: f, path: path}, nil
}

// checkpointJob is a segment the journal rolled away from and the session
// files written while it was current.
type checkpointJob struct {
	old   *segment
	dirty []*Log
}

// applier writes durable frames into their session files, in journal
// order, and hands each rolled segment to the checkpointer.
func (s *Spool) applier(work <-chan applyItem, jobs chan<- checkpointJob) {
	defer close(jobs)
	var dirty []*Log
	var runs []applyRun
	at := map[*Log]int{}
	epoch := uint64(1)
	broken := false
	for item := range work {
		if broken || s.Err() != nil {
			broken = true
			if item.old != nil {
				item.old.f.Close() // nobody will recycle it now
			}
			continue // drain, so the syncer never blocks
		}
		if item.old != nil {
			jobs <- checkpointJob{old: item.old, dirty: dirty}
			dirty = nil
			epoch++
			continue
		}
		b := item.batch
		runs = gatherRuns(runs[:0], at, b)
		for i := range runs {
			r := &runs[i]
			l := r.log
			f, err := s.fileForWrite(l)
			if err != nil {
				s.fail(fmt.Errorf("open session %s: %w", l.id, err))
				broken = true
				break
			}
			if _, err := f.WriteAt(r.data, r.off); err != nil {
				s.fail(fmt.Errorf("write session %s: %w", l.id, err))
				broken = true
				break
			}
			l.applied.Store(r.off + int64(len(r.data)))
			if l.dirtyEpoch != epoch {
				l.dirtyEpoch = epoch
				dirty = append(dirty, l)
			}
		}
		for i := range runs {
			data := runs[i].data[:0] // keep the buffer, not the Log
			if cap(data) > 1<<20 {
				data = nil // a huge batch: don't keep its buffer
			}
			runs[i] = applyRun{data: data}
		}
		clear(at)
		if broken {
			continue
		}
		s.publishApplied(b.end)
		clear(b.refs)
		if cap(b.data) > 8<<20 {
			b.data = nil // a huge batch: don't keep its buffer
		}
		s.mu.Lock()
		s.free = append(s.free, b)
		s.mu.Unlock()
	}
}

// applyRun is what one session file gets of a batch: its frames, in
// journal order, at consecutive offsets from off.
type applyRun struct {
	log  *Log
	off  int64
	data []byte
}

// gatherRuns groups the frames of b by session file, so that each file
// gets one write per batch however its frames interleave with other
// sessions' in the journal (one pwrite per session and commit, not one per
// event). runs keeps its buffers from the previous batch; at maps a Log to
// its run and is empty on entry.
func gatherRuns(runs []applyRun, at map[*Log]int, b *batch) []applyRun {
	for _, r := range b.refs {
		frame := b.data[r.start:r.end]
		if i, ok := at[r.log]; ok && runs[i].off+int64(len(runs[i].data)) == r.off {
			runs[i].data = append(runs[i].data, frame...)
			continue
		}
		// A session's first frame in the batch (a gap cannot happen: its
		// frames are appended at consecutive offsets; if one did, the frame
		// would start a run of its own, written after the earlier one).
		at[r.log] = len(runs)
		if len(runs) < cap(runs) {
			runs = runs[:len(runs)+1]
			runs[len(runs)-1].log, runs[len(runs)-1].off = r.log, r.off
			runs[len(runs)-1].data = append(runs[len(runs)-1].data[:0], frame...)
		} else {
			runs = append(runs, applyRun{log: r.log, off: r.off, data: append([]byte(nil), frame...)})
		}
	}
	return runs
}

// checkpointer syncs session files and recycles segments behind the
// applier, and keeps a spare segment ready, so that neither the syncer
// nor the applier waits for those fsyncs or for zero-filling.
func (s *Spool) checkpointer(jobs <-chan checkpointJob) {
	s.prepareSpare()
	for job := range jobs {
		if s.Err() != nil {
			job.old.f.Close() // drain; nobody will recycle it now
			continue
		}
		if err := s.checkpoint(job.old, job.dirty); err != nil {
			s.fail(err)
			continue
		}
		s.prepareSpare()
	}
}

// checkpoint makes every session file written while old was the journal's
// head durable, then recycles old: after this, old is no longer needed for
// recovery.
func (s *Spool) checkpoint(old *segment, dirty []*Log) (err error) {
	defer func() {
		if err != nil {
			// The old segment was not recycled: nobody else holds it.
			old.f.Close()
		}
	}()
	for _, l := range dirty {
		l.fmu.RLock()
		var err error
		if l.f != nil { // else synced before it was closed, by openFiles or Close
			err = l.syncLocked()
		}
		l.fmu.RUnlock()
		if err != nil {
			return fmt.Errorf("sync session %s: %w", l.id, err)
		}
	}
	if err := s.Err(); err != nil {
		// A sync elsewhere failed (the applier's before it closed a
		// file): the file may not hold what the old segment does.
		return err
	}
	if s.created.Swap(false) {
		if err := s.fs.SyncDir(s.sessionsDir); err != nil {
			return fmt.Errorf("sync sessions directory: %w", err)
		}
	}
	if err := s.recycle(old); err != nil {
		return err
	}
	s.checkpoints.Add(1)
	return nil
}

// recycle invalidates a segment's header (durably, so that it is never
// replayed again) and keeps the file as the spare or removes it.
func (s *Spool) recycle(old *segment) error {
	if _, err := old.f.WriteAt(zeros[:segHeaderSize], 0); err != nil {
		return fmt.Errorf("recycle journal segment: %w", err)
	}
	if err := old.f.Datasync(); err != nil {
		return fmt.Errorf("recycle journal segment: %w", err)
	}
	s.spareMu.Lock()
	keep := s.spare == nil
	s.spareMu.Unlock()
	if keep {
		path := s.sparePath()
		if err := s.fs.Rename(old.path, path); err != nil {
			return fmt.Errorf("recycle journal segment: %w", err)
		}
		sp := &segment{f: old.f, path: path}
		s.spareMu.Lock()
		s.spare = sp
		s.spareMu.Unlock()
		return nil
	}
	old.f.Close()
	if err := s.fs.Remove(old.path); err != nil {
		return fmt.Errorf("recycle journal segment: %w", err)
	}
	return nil
}

// prepareSpare makes sure a segment is ready for the next roll, so that
// the syncer does not zero-fill one on the commit path.
// sparePath is a name no other segment has: the checkpointer makes a spare
// while the syncer may be renaming the one it just took, so a fixed name
// could make the new spare and the taken segment one file.
func (s *Spool) sparePath() string {
	return filepath.Join(s.journalDir, fmt.Sprintf("spare-%d.wal", s.spares.Add(1)))
}

func (s *Spool) prepareSpare() {
	s.spareMu.Lock()
	have := s.spare != nil
	s.spareMu.Unlock()
	if have {
		return
	}
	sp, err := s.makeSegment(s.sparePath())
	if err != nil {
		// Not fatal: the syncer will try again when it needs one.
		s.log.Warn("cannot prepare a spare journal segment", "err", err)
		return
	}
	s.spareMu.Lock()
	s.spare = sp
	s.spareMu.Unlock()
}

// Close stops the spool and releases its files. If Run is running, Close
// stops it (Run flushes what was appended) and waits for it to return;
// waits that can no longer complete return ErrClosed. Close is idempotent.
// Shutdown order for a node: stop accepting sessions, end and Close every
// Log, then cancel Run's context (or call Close).
func (s *Spool) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.mu.Lock()
		running := s.running
		s.stopped = true
		s.mu.Unlock()
		if running {
			<-s.runDone
		}
		s.mu.Lock()
		for _, b := range s.inFlight {
			finishLocked(b.commit, ErrClosed)
		}
		finishLocked(s.cur.commit, ErrClosed)
		s.mu.Unlock()
		s.closeErr = s.closeFiles()
	})
	return s.closeErr
}

func (s *Spool) closeFiles() error {
	var errs []error
	s.mu.Lock()
	logs := make([]*Log, 0, len(s.logs))
	for _, l := range s.logs {
		logs = append(logs, l)
	}
	s.mu.Unlock()
	for _, l := range logs {
		s.files.remove(l)
		l.fmu.Lock()
		if l.f != nil {
			errs = append(errs, l.f.Close())
			l.f = nil
		}
		l.fmu.Unlock()
	}
	errs = append(errs, s.releaseJournal())
	return errors.Join(errs...)
}

// releaseJournal closes the journal segments and unlocks the directory, once.
func (s *Spool) releaseJournal() error {
	s.releaseOnce.Do(func() {
		var errs []error
		if s.seg != nil {
			errs = append(errs, s.seg.f.Close())
		}
		s.spareMu.Lock()
		if s.spare != nil {
			errs = append(errs, s.spare.f.Close())
			s.spare = nil
		}
		s.spareMu.Unlock()
		if s.lock != nil {
			errs = append(errs, s.lock.Close())
		}
		s.releaseErr = errors.Join(errs...)
	})
	return s.releaseErr
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
