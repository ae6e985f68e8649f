package pgwire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/benchstage"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/resource"
	"github.com/phigate/phigate/session/sqlclass"
)

// conn is one proxied session. After login two goroutines run it: frontend
// (agent -> upstream) and backend (upstream -> agent). Fields set during
// login are read-only afterwards; fe and be are owned by their goroutine;
// the rest is shared under mu, as marked.
type conn struct {
	srv     *Server
	id      string
	log     *slog.Logger
	started time.Time
	st      *startup

	client net.Conn
	up     *upstream
	// rec is safe for concurrent use; appends after session.end are
	// refused under mu (closed).
	rec *session.Recording

	ident identity.Identity
	// admitted is what the session was admitted with at login, which every
	// new snapshot re-checks (Server.Recheck, conn.readmit); written once
	// under the server's mu.
	admitted session.Admission
	res      *resource.Resource
	// grant is the grant as of the latest snapshot the frontend saw (its
	// classes and functions can change live); frontend-owned after login.
	grant *policy.Grant
	// prof masks results (nil: they are not masked). It may change to
	// another profile when the policy changes (readmit), from the next
	// result on; a result is masked by the one profile it started with.
	prof atomic.Pointer[mask.Profile]
	// subjects are the resource's subject columns (date-shift per
	// person), as of the latest snapshot: set at login and by readmit,
	// read by the backend when it plans a result.
	subjects atomic.Pointer[mask.Subjects]
	cat      *catalog
	proofs   *proof.Collector // nil: no masking proof (no profile, or no auditor key); backend-owned

	// approvalWait is set while the frontend waits for a command's
	// approval (approval.go): a cancel request ends the wait.
	approvalWait atomic.Pointer[holdMark]

	keyPID    uint32
	keySecret [4]byte

	// writeAhead: commands are durable before they reach the upstream.
	// Sessions whose grant is read-only (and whose upstream session is
	// read-only too) may run a command while its event is being synced,
	// because nothing it does can change data and none of its output
	// leaves before the event is durable.
	writeAhead bool
	// readAhead: in a write-ahead session, proven reads are the exception
	// (frontend.go, forwarding); the grant's read_ahead.
	readAhead bool
	// cmdPos is the recording position of the latest command (or COPY data)
	// event: no output goes to the agent before it is durable.
	cmdPos atomic.Uint64

	fe frontendState
	be backendState

	// progress is signalled (without blocking) each time the backend
	// consumes answers; backendDone is closed when the backend has ended.
	progress    chan struct{}
	backendDone chan struct{}

	mu     sync.Mutex
	queue  []*expect   // answers the upstream owes: frontend appends, backend pops
	server serverState // the server's named objects, as confirmed (state.go)
	tx     txState     // the server's transaction state, as answered so far (backend writes)
	// lastErr is the first fatal error for the agent, sent by the backend
	// as it ends; reason why the session ended (first cause wins).
	lastErr *pgproto3.ErrorResponse
	reason  string
	// closed: session.end is being recorded; nothing else may be.
	closed bool
}

// expKind is what the upstream will answer to one forwarded message.
type expKind uint8

const (
	expParse          expKind = iota // ParseComplete
	expBind                          // BindComplete
	expDescribeStmt                  // ParameterDescription, then RowDescription or NoData
	expDescribePortal                // RowDescription or NoData
	expExecute                       // rows, then CommandComplete, EmptyQueryResponse or PortalSuspended
	expClose                         // CloseComplete
	expSync                          // ReadyForQuery
	expQuery                         // per statement: rows and CommandComplete; then ReadyForQuery
	expFunction                      // FunctionCallResponse, then ReadyForQuery
)

// expect is one pending answer, and the change to the server's named
// objects that the answer confirms.
type expect struct {
	kind  expKind
	batch uint64 // frontendState.batch when sent
	// hidden marks messages phigate injected: their answers are not
	// forwarded.
	hidden bool
	// deny replaces the upstream's error: the message was swapped for one
	// certain to fail because phigate refused it.
	deny *pgproto3.ErrorResponse
	// name is the statement a Parse defines, the portal a Bind defines, or
	// what a Close closes (closeType 'S' or 'P').
	name      string
	closeType byte
	stmt      *stmtInfo
	portal    *portalInfo
	cmd       *command
	// copyDesc marks the hidden describe of a COPY TO's columns.
	copyDesc *command

	// Snapshots (snapshot.go). step: a message of phigate's own snapshot
	// step, answered to the step (last: its answer ends the step); read:
	// the rows it answers with. hold: the agent's message that ends the
	// transaction block phigate opened; its ReadyForQuery (and a Query's
	// last CommandComplete) wait for the block's end.
	step *step
	last bool
	read *snapRead
	hold *wrap
}

