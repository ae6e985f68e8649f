// Package blob holds recordings' long-term, write-once object stores: FS, a
// local directory (the embedded default), and S3, any S3-compatible store
// reached with minio-go whose bucket has versioning and object lock.
//
// Both implement Store. Objects are write-once: a Put on a key that exists
// with other content fails with ErrExists and changes nothing; a Put of the
// very same bytes succeeds without writing (so an uploader may retry a Put
// whose answer it lost). Every object may carry a retention (PutOptions:
// retain-until and Governance or Compliance mode); until then Delete refuses
// it with ErrRetained. On S3 the retention is the server's object lock, which
// holds against any client, not only this package; on FS it is recorded in a
// sidecar file and enforced by this API only (and the data file is made
// read-only).
//
// A Put returns nil only after the store confirmed the object: the content's
// SHA-256 travels with the upload for the server to verify, and is read back
// (with the size and, on S3, the retention) before Put reports success.
// Retrying is the caller's business; Retryable says which errors are worth
// another attempt.
//
// This package moves opaque bytes: it never parses recordings and never logs
// their contents, and it never puts credentials in an error, a log line or a
// formatted Config. It must not import the module's test harnesses
// (internal/...).
package blob
