package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Credentials are an S3 access key pair. They format and log as a
// placeholder; this package never puts them in an error.
type Credentials struct {
	AccessKey string
	SecretKey string
}

// String hides the keys.
func (c Credentials) String() string { return "[credentials redacted]" }

// GoString hides the keys from %#v.
func (c Credentials) GoString() string { return c.String() }

// LogValue hides the keys from slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// CredentialsFromEnv reads PHIGATE_S3_ACCESS_KEY and PHIGATE_S3_SECRET_KEY,
// else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func CredentialsFromEnv() (Credentials, error) {
	for _, names := range [][2]string{
		{"PHIGATE_S3_ACCESS_KEY", "PHIGATE_S3_SECRET_KEY"},
		{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
	} {
		c := Credentials{AccessKey: os.Getenv(names[0]), SecretKey: os.Getenv(names[1])}
		if c.AccessKey != "" && c.SecretKey != "" {
			return c, nil
		}
	}
	return Credentials{}, errors.New("blob: s3: no credentials in the environment (PHIGATE_S3_ACCESS_KEY and PHIGATE_S3_SECRET_KEY, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
}

// CredentialsFromFile reads a file of "name = value" lines with the names
// access_key and secret_key ("#" starts a comment line). Errors name the
// file and the line number, never a value.
func CredentialsFromFile(path string) (Credentials, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("blob: s3: credentials: %w", err)
	}
	var c Credentials
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok:
			return Credentials{}, fmt.Errorf("blob: s3: credentials %s line %d: want name = value", path, i+1)
		case name == "access_key":
			c.AccessKey = value
		case name == "secret_key":
			c.SecretKey = value
		default:
			return Credentials{}, fmt.Errorf("blob: s3: credentials %s line %d: unknown name %q", path, i+1, name)
		}
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return Credentials{}, fmt.Errorf("blob: s3: credentials %s: need access_key and secret_key", path)
	}
	return c, nil
}

// S3Config says where an S3 store is.
type S3Config struct {
	// Endpoint is the store's URL: https://host[:port] (or http:// for a
	// test server). Required.
	Endpoint string
	// Bucket is the bucket's name. Required.
	Bucket string
	// Region; empty lets the client discover it.
	Region string
	// Credentials; required (see CredentialsFromEnv, CredentialsFromFile).
	Credentials Credentials
	// TLS configures https endpoints (a private CA in RootCAs, for
	// example). Nil: the system's roots.
	TLS *tls.Config
	// Timeout bounds each request. Zero: one minute.
	Timeout time.Duration
}

// S3 is a Store in an S3-compatible bucket with versioning and object lock
// (see CheckBucket). Every object is put with If-None-Match: * (so that a
// key is never given a second version by this package), its SHA-256 for the
// server to verify, and its retention as an object lock
// (PutOptions); then read back (size, SHA-256, retention) before Put
// returns nil.
//
// The client does not retry: one call is one attempt (see Retryable).
type S3 struct {
	client *minio.Client
	bucket string
	// secrets are scrubbed from every error message (no server is known
	// to echo them; this makes sure).
	secrets []string
}

var _ Store = (*S3)(nil)

// NewS3 validates cfg and makes the client; it does not contact the store.
func NewS3(cfg S3Config) (*S3, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("blob: s3: endpoint %q: want https://host[:port]", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("blob: s3: no bucket")
	}
	if cfg.Credentials.AccessKey == "" || cfg.Credentials.SecretKey == "" {
		return nil, errors.New("blob: s3: no credentials")
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		TLSClientConfig:       cfg.TLS,
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:           credentials.NewStaticV4(cfg.Credentials.AccessKey, cfg.Credentials.SecretKey, ""),
		Secure:          u.Scheme == "https",
		Region:          cfg.Region,
		Transport:       tr,
		MaxRetries:      1,
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("blob: s3: %w", err)
	}
	return &S3{client: client, bucket: cfg.Bucket,
		secrets: []string{cfg.Credentials.AccessKey, cfg.Credentials.SecretKey}}, nil
}

// ErrBucketNotLocked is wrapped by CheckBucket's error for a bucket
// without versioning or object lock.
var ErrBucketNotLocked = errors.New("blob: s3: bucket lacks versioning or object lock")