// command is a recorded command in flight: one Query, one Execute, one
// function call, or (parse) one Parse.
type command struct {
	id    uint64
	start time.Time
	stmts []sqlclass.Statement
	defs  []def // what its PREPARE and DECLARE statements define (nil: nothing)
	parse bool
	// backend-owned progress through the command's statements
	index    int
	run      stmtRun
	errored  bool
	copyCols []pgproto3.FieldDescription // columns of a COPY TO, from the hidden describe
	copyDesc bool                        // a describe was sent; copyCols may be nil if it failed
	// change is the statement's snapshot in progress (nil: none).
	change *changeRun
}

// stmtRun accumulates one statement's result.
type stmtRun struct {
	start   time.Time
	rows    int64
	bytes   int64
	plan    *mask.Plan
	planned bool
	copy    *copyPlan
	refused *pgproto3.ErrorResponse // the statement's output was withheld
}

func (c *conn) serve(ctx context.Context, st *startup) {
	if err := c.login(ctx, st); err != nil {
		return
	}
	defer c.up.conn.Close()
	_ = c.client.SetDeadline(time.Time{})
	c.server = newServerState()
	c.tx = txState{status: c.up.txStatus}
	c.progress = make(chan struct{}, 1)
	c.backendDone = make(chan struct{})
	c.be.params.DateStyle = c.up.params["DateStyle"]

	if exp := c.ident.Expires; !exp.IsZero() {
		// A session lives no longer than the credential that opened it.
		expired := time.AfterFunc(time.Until(exp), func() {
			c.log.Info("session ended: its token expired")
			c.revoke(errTokenExpired)
		})
		defer expired.Stop()
	}
	if err := c.greet(ctx); err != nil {
		c.setReason("recording failed")
		c.finish()
		return
	}
	c.log.Info("session started", "resource", c.res.Name, "grant", c.grant.Name)
	obs := c.srv.cfg.Observer
	if obs != nil {
		obs.SessionStarted()
	}
	idx := c.srv.cfg.Index
	if idx != nil {
		idx.Started(c.id, c.ident.Name, c.res.Name, c.client.RemoteAddr().String(), time.Now())
	}
	c.relay(ctx)
	reason := c.finish()
	if obs != nil {
		obs.SessionEnded(endClass(reason))
	}
	if idx != nil {
		idx.Ended(c.id, time.Now(), endClass(reason))
	}
}

// greet completes the agent's login with the upstream's parameters and a
// cancel key of phigate's own, once session.start is durable.
func (c *conn) greet(ctx context.Context) error {
	if err := c.rec.Sync(ctx); err != nil {
		_ = writeRaw(c.client, pgError("FATAL", codeIOError, "phigate cannot record this session; refusing it"))
		return err
	}
	buf, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	for k, v := range c.up.params {
		buf, _ = (&pgproto3.ParameterStatus{Name: k, Value: v}).Encode(buf)
	}
	buf, _ = (&pgproto3.BackendKeyData{ProcessID: c.keyPID, SecretKey: c.keySecret[:]}).Encode(buf)
	buf, _ = (&pgproto3.ReadyForQuery{TxStatus: c.up.txStatus}).Encode(buf)
	_, err := c.client.Write(buf)
	return err
}

// errTerminate ends the frontend loop after the agent's Terminate.
var errTerminate = errors.New("terminate")

func (c *conn) relay(ctx context.Context) {
	if benchstage.Relay() {
		c.copyRelay()
		return
	}
	max := c.srv.cfg.MaxMessageBytes
	const bufSize = 64 << 10
	c.fe.cin = newFrameReader("client", c.client, bufSize, max)
	c.be.uin = newFrameReader("upstream", c.up.conn, bufSize, max)
	// Durability points. Towards the upstream (write-ahead sessions): every
	// event so far, so a command and the results before it are on disk
	// before it runs; during a change snapshot, phigate's own reads wait
	// for nothing and the statement for its command (snapWait). Towards the agent: the latest command, so no output
	// leaves before the command that produced it is on disk; result events
	// need no wait there, they become durable with the next group commit
	// and at the latest before the session's next command is forwarded.
	toUpstream := func() error { return nil }
	if c.writeAhead {
		toUpstream = func() error {
			switch c.fe.snapWait {
			case waitNothing:
				return nil
			case waitCommand:
				c.srv.writeAheadSyncs.Add(1)
				return c.rec.Wait(ctx, session.Position(c.fe.snapCmd))
			}
			// A flush of what may run ahead (forwarding) goes out
			// unsynced. Swapped before the sync: what sets it again
			// later is synced next time.
			if !c.fe.effects.Swap(false) {
				return nil
			}
			c.srv.writeAheadSyncs.Add(1)
			return c.rec.Sync(ctx)
		}
	}
	toClient := func() error { return c.rec.Wait(ctx, session.Position(c.cmdPos.Load())) }
	c.fe.uout = newOutBuf("upstream", c.up.conn, bufSize, toUpstream)
	c.be.cout = newOutBuf("client", c.client, bufSize, toClient)

	fe := make(chan error, 1)
	be := make(chan error, 1)
	go func() { fe <- c.guard("frontend", func() error { return c.frontend(ctx) }) }()
	go func() {
		defer close(c.backendDone)
		be <- c.guard("backend", func() error { return c.backend(ctx) })
	}()
	var err error
	frontendFirst := false
	select {
	case err = <-fe:
		frontendFirst = true
	case err = <-be:
	}
	var pe *peerError
	switch {
	case errors.Is(err, errTerminate):
		c.setReason("terminate")
	case errors.As(err, &pe):
		c.setReason(pe.peer + " closed")
	}
	if frontendFirst && errors.Is(err, errTerminate) {
		// Let the upstream see Terminate and close; the backend then ends
		// on EOF.
		_ = c.up.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		<-be
		return
	}
	if pe != nil && pe.peer == "client" && c.pending() {
		// The agent vanished mid-command: stop the work upstream too.
		c.cancelUpstream(context.WithoutCancel(ctx), "client disconnected")
	}
	c.up.conn.Close()
	if frontendFirst {
		<-be // the backend writes any final error to the agent before it ends
		if n := c.fe.cin.refused; n > 0 {
			c.drainClient(n)
		}
		c.client.Close()
		return
	}
	c.client.Close()
	<-fe
}

