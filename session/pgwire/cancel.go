package pgwire

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// Cancel keys across the cluster.
//
// A CancelRequest arrives on a connection of its own, and DNS round-robin
// may take it to any node, not the one holding the session. So the key
// phigate hands an agent (BackendKeyData) says which node issued it:
//
//	pid    (4 bytes, big-endian) = 0 | node number (11 bits) | serial (20 bits, random)
//	secret (4 bytes)             = random
//
// The top bit is zero, so the pid is positive like a real one, and it is
// never zero. A node has up to 2^20 keys in use at once, each unique on
// the node; node numbers (0..2047) are unique in the cluster (the cluster
// assigns them), so keys are unique in the cluster. The node number is not
// a secret: knowing it only routes a guess to the node that will refuse it.
//
// A node given a key carrying another node's number passes it on
// (Config.ForwardCancel); that node checks it with Server.Cancel exactly as
// a CancelRequest of its own. Neither answers the agent anything, as
// PostgreSQL does not, so a wrong key teaches nothing.
const (
	// MaxNodeNumber is the largest Config.NodeNumber.
	MaxNodeNumber = 1<<cancelNodeBits - 1

	cancelNodeBits   = 11
	cancelSerialBits = 20
	cancelSerialMask = 1<<cancelSerialBits - 1
	// cancelKeyLen is the only key length phigate issues: a key of any
	// other length (protocol 3.2 allows longer secrets) is not one of ours.
	cancelKeyLen = 8
	// forwardCancelTimeout bounds a forwarded cancel, so that a dead peer
	// holds a cancelling client's connection no longer than this.
	forwardCancelTimeout = 5 * time.Second
)

// cancelKey is a decoded CancelRequest key.
type cancelKey struct {
	pid    uint32
	node   uint16
	secret []byte // aliases the decoded body
}

// decodeCancelKey reads a CancelRequest body (pid, secret). ok is false
// for a body that cannot be a key phigate issued: wrong length, top bit
// set, or zero pid.
func decodeCancelKey(body []byte) (k cancelKey, ok bool) {
	if len(body) != cancelKeyLen {
		return cancelKey{}, false
	}
	pid := binary.BigEndian.Uint32(body[:4])
	if pid == 0 || pid>>31 != 0 {
		return cancelKey{}, false
	}
	return cancelKey{pid: pid, node: uint16(pid >> cancelSerialBits), secret: body[4:]}, true
}

// cancelPID is the pid of serial on node.
func cancelPID(node uint16, serial uint32) uint32 {
	return uint32(node)<<cancelSerialBits | serial&cancelSerialMask
}

// cancelKeys maps the BackendKeyData phigate gives each agent to the
// upstream backend behind it. Agents never see the upstream's key: a cancel
// must come through phigate, which checks the agent's key and then cancels
// upstream with the real one.
type cancelKeys struct {
	node uint16
	mu   sync.Mutex
	byID map[uint32]*conn
}

func newCancelKeys(node uint16) *cancelKeys {
	return &cancelKeys{node: node, byID: map[uint32]*conn{}}
}

// issue assigns c a fresh (pid, secret) pair carrying this node's number.
func (k *cancelKeys) issue(c *conn) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		pid := cancelPID(k.node, binary.BigEndian.Uint32(b[:4]))
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

// lookup is the session key belongs to, or nil; the secret is compared
// in constant time.
func (k *cancelKeys) lookup(key cancelKey) *conn {
	k.mu.Lock()
	c := k.byID[key.pid]
	k.mu.Unlock()
	if c == nil || subtle.ConstantTimeCompare(c.keySecret[:], key.secret) != 1 {
		return nil
	}
	return c
}

// handleCancel serves a CancelRequest packet body (pid, secret) on the
// connection that carried it, from remote. Like PostgreSQL it answers
// nothing either way. A key of this node cancels its session; a key of
// another node is forwarded to that node (Config.ForwardCancel), within
// forwardCancelTimeout.
func (s *Server) handleCancel(ctx context.Context, body []byte, remote string) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("cancel request panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	key, ok := decodeCancelKey(body)
	if !ok {
		s.unknownCancel.log(s.log, "cancel request with an unknown key dropped", "remote", remote)
		return
	}
	if key.node != s.cfg.NodeNumber {
		if s.cfg.ForwardCancel == nil {
			s.unknownCancel.log(s.log, "cancel request for another node dropped: no forwarding", "remote", remote, "key_node", key.node)
			return
		}
		fctx, cancel := context.WithTimeout(ctx, forwardCancelTimeout)
		defer cancel()
		s.cfg.ForwardCancel(fctx, key.node, body)
		return
	}
	c := s.keys.lookup(key)
	if c == nil {
		s.unknownCancel.log(s.log, "cancel request with an unknown key dropped", "remote", remote)
		return
	}
	c.cancelUpstream(ctx, "client cancel request")
}

// Cancel serves a CancelRequest key (pid and secret, as the agent sent
// them) that another node received and forwarded (Config.ForwardCancel on
// that node); from names that node, for the recording. It checks the key
// exactly as a CancelRequest of its own, then records the cancel and sends
// it upstream, and reports whether a session of this node matched. A key
// that is unknown, forged, or carries another node's number matches
// nothing: Cancel never forwards in turn.
func (s *Server) Cancel(ctx context.Context, key []byte, from string) (matched bool) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("forwarded cancel panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			matched = false
		}
	}()
	k, ok := decodeCancelKey(key)
	var c *conn
	if ok && k.node == s.cfg.NodeNumber {
		c = s.keys.lookup(k)
	}
	if c == nil {
		s.unknownCancel.log(s.log, "forwarded cancel request with an unknown key dropped", "from", from)
		return false
	}
	c.cancelUpstream(ctx, "client cancel request (forwarded from node "+from+")")
	return true
}

// cancelUpstream records the cancel, then sends it; a cancel that cannot
// be recorded (the session is ending) is not sent.
func (c *conn) cancelUpstream(ctx context.Context, why string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c.cancelHold() {
		why += "; the command waiting for approval is withdrawn"
	}
	if !c.recordCancel(ctx, why) {
		return
	}
	if err := sendCancel(ctx, c.up.host, c.up.port, c.up.pid, c.up.secretKey); err != nil {
		c.log.Warn("cancel upstream", "err", err)
	}
}

// logLimiter logs at most cancelLogBurst lines per second, and says how
// many it left out: whoever sends bad keys decides how often we would
// log, and must not decide how much.
type logLimiter struct {
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed int
}

const cancelLogBurst = 5

func (l *logLimiter) log(log *slog.Logger, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= cancelLogBurst {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.n++
	suppressed := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed_since_last", suppressed)
	}
	log.Warn(msg, args...)
}
