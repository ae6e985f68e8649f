// Package storage is where recordings live on their way to the auditor.
//
// storage/spool is the node-local, durable part: every session's frames
// are made durable (fsync, with group commit across sessions) before the
// gateway forwards what the recorded command produced, and are kept as one
// readable file per session. storage/blob holds the write-once blob stores
// (blob.FS, a local directory, by default; blob.S3, S3-compatible object
// storage with versioning and object lock) that recordings go to for the
// long term; the uploader that ships closed recordings from the spool will
// sit beside them (the spool tells it which recordings are final:
// spool.ClosedFeed).
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