// drainClient reads and drops the rest of a message refused unread (n
// bytes in all), briefly and up to a bound, so that the agent's client
// finishes writing and reads the error instead of a broken pipe.
func (c *conn) drainClient(n int64) {
	_ = c.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_ = c.fe.cin.skip(min(n, 1<<30))
}

// stop ends the session from outside (node shutdown).
func (c *conn) stop(reason string) {
	c.setFatal(pgError("FATAL", codeAdminShutdown, "terminating connection: the phigate node is shutting down"), reason)
	c.hangUp()
}

// revoke ends the session because the node's state no longer admits it
// (session.ErrRevoked says why; the reason is recorded in session.end and
// told to the agent). The code is 42501, not 57P01: a client that sees
// 57P01 may take it for a restart and reconnect at once, while this is a
// refusal of access. A node that cannot decide (session.ErrUnavailable:
// it lost the cluster's quorum) ends it with 57P03, as a server that is
// not accepting connections yet.
func (c *conn) revoke(err error) {
	code := codeInsufficientPriv
	if errors.Is(err, session.ErrUnavailable) {
		code = codeCannotConnectNow
	}
	c.setFatal(pgError("FATAL", code, "terminating connection: phigate "+err.Error()), err.Error())
	c.hangUp()
}

// profile is the masking profile results are masked with now (nil: they
// are not masked). Never nil for a session that started masked, nor
// non-nil for one that did not (session.Snapshot.Readmit ends the
// session rather than switch masking on or off).
func (c *conn) profile() *mask.Profile { return c.prof.Load() }

// maskParams is what a result's masking plan takes from the session: the
// server's DateStyle and the resource's subject columns. Backend only.
func (c *conn) maskParams() mask.Params {
	p := c.be.params
	p.Subjects = c.subjects.Load()
	return p
}

// errTokenExpired ends a session whose credential expired.
var errTokenExpired = fmt.Errorf("%w: the token expired", session.ErrRevoked)

// readmit re-checks the session when the node's state has changed since
// the frontend last looked (one atomic load otherwise), before anything
// the agent sent next is acted on: it adopts the grant as it is now, or
// ends the session.
func (c *conn) readmit() error {
	snap := c.srv.cfg.State.Load()
	if snap.Revision == c.fe.revision {
		return nil
	}
	a, err := snap.Readmit(c.admitted)
	if err != nil {
		c.log.Info("session ended by a change of state", "revision", snap.Revision, "err", err)
		c.revoke(err)
		return err
	}
	c.fe.revision, c.grant = snap.Revision, a.Grant
	if r := snap.Resources[c.res.Name]; r != nil {
		c.subjects.Store(r.Subjects) // Readmit checked it is the same target
	}
	if a.Profile != c.profile() {
		c.log.Info("masking profile changed: results from now on are masked by its new revision", "profile", a.Grant.Masking)
		c.prof.Store(a.Profile)
	}
	return nil
}

// hangUp closes the connection that unblocks the session's relay.
func (c *conn) hangUp() {
	if c.up != nil {
		c.up.conn.Close()
	} else {
		c.client.Close()
	}
}

func (c *conn) setReason(r string) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = r
	}
	c.mu.Unlock()
}

