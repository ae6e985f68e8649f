package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/internal/miniotest"
	"github.com/phigate/phigate/storage/blob"
)

// The buckets of a run, both with versioning and object lock (the node
// refuses a bucket without).
const (
	recordingsBucket = "recordings" // the node ships here; audit verify reads it
	putBucket        = "put-bench"  // the direct Put benchmark's objects
)

// objectStore is the run's MinIO.
type objectStore struct {
	srv      *miniotest.Server
	location string // s3://recordings?endpoint=http://127.0.0.1:PORT
}

// startStore starts MinIO in dir and makes the buckets.
func startStore(ctx context.Context, dir string) (*objectStore, error) {
	srv, err := miniotest.Start(ctx, dir)
	if err != nil {
		return nil, err
	}
	c, err := srv.Client()
	if err != nil {
		srv.Stop()
		return nil, err
	}
	for _, b := range []string{recordingsBucket, putBucket} {
		if err := c.MakeBucket(ctx, b, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
			srv.Stop()
			return nil, fmt.Errorf("minio: make bucket %s: %w", b, err)
		}
	}
	return &objectStore{srv: srv, location: s3Location(recordingsBucket, srv.URL())}, nil
}

func s3Location(bucket, endpoint string) string {
	return (blob.Location{Scheme: "s3", Bucket: bucket, Endpoint: endpoint}).String()
}

// credentialsEnv is the environment that gives phigate the store's
// credentials (never the command line).
func (s *objectStore) credentialsEnv() []string {
	ak, sk := s.srv.RootCredentials()
	return []string{"PHIGATE_S3_ACCESS_KEY=" + ak, "PHIGATE_S3_SECRET_KEY=" + sk}
}

// open opens bucket as the node would (blob.Open: the same client, the
// same transport settings).
func (s *objectStore) open(bucket string) (blob.Store, error) {
	loc, err := blob.ParseLocation(s3Location(bucket, s.srv.URL()))
	if err != nil {
		return nil, err
	}
	ak, sk := s.srv.RootCredentials()
	return blob.Open(loc, func() (blob.Credentials, error) { return blob.Credentials{AccessKey: ak, SecretKey: sk}, nil })
}

// putResult is the direct Put benchmark's figures.
type putResult struct {
	Objects     int
	Size        int
	Concurrency int
	Elapsed     time.Duration
}

func (p putResult) MBps() float64 {
	return finite(float64(p.Objects) * float64(p.Size) / 1e6 / p.Elapsed.Seconds())
}

