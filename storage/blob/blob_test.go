package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/phigate/phigate/internal/miniotest"
	"github.com/phigate/phigate/storage/blob"
)

func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }

func newS3(t *testing.T, srv *miniotest.Server, bucket string) *blob.S3 {
	t.Helper()
	if bucket == "" {
		bucket = srv.MakeBucket(t)
	}
	ak, sk := srv.RootCredentials()
	s, err := blob.NewS3(blob.S3Config{Endpoint: srv.URL(), Bucket: bucket, Credentials: blob.Credentials{AccessKey: ak, SecretKey: sk}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// forEachStore runs f against a fresh store of each kind.
func forEachStore(t *testing.T, f func(t *testing.T, s blob.Store)) {
	t.Run("fs", func(t *testing.T) {
		s, err := blob.NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		f(t, s)
	})
	t.Run("s3", func(t *testing.T) { f(t, newS3(t, miniotest.Shared(t), "")) })
}

func TestPutGetStatList(t *testing.T) {
	forEachStore(t, func(t *testing.T, s blob.Store) {
		ctx := context.Background()
		until := time.Now().Add(time.Hour).Truncate(time.Second)
		objs := map[string][]byte{"a/1": []byte("one"), "a/2": []byte("two two"), "b/1": {}, "a/sub/3": bytes.Repeat([]byte{7}, 100_000)}
		for k, v := range objs {
			if err := s.Put(ctx, k, v, blob.PutOptions{RetainUntil: until, Mode: blob.Governance}); err != nil {
				t.Fatalf("put %s: %v", k, err)
			}
		}
		for k, v := range objs {
			got, err := s.Get(ctx, k)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("get %s: %v (%d bytes, want %d)", k, err, len(got), len(v))
			}
			info, err := s.Stat(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if info.Key != k || info.Size != int64(len(v)) || info.SHA256 != blob.Sum(v) || info.Mode != blob.Governance || !info.RetainUntil.Equal(until) {
				t.Fatalf("stat %s: %+v", k, info)
			}
		}
		list, err := s.List(ctx, "a/")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, i := range list {
			keys = append(keys, i.Key)
		}
		if fmt.Sprint(keys) != "[a/1 a/2 a/sub/3]" {
			t.Fatalf("list a/: %v", keys)
		}
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("get missing: %v", err)
		}
		if _, err := s.Stat(ctx, "a/nope"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("stat missing: %v", err)
		}
		for _, k := range []string{"", "/a", "a//b", "a/../b", "a/", "a\\b"} {
			if err := s.Put(ctx, k, nil, blob.PutOptions{}); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("put %q: %v", k, err)
			}
		}
	})
}

func TestWriteOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, s blob.Store) {
		ctx := context.Background()
		opts := blob.PutOptions{RetainUntil: time.Now().Add(time.Hour), Mode: blob.Governance}
		if err := s.Put(ctx, "k", []byte("first"), opts); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "k", []byte("first"), opts); err != nil {
			t.Fatalf("same content again: %v", err)
		}
		err := s.Put(ctx, "k", []byte("second"), blob.PutOptions{})
		if !errors.Is(err, blob.ErrExists) || blob.Retryable(err) {
			t.Fatalf("overwrite: %v", err)
		}
		got, err := s.Get(ctx, "k")
		if err != nil || string(got) != "first" {
			t.Fatalf("after refused overwrite: %q %v", got, err)
		}
	})
}

func TestRetentionRefusesDelete(t *testing.T) {
	forEachStore(t, func(t *testing.T, s blob.Store) {
		ctx := context.Background()
		for _, mode := range []blob.Mode{blob.Governance, blob.Compliance} {
			key := "locked-" + string(mode)
			if err := s.Put(ctx, key, []byte("x"), blob.PutOptions{RetainUntil: time.Now().Add(time.Hour), Mode: mode}); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, key); !errors.Is(err, blob.ErrRetained) {
				t.Fatalf("%s: delete: %v", mode, err)
			}
			if got, err := s.Get(ctx, key); err != nil || string(got) != "x" {
				t.Fatalf("%s: after refused delete: %q %v", mode, got, err)
			}
		}
		if err := s.Put(ctx, "expired", []byte("y"), blob.PutOptions{RetainUntil: time.Now().Add(2 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "free", []byte("z"), blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "free"); err != nil {
			t.Fatalf("delete unretained: %v", err)
		}
		if _, err := s.Stat(ctx, "free"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
	})
}

// TestObjectLockHoldsAgainstOtherClients goes around the package: the root
// user's own client cannot remove a locked version, nor bypass a
// compliance lock; a governance lock yields only to an explicit bypass.
func TestObjectLockHoldsAgainstOtherClients(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := srv.MakeBucket(t)
	s := newS3(t, srv, bucket)
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, mode := range []blob.Mode{blob.Compliance, blob.Governance} {
		key := "chunk-" + string(mode)
		if err := s.Put(ctx, key, []byte("payload"), blob.PutOptions{RetainUntil: time.Now().Add(time.Hour), Mode: mode}); err != nil {
			t.Fatal(err)
		}
		st, err := c.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{VersionID: st.VersionID}); err == nil {
			t.Fatalf("%s: removing the locked version succeeded", mode)
		}
		if mode == blob.Compliance {
			if err := c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{VersionID: st.VersionID, GovernanceBypass: true}); err == nil {
				t.Fatal("compliance: bypass removed the locked version")
			}
		}
		// An overwrite through the raw client makes a new version; the
		// locked one stays, byte for byte.
		if _, err := c.PutObject(ctx, bucket, key, strings.NewReader("forged"), 6, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		old, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{VersionID: st.VersionID})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(old)
		old.Close()
		if err != nil || string(b) != "payload" {
			t.Fatalf("%s: locked version now %q %v", mode, b, err)
		}
		if mode == blob.Governance {
			if err := c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{VersionID: st.VersionID, GovernanceBypass: true}); err != nil {
				t.Fatalf("governance with bypass: %v", err)
			}
		}
	}
}