// CheckBucket verifies that the bucket exists and has versioning and object
// lock enabled. A node must refuse to ship recordings to a bucket that
// fails it unless told otherwise: without object lock, anyone holding the
// bucket's credentials can delete or replace recordings.
func (s *S3) CheckBucket(ctx context.Context) error {
	v, err := s.client.GetBucketVersioning(ctx, s.bucket)
	if err != nil {
		return s.wrap("check bucket", "", err)
	}
	if !v.Enabled() {
		return fmt.Errorf("blob: s3: bucket %s: versioning is %q, not Enabled: %w", s.bucket, v.Status, ErrBucketNotLocked)
	}
	lock, _, _, _, err := s.client.GetObjectLockConfig(ctx, s.bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "ObjectLockConfigurationNotFoundError" {
			return fmt.Errorf("blob: s3: bucket %s: no object lock configuration (the bucket must be created with object lock): %w", s.bucket, ErrBucketNotLocked)
		}
		return s.wrap("check bucket", "", err)
	}
	if lock != "Enabled" {
		return fmt.Errorf("blob: s3: bucket %s: object lock is %q, not Enabled: %w", s.bucket, lock, ErrBucketNotLocked)
	}
	return nil
}

// Put implements Store.
func (s *S3) Put(ctx context.Context, key string, data []byte, opts PutOptions) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := opts.validate(); err != nil {
		return err
	}
	raw := sha256.Sum256(data)
	sum := hex.EncodeToString(raw[:])
	po := minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		DisableMultipart: true,
		// The client sends the body's SHA-256 (x-amz-checksum-sha256);
		// the server verifies it and refuses the object on a mismatch.
		Checksum: minio.ChecksumSHA256,
	}
	if !opts.RetainUntil.IsZero() {
		po.Mode = minio.RetentionMode(opts.mode())
		po.RetainUntilDate = opts.RetainUntil.UTC()
	}
	po.SetMatchETagExcept("*") // write-once: never a second version
	up, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), po)
	if err != nil {
		if code := minio.ToErrorResponse(err).Code; code == "PreconditionFailed" {
			// The key exists: the same content is a success.
			info, serr := s.Stat(ctx, key)
			if serr != nil {
				return serr
			}
			if info.SHA256 != sum || info.Size != int64(len(data)) {
				return fmt.Errorf("blob: s3: put %s: %w", key, ErrExists)
			}
			return nil
		}
		if minio.ToErrorResponse(err).Code == "SignatureDoesNotMatch" && s.credentialsWork(ctx) {
			// The same keys sign a bodiless request well: it was the body
			// (signed chunk by chunk) that changed on its way.
			return fmt.Errorf("blob: s3: put %s: body altered in transit (chunk signature mismatch): %w", key, ErrChecksum)
		}
		return s.wrap("put", key, err)
	}
	// Read back the version just written: an upload counts only after the
	// store confirmed it.
	st, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{VersionID: up.VersionID, Checksum: true})
	if err != nil {
		return s.wrap("put: read back", key, err)
	}
	got, _ := base64.StdEncoding.DecodeString(st.ChecksumSHA256)
	if len(data) == 0 && st.ChecksumSHA256 == "" {
		got = raw[:] // an empty object carries no checksum: its size says it all
	}
	if st.Size != int64(len(data)) || !bytes.Equal(got, raw[:]) {
		return fmt.Errorf("blob: s3: put %s: read back size %d sha256 %x, sent %d %s: %w",
			key, st.Size, got, len(data), sum, ErrChecksum)
	}
	if !opts.RetainUntil.IsZero() {
		until, mode := retention(st)
		if mode != opts.mode() || until.Before(opts.RetainUntil.Truncate(time.Second)) {
			return fmt.Errorf("blob: s3: put %s: read back retention %s until %s, asked %s until %s",
				key, mode, until.Format(time.RFC3339), opts.mode(), opts.RetainUntil.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// credentialsWork reports whether a signed request without a body succeeds.
func (s *S3) credentialsWork(ctx context.Context) bool {
	_, err := s.client.BucketExists(ctx, s.bucket)
	return err == nil
}

func retention(st minio.ObjectInfo) (time.Time, Mode) {
	until, _ := time.Parse(time.RFC3339, st.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"))
	return until, Mode(st.Metadata.Get("X-Amz-Object-Lock-Mode"))
}

// Get implements Store. The content is checked against the SHA-256 the
// server holds for it.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{Checksum: true})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	defer obj.Close()
	// The object's size first, so that the content is read into one
	// buffer of that size (a growing buffer zeroed and copied it several
	// times over: most of what verifying a store from S3 cost).
	st, err := obj.Stat()
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	var buf bytes.Buffer
	if st.Size > 0 && st.Size < 1<<30 {
		buf.Grow(int(st.Size) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(obj); err != nil {
		return nil, s.wrap("get", key, err)
	}
	if st.ChecksumSHA256 != "" {
		want, _ := base64.StdEncoding.DecodeString(st.ChecksumSHA256)
		got := sha256.Sum256(buf.Bytes())
		if !bytes.Equal(want, got[:]) {
			return nil, fmt.Errorf("blob: s3: get %s: %w", key, ErrChecksum)
		}
	}
	return buf.Bytes(), nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	st, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{Checksum: true})
	if err != nil {
		return Info{}, s.wrap("stat", key, err)
	}
	info := Info{Key: key, Size: st.Size}
	if b, err := base64.StdEncoding.DecodeString(st.ChecksumSHA256); err == nil && len(b) == sha256.Size {
		info.SHA256 = hex.EncodeToString(b)
	} else if st.Size == 0 {
		info.SHA256 = Sum(nil)
	}
	info.RetainUntil, info.Mode = retention(st)
	return info, nil
}

// List implements Store: the current versions, without SHA-256 or
// retention (Stat each for those).
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	var out []Info
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, s.wrap("list", prefix, o.Err)
		}
		out = append(out, Info{Key: o.Key, Size: o.Size})
	}
	return out, nil
}

// Delete implements Store: it removes every version of key, and fails with
// ErrRetained as soon as the object lock refuses one (it never bypasses a
// governance retention).
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	found := false
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: key, WithVersions: true}) {
		if o.Err != nil {
			return s.wrap("delete", key, o.Err)
		}
		if o.Key != key {
			continue
		}
		found = true
		if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{VersionID: o.VersionID}); err != nil {
			return s.wrap("delete", key, err)
		}
	}
	if !found {
		return fmt.Errorf("blob: s3: delete %s: %w", key, ErrNotFound)
	}
	return nil
}

