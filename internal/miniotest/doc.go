// Package miniotest starts real, throwaway MinIO servers for tests: one
// drive in a temporary directory, 127.0.0.1 on a free port, freshly
// generated root credentials, and buckets made with versioning and object
// lock (MakeBucket) or without (MakePlainBucket).
//
// MinIO is under the AGPL: it is run as a separate program, built once by
// `make minio` (go install of the pinned Version into a cache outside the
// repository), and never imported. Binary finds it ($PHIGATE_MINIO, else
// the cache); without it tests fail and say to run `make minio`.
//
// A server never outlives the test binary that started it: it runs in its
// own process group with a parent-death signal (pgtest.Spawn).
//
// miniotest is test scaffolding; the gateway must never import it, and it
// never logs the root credentials.
package miniotest