// setFatal records the error the agent will be sent when the backend
// finishes. The first one wins.
func (c *conn) setFatal(e *pgproto3.ErrorResponse, reason string) {
	c.mu.Lock()
	if c.lastErr == nil {
		c.lastErr = e
	}
	if c.reason == "" {
		c.reason = reason
	}
	c.mu.Unlock()
}

func (c *conn) pending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) > 0
}

// errPanic ends a session whose goroutine panicked.
var errPanic = errors.New("internal error")

// guard runs one of the session's goroutines; a panic ends this session
// (recorded, the agent told) and never the node.
func (c *conn) guard(what string, run func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("session goroutine panicked; ending the session", "goroutine", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			c.recordInternalError(what)
			c.setFatal(pgError("FATAL", codeInternalError, "phigate internal error; the session was ended"), "internal error")
			c.up.conn.Close()
			c.client.Close()
			err = errPanic
		}
	}()
	return run()
}

func (c *conn) recordInternalError(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec == nil || c.closed {
		return
	}
	if _, err := c.rec.Append(&record.Event{Kind: record.KindProtocolError, Error: &record.ProtocolError{Code: codeInternalError, Message: "phigate internal error in the " + what}}); err != nil {
		c.log.Error("cannot record internal error", "err", err)
	}
}

// finish records results for commands that never completed and closes the
// recording with session.end. Cancels stop routing here first, so none can
// be recorded after the end. It returns the reason recorded.
func (c *conn) finish() string {
	c.srv.keys.release(c)
	c.mu.Lock()
	q := c.queue
	c.queue = nil
	reason := c.reason
	c.mu.Unlock()
	if reason == "" {
		reason = "closed"
	}
	seen := map[*command]bool{}
	ending := false // a COMMIT may have reached the server
	for _, e := range q {
		if e.cmd != nil && !seen[e.cmd] && !e.cmd.errored {
			seen[e.cmd] = true
			_ = c.endStatement(e.cmd, "", &record.SQLError{Code: "08006", Message: "session ended before the command completed (" + reason + ")", Source: "phigate"}, false)
		}
		if e.step != nil && e.step.pass || e.cmd != nil && endsTx(e.cmd.stmts) {
			ending = true
		}
	}
	if len(c.be.pending) > 0 {
		if ending {
			c.endChanges(record.OutcomeUnknown, "the session ended while its transaction was ending", nil)
		} else {
			c.endChanges(record.OutcomeRolledBack, "the session ended inside its transaction", nil)
		}
	}
	c.end(reason)
	c.log.Info("session ended", "reason", reason, "commands", c.fe.nextCmd)
	return reason
}

// endsTx reports whether stmts may end a transaction with a commit.
func endsTx(stmts []sqlclass.Statement) bool {
	for _, s := range stmts {
		if s.Effect == sqlclass.EffectTxEnd {
			return true
		}
	}
	return false
}

// end appends session.end and closes the recording. After it, nothing more
// is recorded for the session (see recordCancel).
func (c *conn) end(reason string) {
	c.mu.Lock()
	if c.rec == nil || c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	ev := &record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{
		Reason:     reason,
		Commands:   c.fe.nextCmd,
		DurationUS: time.Since(c.started).Microseconds(),
	}}
	if _, err := c.rec.Append(ev); err != nil {
		c.log.Error("cannot record session end", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.rec.Close(ctx); err != nil {
		c.log.Error("cannot close recording", "err", err)
	}
}

// recordCancel records a cancel before it is sent; false when the session
// has ended (or recording failed), and then the cancel must not be sent.
func (c *conn) recordCancel(ctx context.Context, why string) bool {
	c.mu.Lock()
	if c.rec == nil || c.closed {
		c.mu.Unlock()
		return false
	}
	lsn, err := c.rec.Append(&record.Event{Kind: record.KindCancel, Cancel: &record.Cancel{Reason: why}})
	c.mu.Unlock()
	if err == nil {
		err = c.rec.Wait(ctx, lsn)
	}
	if err != nil {
		c.log.Warn("cannot record cancel; not sending it", "err", err)
		return false
	}
	return true
}

// queue operations: the frontend pushes in the order it forwards; the
// backend consumes in the order the upstream answers.

func (c *conn) push(e *expect) {
	e.batch = c.fe.batch
	c.mu.Lock()
	c.queue = append(c.queue, e)
	c.mu.Unlock()
}

func (c *conn) head() *expect {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return nil
	}
	return c.queue[0]
}

func (c *conn) pop() {
	c.mu.Lock()
	c.popLocked()
	c.mu.Unlock()
}

// popLocked drops the head entry and tells a waiting frontend; c.mu held.
func (c *conn) popLocked() {
	c.queue[0] = nil
	c.queue = c.queue[1:]
	if len(c.queue) == 0 {
		c.queue = c.queue[:0:0]
	}
	select {
	case c.progress <- struct{}{}:
	default:
	}
}
