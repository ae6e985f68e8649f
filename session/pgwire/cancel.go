package pgwire

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// cancelKeys maps the BackendKeyData phigate gives each agent to the
// upstream backend behind it. Agents never see the upstream's key: a cancel
// must come through phigate, which checks the agent's key and then cancels
// upstream with the real one.
type cancelKeys struct {
	mu   sync.Mutex
	byID map[uint32]*conn
}

func newCancelKeys() *cancelKeys { return &cancelKeys{byID: map[uint32]*conn{}} }

// issue assigns c a fresh (pid, secret) pair.
func (k *cancelKeys) issue(c *conn) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) &^ (1 << 31) // positive, like a real pid
		if pid == 0 || k.byID[pid] != nil {
			continue
		}
		c.keyPID = pid
		copy(c.keySecret[:], b[4:])
		k.byID[pid] = c
		return
	}
}

func (k *cancelKeys) release(c *conn) {
	k.mu.Lock()
	if k.byID[c.keyPID] == c {
		delete(k.byID, c.keyPID)
	}
	k.mu.Unlock()
}

func (k *cancelKeys) lookup(pid uint32, secret []byte) *conn {
	k.mu.Lock()
	c := k.byID[pid]
	k.mu.Unlock()
	if c == nil || subtle.ConstantTimeCompare(c.keySecret[:], secret) != 1 {
		return nil
	}
	return c
}

// handleCancel serves a CancelRequest packet body (pid, secret). Like
// PostgreSQL it answers nothing either way, so a wrong key teaches nothing.
func (s *Server) handleCancel(ctx context.Context, body []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("cancel request panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	if len(body) < 8 {
		return
	}
	c := s.keys.lookup(binary.BigEndian.Uint32(body[:4]), body[4:])
	if c == nil {
		return
	}
	c.cancelUpstream(ctx, "client cancel request")
}

// cancelUpstream records the cancel, then sends it; a cancel that cannot
// be recorded (the session is ending) is not sent.
func (c *conn) cancelUpstream(ctx context.Context, why string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !c.recordCancel(ctx, why) {
		return
	}
	if err := sendCancel(ctx, c.up.host, c.up.port, c.up.pid, c.up.secretKey); err != nil {
		c.log.Warn("cancel upstream", "err", err)
	}
}