// measurePut puts objects random objects of size bytes into putBucket,
// concurrency at a time, with the retention the node gives recordings
// (6 years, GOVERNANCE): what the node's uploaders do for each chunk (a
// sealed chunk is encrypted, so random bytes are its like). Each Put is
// confirmed by reading back size and SHA-256, as the node's are.
func (s *objectStore) measurePut(ctx context.Context, objects, size, concurrency int) (putResult, error) {
	st, err := s.open(putBucket)
	if err != nil {
		return putResult{}, err
	}
	data := make([][]byte, objects)
	for i := range data {
		data[i] = make([]byte, size)
		rand.Read(data[i])
	}
	opts := blob.PutOptions{RetainUntil: time.Now().Add(6 * 365 * 24 * time.Hour).UTC().Truncate(time.Second), Mode: blob.Governance}
	var next atomic.Int64
	errs := make([]error, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= objects || ctx.Err() != nil {
					return
				}
				if err := st.Put(ctx, fmt.Sprintf("put/%06d", i), data[i], opts); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	r := putResult{Objects: objects, Size: size, Concurrency: concurrency, Elapsed: time.Since(start)}
	return r, errors.Join(errs...)
}

// verifyRun is one `phigate audit verify` of a store.
type verifyRun struct {
	Store     string        // "s3" or "fs"
	Wall      time.Duration // the command, start to exit
	ElapsedMS int64         // the report's own time (archive.Verify)
	Sessions  int
	Chunks    int
	Manifests int
	Digests   int
	Bytes     int64 // stored bytes of the chunks read
	OK        bool
	Findings  int
	CPU       time.Duration // the command's user and system time
	StoreCPU  time.Duration // MinIO's, while the command ran (s3)
}

// MBps is the stored chunk bytes verified per second of the report's time.
func (v verifyRun) MBps() float64 {
	return finite(float64(v.Bytes) / 1e6 / (float64(v.ElapsedMS) / 1000))
}

// parseVerifyJSON reads `phigate audit verify --json`'s output.
func parseVerifyJSON(b []byte) (verifyRun, error) {
	var out struct {
		Report *struct {
			OK        bool            `json:"ok"`
			Sessions  int             `json:"sessions"`
			Chunks    int             `json:"chunks"`
			Manifests int             `json:"manifests"`
			Bytes     int64           `json:"bytes"`
			Digests   int             `json:"digests"`
			ElapsedMS int64           `json:"elapsed_ms"`
			Findings  json.RawMessage `json:"findings"`
		} `json:"report"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return verifyRun{}, fmt.Errorf("audit verify --json: %w", err)
	}
	if out.Report == nil {
		return verifyRun{}, errors.New("audit verify --json: no report")
	}
	r := out.Report
	var findings []json.RawMessage
	if len(r.Findings) > 0 {
		if err := json.Unmarshal(r.Findings, &findings); err != nil {
			return verifyRun{}, fmt.Errorf("audit verify --json findings: %w", err)
		}
	}
	return verifyRun{ElapsedMS: r.ElapsedMS, Sessions: r.Sessions, Chunks: r.Chunks, Manifests: r.Manifests,
		Digests: r.Digests, Bytes: r.Bytes, OK: r.OK, Findings: len(findings)}, nil
}

// runVerify runs `bin audit verify --json` over location, for [from, to),
// with the keys the node publishes (--api, its development certificate as
// the CA): the product command an auditor runs.
// With perf set, it runs under perf record -g, writing that file.
func runVerify(ctx context.Context, bin, kind, location string, env []string, n *node, from, to time.Time, perf string) (verifyRun, error) {
	args := []string{bin, "audit", "verify", "--json", "--store", location,
		"--api", "https://" + n.apiAddr, "--cacert", n.certFile(),
		"--from", from.UTC().Format(time.RFC3339), "--to", to.UTC().Format(time.RFC3339)}
	if perf != "" {
		args = append([]string{"perf", "record", "-q", "-F", "999", "-g", "-o", perf, "--"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if ctx.Err() != nil {
		return verifyRun{}, ctx.Err()
	}
	v, perr := parseVerifyJSON(stdout.Bytes())
	v.Store, v.Wall = kind, wall
	if st := cmd.ProcessState; st != nil {
		v.CPU = st.UserTime() + st.SystemTime()
	}
	if perr != nil {
		return v, fmt.Errorf("audit verify %s: %v: %v\n%s", kind, err, perr, harness.Tail(stderr.Bytes(), 2000))
	}
	if err != nil || !v.OK {
		return v, fmt.Errorf("audit verify %s: %v, %d findings\n%s", kind, err, v.Findings, harness.Tail(stdout.Bytes(), 3000))
	}
	return v, nil
}

// copyToDir copies every object of the recordings bucket into a
// directory store (blob.FS) at dir, to verify the same recordings without
// the network: the verifier's own speed.
func (s *objectStore) copyToDir(ctx context.Context, dir string) (objects int, bytes int64, err error) {
	src, err := s.open(recordingsBucket)
	if err != nil {
		return 0, 0, err
	}
	dst, err := blob.NewFS(dir)
	if err != nil {
		return 0, 0, err
	}
	list, err := src.List(ctx, "")
	if err != nil {
		return 0, 0, err
	}
	var next atomic.Int64
	var total atomic.Int64
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(list) || ctx.Err() != nil {
					return
				}
				b, err := src.Get(ctx, list[i].Key)
				if err == nil {
					err = dst.Put(ctx, list[i].Key, b, blob.PutOptions{})
				}
				if err != nil {
					errs[w] = fmt.Errorf("copy %s: %w", list[i].Key, err)
					return
				}
				total.Add(int64(len(b)))
			}
		})
	}
	wg.Wait()
	return len(list), total.Load(), errors.Join(errs...)
}

// fsLocation is a directory store's location.
func fsLocation(dir string) string {
	abs, _ := filepath.Abs(dir)
	return "file://" + abs
}
