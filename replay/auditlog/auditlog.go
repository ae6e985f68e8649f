// Package auditlog records what auditors do with recordings, in a log of
// its own beside the node's recordings (data_dir/auditlog): a spool like
// theirs, one hash-chained recording per act, read with `phigate replay
// --audit-log`. The acts are unsealing a session's masked values
// (Log.Unseal) and decrypting a session read back from object storage for
// replay (Log.Begin, then Act.End, around the decryption).
//
// The rule it keeps: nothing is shown before it is recorded. Log.Unseal
// and Log.Begin make the auditor's intent (who, which session, why) durable
// before the first raw value or event is decrypted, nothing is shown when
// that fails, and afterwards the log records how many values were shown,
// or that showing failed.
//
// The package never logs what it shows (raw values are PHI) and never
// writes to the recordings it reads.
package auditlog

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sync"
	"time"

	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/spool"
)

// Config configures an audit log.
type Config struct {
	// Dir is the audit log's spool directory (the node's
	// data_dir/auditlog). It is created if missing. Required.
	Dir string
	// SegmentBytes is the size of the log's journal segments. Zero means
	// the spool's default.
	SegmentBytes int64
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	sp   *spool.Spool
	rec  *session.Recorder
	host string

	stop      context.CancelFunc
	done      chan error
	closeOnce sync.Once
	closeErr  error
}

// Open opens the audit log in cfg.Dir and starts writing it: it takes the
// directory's lock (an Open while another holds it fails, wrapping
// spool.ErrLocked), recovers the log, and ends the records of acts a crash
// cut short, as "recovered". Close it when done.
func Open(cfg Config) (*Log, error) {
	if cfg.Dir == "" {
		return nil, errors.New("auditlog: Config.Dir is required")
	}
	sp, err := spool.Open(spool.Config{Dir: cfg.Dir, SegmentBytes: cfg.SegmentBytes})
	if err != nil {
		return nil, fmt.Errorf("auditlog: open %s: %w", cfg.Dir, err)
	}
	host, _ := os.Hostname()
	// The spool must outlive any caller's context: an act's outcome is
	// recorded after what it showed, whatever happened to the caller.
	ctx, stop := context.WithCancel(context.Background())
	l := &Log{sp: sp, rec: session.NewRecorder(sp, "phigate-unseal@"+host), host: host, stop: stop, done: make(chan error, 1)}
	go func() { l.done <- sp.Run(ctx) }()
	for _, id := range sp.Recovered() {
		if err := l.rec.CloseRecovered(ctx, id); err != nil {
			return nil, errors.Join(fmt.Errorf("auditlog: end the record cut short %s: %w", id, err), l.Close())
		}
	}
	return l, nil
}

// Request is one unsealing, or another act on a session's recording.
type Request struct {
	Session string           // the session whose raw values are shown
	Auditor string           // who unseals, as they name themselves
	Reason  string           // why
	Key     *ecdh.PrivateKey // the auditor private key (Unseal)
	// Act names an act other than unsealing (Begin), for example
	// "decrypt (replay from s3://bucket)"; it is recorded in front of the
	// reason. Empty: unsealing.
	Act string
}

// Unseal records the intent of req durably, then shows on w the raw values
// behind req.Session's masked output, read from store (replay.Unseal), and
// records how many it showed. If the intent cannot be made durable it shows
// nothing and returns an error wrapping session.ErrNotRecorded. It returns
// the number of raw values shown.
//
// The record names the auditor as given, with the operating-system user
// and host that ran the unsealing.
func (l *Log) Unseal(ctx context.Context, w io.Writer, store replay.Store, req Request) (int, error) {
	act, err := l.Begin(ctx, req)
	if err != nil {
		return 0, err
	}
	n, uerr := replay.Unseal(ctx, w, store, req.Session, req.Key)
	return n, errors.Join(uerr, act.End(ctx, n, uerr))
}

// Act is an auditor's act whose intent is durable; End records how it
// went.
type Act struct {
	rec    *session.Recording
	intent record.Unseal
}

// Begin records durably that req.Auditor is about to act on req.Session
// (unseal, or req.Act), with the operating-system user and host, and
// returns the act; the caller acts only after Begin returned nil, then
// calls End. If the intent cannot be made durable it returns an error
// wrapping session.ErrNotRecorded, and the act must not happen.
//
// Acts are recorded as unseal events (the recording format has no other
// kind for an auditor's act); Act goes in front of the reason.
func (l *Log) Begin(ctx context.Context, req Request) (*Act, error) {
	if !session.ValidID(req.Session) {
		return nil, fmt.Errorf("auditlog: %q is not a session id", req.Session)
	}
	who := req.Auditor
	if u, err := user.Current(); err == nil {
		who = fmt.Sprintf("%s (os user %s on %s)", req.Auditor, u.Username, l.host)
	}
	reason := req.Reason
	if req.Act != "" {
		reason = req.Act
		if req.Reason != "" {
			reason += ": " + req.Reason
		}
	}
	rec, err := l.rec.Start(session.NewID(time.Now()))
	if err != nil {
		return nil, refused(err)
	}
	rec.SetSubject(req.Auditor, "")
	act := &Act{rec: rec, intent: record.Unseal{Auditor: who, Session: req.Session, Reason: reason}}
	intent := act.intent
	if _, err := rec.Append(&record.Event{Kind: record.KindUnseal, Unseal: &intent}); err != nil {
		return nil, refused(err)
	}
	if err := rec.Sync(ctx); err != nil {
		return nil, refused(err)
	}
	return act, nil
}

// End records the act's outcome: how many values (or events) it showed,
// and whether it failed; then closes its record. It returns an error when
// the outcome could not be recorded (the next Open ends the record as
// recovered).
func (a *Act) End(ctx context.Context, values int, failure error) error {
	outcome := a.intent
	outcome.Done, outcome.Values = true, values
	endReason := "unsealed"
	if failure != nil {
		endReason = "unseal failed"
	}
	if _, err := a.rec.Append(&record.Event{Kind: record.KindUnseal, Unseal: &outcome}); err != nil {
		return fmt.Errorf("auditlog: record the outcome: %w", err)
	}
	if _, err := a.rec.Append(&record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: endReason}}); err != nil {
		return fmt.Errorf("auditlog: record the outcome: %w", err)
	}
	if err := a.rec.Close(ctx); err != nil {
		return fmt.Errorf("auditlog: record the outcome: %w", err)
	}
	return nil
}

func refused(err error) error {
	return fmt.Errorf("auditlog: cannot record the act, so nothing is shown: %w", err)
}

// Close stops the log's spool, after which every frame appended is durable
// and in its file, and releases the directory. Acts whose records did not
// close are ended as "recovered" by the next Open. Close is idempotent.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.stop()
		err := <-l.done
		l.closeErr = errors.Join(err, l.sp.Close())
		if l.closeErr != nil {
			l.closeErr = fmt.Errorf("auditlog: close: %w", l.closeErr)
		}
	})
	return l.closeErr
}
