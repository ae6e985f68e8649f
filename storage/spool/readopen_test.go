package spool

import (
	"context"
	"errors"
	"testing"
)

// TestReadOpen: an open session's applied frames are read through the
// spool's descriptor; a closed or unknown session is ErrNotFound, for the
// caller to read through SessionFile.
func TestReadOpen(t *testing.T) {
	s, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	l, err := s.Create("a")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"first frame;", "second frame"} {
		lsn, err := l.Append([]byte(f))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Wait(ctx, lsn); err != nil {
			t.Fatal(err)
		}
		if err := s.waitApplied(ctx, lsn); err != nil {
			t.Fatal(err)
		}
	}
	var applied int64
	for _, o := range s.AppendOpenSessions(nil) {
		if o.ID == "a" {
			applied = o.Applied
		}
	}
	buf := make([]byte, applied)
	if n, err := s.ReadOpen("a", buf, 0); err != nil || string(buf[:n]) != "first frame;second frame" {
		t.Fatalf("ReadOpen: %q %v", buf[:n], err)
	}
	if _, err := s.ReadOpen("b", buf, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadOpen("a", buf, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("closed session: %v", err)
	}
}
