package node

import (
	"syscall"

	"github.com/phigate/phigate/storage/spool"
)

// What bounds the sessions a node holds is its open-file limit: each
// PostgreSQL session holds sessionFDs descriptors for its whole life (the
// agent's socket and the upstream's socket), and a node out of
// descriptors can neither accept nor record. Its recording's spool file
// is not one of them: the spool holds at most spoolFiles session files
// open, those written most recently, whatever the number of sessions.
const (
	sessionFDs = 2
	// spoolFiles is what the spool's open session files may take
	// (spool.Config.MaxOpenFiles, left at its default by the node): all
	// of it once that many sessions are being written at once.
	spoolFiles = spool.DefaultMaxOpenFiles
	// fdReserve is what the cap leaves for everything else. An idle
	// node holds about 35 descriptors (etcd's WAL, snapshot and
	// database, its peer and client listeners and streams, gossip, the
	// APIs, the spool's journal and spares, the shipper's ledger and
	// segment, logs: measured by bench/sessions). The rest is headroom
	// that grows with load rather than with sessions: connections still
	// in their TLS handshake (up to the handshake timeout, not counted
	// as sessions), catalog connections per resource, store uploads,
	// API and /metrics clients, other nodes' streams, the auditors' log.
	// 1024 covers a storm's handshakes at a few hundred per second on
	// top of those.
	fdReserve = 1024
)

// sessionCap returns the session cap for a configured max_sessions
// (0: derived) under an open-file limit of nofile, and how many
// sessions that limit leaves room for.
func sessionCap(configured int, nofile uint64) (limit, fit int) {
	fit = 1
	if reserved := uint64(fdReserve + spoolFiles); nofile > reserved+sessionFDs {
		fit = int(min(nofile-reserved, 1<<40) / sessionFDs)
	}
	if configured > 0 {
		return configured, fit
	}
	return fit, fit
}

// sessionCap is limits.max_sessions, or what the process's open-file
// limit allows (Go raised the soft limit to the hard one at start); it
// logs which, and warns when the configured cap is above what the limit
// allows.
func (n *Node) sessionCap() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		n.log.Warn("cannot read the open-file limit; sessions are not capped unless limits.max_sessions is set", "err", err)
		return n.cfg.Limits.MaxSessions
	}
	limit, fit := sessionCap(n.cfg.Limits.MaxSessions, r.Cur)
	switch {
	case n.cfg.Limits.MaxSessions == 0:
		n.log.Info("sessions capped by the open-file limit", "max_sessions", limit, "rlimit_nofile", r.Cur,
			"fds_per_session", sessionFDs, "fds_reserved", fdReserve, "fds_spool_files", spoolFiles)
	case limit > fit:
		n.log.Warn("limits.max_sessions is above what the open-file limit allows: sessions beyond it fail for want of file descriptors (raise LimitNOFILE / ulimit -n)",
			"max_sessions", limit, "allowed", fit, "rlimit_nofile", r.Cur, "fds_per_session", sessionFDs, "fds_reserved", fdReserve, "fds_spool_files", spoolFiles)
	default:
		n.log.Info("sessions capped", "max_sessions", limit, "rlimit_nofile", r.Cur)
	}
	return limit
}