// s3Error carries what the server or the network said, classified.
type s3Error struct {
	op, key   string
	code      string
	status    int
	retryable bool
	msg       string // err's message, credentials scrubbed
	err       error
	sentinel  error
}

func (e *s3Error) Error() string {
	var b strings.Builder
	b.WriteString("blob: s3: " + e.op)
	if e.key != "" {
		b.WriteString(" " + e.key)
	}
	if e.sentinel != nil {
		b.WriteString(": " + e.sentinel.Error())
	}
	if e.code != "" {
		fmt.Fprintf(&b, ": %s (HTTP %d)", e.code, e.status)
		if e.status == 0 || e.status == http.StatusBadRequest {
			b.WriteString(": " + e.msg)
		}
	} else {
		b.WriteString(": " + e.msg)
	}
	return b.String()
}

func (e *s3Error) Unwrap() []error {
	if e.sentinel != nil {
		return []error{e.sentinel, e.err}
	}
	return []error{e.err}
}

func (e *s3Error) Retryable() bool { return e.retryable }

// wrap classifies a minio-go error. Its message is left out for server
// errors (the code and status say what happened), so that nothing the
// request carried can end up in a log through it.
func (s *S3) wrap(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("blob: s3: %s %s: %w", op, key, err)
	}
	e := &s3Error{op: op, key: key, err: err, msg: err.Error()}
	for _, secret := range s.secrets {
		if secret != "" {
			e.msg = strings.ReplaceAll(e.msg, secret, "[redacted]")
		}
	}
	resp := minio.ToErrorResponse(err)
	if resp.Code == "" && resp.StatusCode == 0 {
		// Not an answer from the server: the network, DNS, TLS.
		var nerr net.Error
		var uerr *url.Error
		e.retryable = errors.As(err, &nerr) || errors.As(err, &uerr) || minio.IsNetworkOrHostDown(err, true)
		return e
	}
	e.code, e.status = resp.Code, resp.StatusCode
	switch {
	case resp.Code == "NoSuchKey" || resp.Code == "NoSuchVersion":
		e.sentinel = ErrNotFound
	case resp.Code == "ObjectLocked", strings.Contains(strings.ToLower(resp.Message), "worm"):
		// MinIO answers InvalidRequest or AccessDenied "Object is WORM
		// protected"; AWS answers AccessDenied.
		e.sentinel = ErrRetained
	case resp.Code == "BadDigest" || resp.Code == "XAmzContentChecksumMismatch" ||
		resp.Code == "XAmzContentSHA256Mismatch" || resp.Code == "InvalidDigest":
		e.sentinel = ErrChecksum
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests,
		resp.Code == "SlowDown", resp.Code == "RequestTimeout", resp.Code == "RequestTimeTooSkewed":
		e.retryable = true
	}
	return e
}