func TestCheckBucketRefusesUnlocked(t *testing.T) {
	srv := miniotest.Shared(t)
	ak, sk := srv.RootCredentials()
	s, err := blob.NewS3(blob.S3Config{Endpoint: srv.URL(), Bucket: srv.MakePlainBucket(t), Credentials: blob.Credentials{AccessKey: ak, SecretKey: sk}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.CheckBucket(context.Background())
	if !errors.Is(err, blob.ErrBucketNotLocked) {
		t.Fatalf("CheckBucket on a plain bucket: %v", err)
	}
	t.Log(err)
	s, _ = blob.NewS3(blob.S3Config{Endpoint: srv.URL(), Bucket: "no-such-bucket", Credentials: blob.Credentials{AccessKey: ak, SecretKey: sk}})
	if err := s.CheckBucket(context.Background()); err == nil {
		t.Fatal("CheckBucket on a missing bucket succeeded")
	}
}

func TestCredentialsNeverShown(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := srv.MakeBucket(t)
	ak, sk := srv.RootCredentials()
	creds := blob.Credentials{AccessKey: ak, SecretKey: sk + "wrong"}
	cfg := blob.S3Config{Endpoint: srv.URL(), Bucket: bucket, Credentials: creds}
	for _, s := range []string{fmt.Sprint(creds), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		if strings.Contains(s, ak) || strings.Contains(s, sk) {
			t.Fatalf("credentials formatted: %s", s)
		}
	}
	s, err := blob.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	errs := []error{s.CheckBucket(ctx), s.Put(ctx, "k", []byte("v"), blob.PutOptions{})}
	_, err = s.Get(ctx, "k")
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("wrong secret key accepted")
		}
		if strings.Contains(err.Error(), ak) || strings.Contains(err.Error(), sk) {
			t.Fatalf("error shows credentials: %v", err)
		}
		if blob.Retryable(err) {
			t.Fatalf("refused credentials called retryable: %v", err)
		}
	}
	t.Log(errs[1])
}

// TestCorruptedTransfer flips a byte of every upload's body on its way to
// the server: the server must refuse it (the chunk signatures and the
// SHA-256 sent with it no longer match) and Put must fail with a retryable
// ErrChecksum, leaving nothing behind.
func TestCorruptedTransfer(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := srv.MakeBucket(t)
	target, _ := url.Parse(srv.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			if i := bytes.Index(b, []byte("precious")); i >= 0 {
				b[i] ^= 0x20
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	ak, sk := srv.RootCredentials()
	s, err := blob.NewS3(blob.S3Config{Endpoint: front.URL, Bucket: bucket, Credentials: blob.Credentials{AccessKey: ak, SecretKey: sk}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = s.Put(ctx, "k", []byte("precious data"), blob.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
	if !errors.Is(err, blob.ErrChecksum) || !blob.Retryable(err) {
		t.Fatalf("corrupted upload: %v, want a retryable ErrChecksum", err)
	}
	t.Log(err)
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("after corrupted upload: %v", err)
	}
}

func TestFSReadOnlyFiles(t *testing.T) {
	s, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), "a/b", []byte("x"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Dir() + "/data/a/b")
	if err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Fatalf("data file: %v %v", fi.Mode(), err)
	}
}

func TestRetryable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{blob.ErrNotFound, false},
		{fmt.Errorf("x: %w", blob.ErrExists), false},
		{blob.ErrRetained, false},
		{fmt.Errorf("x: %w", blob.ErrChecksum), true},
		{context.Canceled, false},
	} {
		if got := blob.Retryable(c.err); got != c.want {
			t.Errorf("Retryable(%v) = %v", c.err, got)
		}
	}
}

func TestS3Unreachable(t *testing.T) {
	s, err := blob.NewS3(blob.S3Config{Endpoint: "http://127.0.0.1:1", Bucket: "bucket", Credentials: blob.Credentials{AccessKey: "a", SecretKey: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Put(context.Background(), "k", []byte("v"), blob.PutOptions{})
	if err == nil || !blob.Retryable(err) {
		t.Fatalf("unreachable store: %v (retryable %v)", err, blob.Retryable(err))
	}
}

// TestFSCrashLeftovers: a meta file left by a Delete that crashed between
// its removals does not describe the next object under the key, and data
// whose meta file was lost gets it back from a Put of the same content.
func TestFSCrashLeftovers(t *testing.T) {
	s, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stale := s.Dir() + "/meta/k.json"
	if err := os.WriteFile(stale, []byte(`{"size":3,"sha256":"00","retain_until":"2999-01-01T00:00:00Z","mode":"COMPLIANCE"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", []byte("new"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(ctx, "k"); err != nil || info.SHA256 != blob.Sum([]byte("new")) || !info.RetainUntil.IsZero() {
		t.Fatalf("stat after stale meta: %+v %v", info, err)
	}
	if err := os.Remove(stale); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, blob.ErrRetained) {
		t.Fatalf("delete with retention unknown: %v", err)
	}
	if err := s.Put(ctx, "k", []byte("new"), blob.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(ctx, "k"); err != nil || info.SHA256 != blob.Sum([]byte("new")) || info.RetainUntil.IsZero() {
		t.Fatalf("stat after repair: %+v %v", info, err)
	}
}
