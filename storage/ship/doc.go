// Package ship seals a node's recordings into chunks and ships them to a
// blob store: the writing side of storage/chunk's format, in
// storage/archive's layout.
//
// # Pipeline
//
// A Shipper reads the spool's session files every tick (200 ms): open
// sessions up to what the spool has made durable and applied
// (spool.AppendOpenSessions), closed ones to their end (spool.ClosedFeed,
// ClosedSessions). Whole frames go into a chunk.Builder per session, which
// is sealed when it holds MaxBytes or its first event is MaxDuration old,
// and as the closing chunk once the recording is final. A session.end frame
// of a session that is not final yet is held back for the closing chunk.
// Each sealed chunk gets a manifest signed with the node's Ed25519 key.
//
// Reading costs as little as the spool allows. How far each live file
// holds durable frames comes from the spool's memory, so an idle session
// costs no system call. A live session is read when a chunk may be due
// (about once per MaxDuration, not every tick: the frames wait in the page
// cache, not in the builder) through spool.ReadOpen: one pread through
// the spool's descriptor while the spool holds the file open (it was
// written lately), else an open, a pread and a close; an EMFILE there is
// retried at the next tick. Final
// and recovered files are read through files of the shipper's own, kept
// open across ticks, at most 64 (least recently used closed first), and
// closed once the closing chunk is sealed. Such a file removed while open
// is read to its end all the same: it holds what the spool wrote.
//
// # Durability before upload
//
// Everything a tick sealed (chunks, manifests, digests) is written into one
// segment file (segments/<tick>.seg) and fsynced, then one batch saying
// what was sealed (each session's next seq, previous chunk hash, next event,
// offset in its spool file) is appended to the ledger (ledger.log) and
// fsynced: two fsyncs per tick whatever the number of sessions. A tick
// happened whole or not at all: a segment whose batch is missing is deleted
// at start and its frames, still in the spool, are sealed again. After a
// restart each session continues from the ledger's state with a new data
// key (chunk.Config.NextSeq/Prev/NextEvent), so a crash never gives one
// seq two different chunks.
//
// # Upload
//
// The uploader puts the objects of each segment, retrying with exponential
// backoff and jitter (100 ms to 30 s) for as long as it takes; an object
// counts only when the store confirmed it (read back size and SHA-256). A
// store that batches (blob.Batcher: the directory store) gets a segment's
// objects in one PutMany, made durable with one fdatasync per file and one
// fsync per directory; what it did not confirm, and every object of a
// store that does not batch (S3, whose puts are durable on return), is put
// on its own, 8 at a time. A segment is deleted only when every object in
// it is confirmed. Once a session's closing chunk is confirmed, its index
// entry is written (one per UTC day the session touched; those of a
// segment's sessions in one batch), then its spool file is removed
// (spool.RemoveFinal, the removals of a segment together, so that they
// share the spool's commits) and the ledger forgets it. Errors no retry
// can cure (another object under the key) are logged and tried again every
// minute: nothing is ever dropped.
//
// # Backlog cap
//
// Spool files not yet indexed plus segments are the backlog; when it
// reaches Config.Cap, Admit returns ErrFull and the node refuses new
// sessions (and reports not ready) instead of dropping anything.
//
// # Digests and anchors
//
// At the first tick of each hour the shipper writes the digest of every
// hour that ended since its last one, empty hours included, each linked to
// the one before (chunk.BuildDigest). After each tick, the newest chunk of
// every session that sealed one (seq, chunk hash, chain head, last event)
// is stored outside the node through Config.Anchor (the cluster state),
// retried with newer anchors while it fails.
//
// The package reads events' time and kind (and the identity and resource
// names of session.start and session.end for the index); it never logs
// event contents.
package ship
