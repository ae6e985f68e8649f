package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors callers branch on; a store's errors wrap them.
var (
	// ErrNotFound: no object under the key.
	ErrNotFound = errors.New("blob: no such object")
	// ErrExists: the key holds an object with other content; objects are
	// write-once.
	ErrExists = errors.New("blob: object exists with other content")
	// ErrRetained: the object is under retention and cannot be deleted.
	ErrRetained = errors.New("blob: object is under retention")
	// ErrChecksum: what the store holds is not what was sent (a transfer
	// or storage corruption). Worth a retry.
	ErrChecksum = errors.New("blob: checksum mismatch")
	// ErrInvalidKey: the key is empty, absolute, or has empty, "." or ".."
	// segments, backslashes or control characters.
	ErrInvalidKey = errors.New("blob: invalid key")
)

// Mode is a retention mode, named as S3 object lock names it.
type Mode string

const (
	// Governance: the retention holds unless a user with the right
	// permission bypasses it (S3 s3:BypassGovernanceRetention).
	Governance Mode = "GOVERNANCE"
	// Compliance: nobody, not even the bucket's root user, can delete
	// the object or shorten its retention before it ends.
	Compliance Mode = "COMPLIANCE"
)

// PutOptions says how long an object must be kept.
type PutOptions struct {
	// RetainUntil: the object cannot be deleted before this time. Zero: no
	// retention of the object's own (on S3 the bucket's default retention,
	// if it has one, still applies).
	RetainUntil time.Time
	// Mode of the retention. Empty means Governance.
	Mode Mode
}

func (o PutOptions) mode() Mode {
	if o.Mode == "" {
		return Governance
	}
	return o.Mode
}

func (o PutOptions) validate() error {
	switch o.Mode {
	case "", Governance, Compliance:
		return nil
	}
	return fmt.Errorf("blob: unknown retention mode %q", string(o.Mode))
}

// Info describes a stored object.
type Info struct {
	Key  string
	Size int64
	// SHA256 is the content's SHA-256, lowercase hex; empty when the store
	// did not say (S3 listings do not carry checksums).
	SHA256 string
	// RetainUntil and Mode: the object's retention; zero when it has none
	// or the store did not say (listings).
	RetainUntil time.Time
	Mode        Mode
}

// Store is a write-once object store. Keys are slash-separated paths
// (see ErrInvalidKey). Every method takes ctx first and honours its
// cancellation.
type Store interface {
	// Put stores data under key, or fails with ErrExists if key holds
	// other content; the same content again is a success that writes
	// nothing (the first retention stays). nil means the store confirmed
	// the object: its size and SHA-256 were read back.
	Put(ctx context.Context, key string, data []byte, opts PutOptions) error
	// Get returns the object's content, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Stat describes the object, or fails with ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns the objects whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Delete removes the object, or fails with ErrRetained while it is
	// under retention (or its retention is unknown), or ErrNotFound.
	Delete(ctx context.Context, key string) error
}

// Object is one object of a PutMany.
type Object struct {
	Key  string
	Data []byte
	Opts PutOptions
}

// Batcher is a Store that stores several objects together for less than a
// Put each. FS implements it: a batch's files are written first, then each
// is fdatasynced and each directory it touched fsynced once, where a Put
// pays for its own directory syncs. S3 does not: there each Put is durable
// on return and costs a round trip of its own, so callers overlap Puts
// instead.
type Batcher interface {
	Store
	// PutMany stores each object as Put would, and returns one error per
	// object, in order: nil means that object is confirmed (durable, its
	// size and SHA-256 read back), exactly as from Put. Objects succeed or
	// fail alone; a failed one may be given to Put or PutMany again.
	PutMany(ctx context.Context, objs []Object) []error
}

// Sum returns data's SHA-256 as Info.SHA256 spells it.
func Sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// ValidKey reports (as ErrInvalidKey, wrapped) why key cannot name an object.
func ValidKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	if key == "" {
		return bad("empty")
	}
	if len(key) > 1024 {
		return bad("longer than 1024 bytes")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return bad("control character or backslash")
		}
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return bad("empty segment (leading, trailing or double slash)")
		case ".", "..":
			return bad("dot segment")
		}
	}
	return nil
}

// retryable is implemented by errors that know whether a retry may help.
type retryable interface{ Retryable() bool }

// Retryable reports whether another attempt of the same call may succeed:
// true for a store that is unreachable, overloaded or failing (network
// errors, timeouts of a single attempt, HTTP 5xx, 429, throttling) and for
// ErrChecksum; false for ErrNotFound, ErrExists, ErrRetained,
// ErrInvalidKey, refused credentials or permissions, a misconfigured bucket,
// and a cancelled caller context.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrChecksum):
		return true
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrExists), errors.Is(err, ErrRetained),
		errors.Is(err, ErrInvalidKey):
		return false
	}
	var r retryable
	if errors.As(err, &r) {
		return r.Retryable()
	}
	return false
}
