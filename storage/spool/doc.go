// Package spool makes session recordings durable on a node's local disk
// before anything they record is forwarded, and keeps one readable file per
// session (Dir/sessions/<id>.rec) for replay and upload.
//
// # Design
//
// Syncing each session's file after each command does not scale: 64 active
// sessions would cost 64 fdatasyncs per round of commands. Instead every
// frame goes first into one node-wide write-ahead journal (Dir/journal/),
// with group commit across all sessions:
//
//   - Log.Append encodes a journal record {session id, offset in the session
//     file, frame, CRC-32C} into a shared in-memory batch under a mutex and
//     returns its LSN. It does no I/O and, in steady state, no allocation.
//   - A syncer goroutine (Run) takes the whole batch, writes it to the
//     journal with one write and makes it durable with one fdatasync, then
//     wakes every waiter whose LSN it covers (Wait). There is no artificial
//     delay: a batch is whatever accumulated while the previous fdatasync
//     ran (the syncer only yields once, so that the waiters it woke can
//     append again), so the batch grows with the load and the fsync rate
//     does not.
//   - Two group commits may be in flight: while one batch's fdatasync runs,
//     a second syncer takes the next batch, writes it after the first (the
//     writes are serialised) and syncs it at the same time, since file
//     systems commit overlapping fdatasyncs together. Batches complete
//     strictly in journal order: a batch whose sync returned first waits
//     for its predecessor before it is published as durable, wakes its
//     waiters or goes to the applier, and publishes nothing if the
//     predecessor failed. A segment roll waits until no batch is in flight.
//   - After the sync, an applier goroutine writes each frame into its
//     session file at its offset (page cache, no fsync), so that readers
//     see it. Log.Close waits for its frames to be applied, fdatasyncs the
//     session file and journals a close marker.
//   - Session files are not held open for a session's life: the applier
//     opens a file when it has frames for it and keeps at most
//     Config.MaxOpenFiles open (256), closing the least recently written
//     first, after an fdatasync if it holds writes no sync covered yet.
//     An idle session costs no descriptor; readers of a closed one open
//     it for the read (ReadOpen, Log.Last). No file is closed with writes
//     that are not durable, so a checkpoint need not sync files that are
//     no longer open.
//
// Journal segments are preallocated and zero-filled, so that an fdatasync
// of an append does not also have to commit file-size or extent metadata
// (measured in BenchmarkAppendWait against fallocate-only and growing
// files). When a segment is full the syncer rolls to a spare one, writing
// at its start a checkpoint of the open sessions. A third goroutine, the
// checkpointer, then fdatasyncs every session file written while the old
// segment was current, recycles the old segment (its header is zeroed and
// it becomes the next spare) and keeps a spare ready, so that neither the
// commit path nor the applier waits for those fsyncs or for zero-filling.
// The journal on disk stays about three segments long and recovery replays
// at most about two.
//
// # Recovery
//
// Open scans the segments in order and stops at the first record whose
// CRC, type or LSN does not check (a torn tail, preallocated zeros, or a
// stale record in a recycled segment). Every frame is rewritten into its
// session file at its offset (idempotent); the files are synced; open
// sessions are cut to the size the journal vouches for and listed by
// Recovered, for the caller to end with a session.end event of reason
// "recovered" (Reopen, record.Resume on Log.Last, Append, Close).
//
// # Closed recordings
//
// A consumer that ships recordings elsewhere (the uploader) learns which
// are final, closed and durable, without polling the directory and without
// ever slowing the commit path:
//
//   - WatchClosed starts a ClosedFeed. Log.Close, once the session file is
//     synced and the close is durable in the journal, appends the session
//     id to every feed's list and signals its Ready channel (one pending
//     wake-up, never a blocking send). Sessions left open by a crash are
//     reported when the node closes them after recovery.
//   - The consumer takes the list with Take whenever Ready fires. A feed
//     keeps at most 4096 ids between Takes; a consumer further behind is
//     not sent the rest but told to rescan, so the spool's memory stays
//     bounded and nothing is lost.
//   - ClosedSessions lists every final recording in the directory, from
//     this run or earlier ones: what a consumer calls at start (after
//     WatchClosed, so that nothing closes unseen between the two) and on
//     a rescan. The feed lives in memory only: what closed while no
//     consumer ran is found this way.
//
// Delivery is at least once: a session closing while a consumer starts, or
// before a crash of the consumer, is reported again. Shipping must be
// idempotent (a recording's bytes never change once final).
//
// # Reading
//
// DirStore reads a spool directory's recordings for replay, from this
// process or another, while a node runs or not.
//
// # Failure
//
// The spool is fail-closed. If a write or an fdatasync fails (disk full,
// I/O error), or the applier cannot open a session file (out of
// descriptors even after closing its own), it never retries (after a
// failed fsync the kernel may have dropped the dirty pages, so a retry
// could report success for lost data): every pending and later Wait and
// Append returns an error wrapping ErrFailed, so the proxy refuses to
// forward anything. The node must restart, and recovery replays the
// journal.
//
// The package stores opaque frames; it never decodes or logs them (they
// hold PHI). session/record defines the frames, replay presents them.
package spool
