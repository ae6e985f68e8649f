// Package storage is where recordings live on their way to the auditor.
//
// storage/spool is the node-local, durable part: every session's frames
// are made durable (fsync, with group commit across sessions) before the
// gateway forwards what the recorded command produced, and are kept as one
// readable file per session. Blob stores (a local directory by default,
// S3-compatible object storage with object lock) and the uploader that ships
// closed recordings from the spool will sit beside it; the spool tells the
// uploader which recordings are final (spool.ClosedFeed).
//
// This package holds what every store shares with its readers: a listed
// recording (RecordingInfo), an opened one (Stream) and ErrNotFound. A
// store is read through the interface its reader defines (replay.Store);
// spool.DirStore reads a spool directory.
//
// Storage code moves and persists opaque recording bytes. It never parses
// PHI out of them and never logs their contents; the format belongs to
// session/record.
package storage
