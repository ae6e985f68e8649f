package pgwire

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	protocol30        = 3 << 16
	// maxStartupPacket is PostgreSQL's own limit (MAX_STARTUP_PACKET_LENGTH).
	maxStartupPacket = 10000
)

// SQLSTATEs phigate itself sends.
const (
	codeProtocolViolation = "08P01"
	codeConnectFailure    = "08001"
	codeAuthSpec          = "28000"
	codeInvalidPassword   = "28P01"
	codeInsufficientPriv  = "42501"
	codeInvalidCatalog    = "3D000"
	codeIOError           = "58030"
	codeAdminShutdown     = "57P01"
	codeCannotConnectNow  = "57P03"
	codeFeatureNotSupp    = "0A000"
	codeSyntaxError       = "42601"
	codeInternalError     = "XX000"
	codeSystemError       = "58000"
	// codeCharacterNotInRepertoire is PostgreSQL's for invalid UTF-8.
	codeCharacterNotInRepertoire = "22021"
	codeInvalidStatementName     = "26000"
	codeInvalidCursorName        = "34000"
	codeInvalidParameterValue    = "22023"
)

// startup is what the agent said before authentication.
type startup struct {
	params   map[string]string
	tls      bool
	tlsState tls.ConnectionState
}

// readPacket reads one untyped startup-phase packet.
func readPacket(r io.Reader) (code uint32, body []byte, err error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 8 || n > maxStartupPacket {
		return 0, nil, fmt.Errorf("%w: startup packet length %d", ErrBadLength, n)
	}
	code = binary.BigEndian.Uint32(hdr[4:])
	body = make([]byte, n-8)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return code, body, nil
}

func writeRaw(w io.Writer, msgs ...pgproto3.BackendMessage) error {
	var buf []byte
	var err error
	for _, m := range msgs {
		if buf, err = m.Encode(buf); err != nil {
			return err
		}
	}
	_, err = w.Write(buf)
	return err
}

func pgError(severity, code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: msg}
}

// serveConn runs one client connection from its first byte to its end.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	var c *conn
	defer func() {
		// A panic before or during login ends this connection, recorded if
		// its recording had begun, and never the node (the relay's two
		// goroutines have guards of their own).
		if r := recover(); r != nil {
			s.log.Error("connection panicked; ending it", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if c != nil {
				s.keys.release(c)
				c.recordInternalError("login")
				c.end("internal error")
			}
		}
	}()
	tc, st, err := s.negotiate(ctx, nc)
	var se *startupError
	if err != nil && !errors.As(err, &se) {
		if !errors.Is(err, errHandled) {
			s.log.Debug("startup ended", "remote", nc.RemoteAddr().String(), "err", err)
		}
		return
	}
	if !s.admit() {
		s.refuseOverCap(tc)
		return
	}
	defer s.leave()
	c = &conn{srv: s, client: tc, started: time.Now()}
	c.id = session.NewID(c.started)
	c.log = s.log.With("session", c.id)
	if se != nil {
		// Malformed before login: record the attempt, then refuse it.
		c.st = &startup{params: map[string]string{}}
		_ = c.refuse(ctx, &record.Event{Kind: record.KindProtocolError, Error: &record.ProtocolError{Code: codeProtocolViolation, Message: se.msg}},
			codeProtocolViolation, se.msg)
		return
	}
	if !s.register(c) {
		_ = writeRaw(tc, pgError("FATAL", codeAdminShutdown, "the phigate node is shutting down"))
		return
	}
	defer s.unregister(c)
	c.serve(ctx, st)
}

// refuseOverCap refuses a connection over Config.MaxSessions with
// PostgreSQL's own error for a server over max_connections. Nothing is
// recorded (a recording would take a file, which is what the cap saves)
// and nothing is dialled.
func (s *Server) refuseOverCap(nc net.Conn) {
	s.overCap.log(s.log, "pgwire: too many sessions; refusing a connection", "max_sessions", s.cfg.MaxSessions,
		"remote", nc.RemoteAddr().String())
	if s.cfg.Observer != nil {
		s.cfg.Observer.SessionRefused()
	}
	_ = writeRaw(nc, pgError("FATAL", codeTooManyConnections, "sorry, too many clients already"))
}

var errHandled = errors.New("handled")

// startupError is a protocol violation before login; the connection is
// refused with 08P01 and the attempt recorded.
type startupError struct{ msg string }

func (e *startupError) Error() string { return "startup: " + e.msg }

// negotiate handles SSLRequest, GSSENCRequest and CancelRequest until the
// StartupMessage arrives.
func (s *Server) negotiate(ctx context.Context, nc net.Conn) (net.Conn, *startup, error) {
	var conn net.Conn = nc
	st := &startup{}
	for {
		code, body, err := readPacket(conn)
		if err != nil {
			if errors.Is(err, ErrBadLength) {
				return conn, nil, &startupError{"invalid startup packet length"}
			}
			return nil, nil, err
		}
		switch {
		case code == sslRequestCode:
			if st.tls {
				return conn, nil, &startupError{"SSLRequest received on an encrypted connection"}
			}
			tlsConf := s.cfg.State.Load().TLS
			if tlsConf == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return nil, nil, err
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return nil, nil, err
			}
			tc := tls.Server(conn, tlsConf)
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, nil, fmt.Errorf("tls handshake: %w", err)
			}
			conn, st.tls, st.tlsState = tc, true, tc.ConnectionState()
		case code == gssEncRequestCode:
			// GSSAPI encryption is not offered; libpq then tries TLS or plain.
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return nil, nil, err
			}
		case code == cancelRequestCode:
			s.handleCancel(ctx, body, nc.RemoteAddr().String())
			return nil, nil, errHandled
		case code>>16 == 3:
			params, err := parseStartupParams(body)
			if err != nil {
				return conn, nil, &startupError{err.Error()}
			}
			st.params = params
			// Protocol 3.x with x > 0, or _pq_ extensions: answer what we
			// speak (3.0, no extensions), as PostgreSQL does.
			var unknown []string
			for k := range params {
				if strings.HasPrefix(k, "_pq_.") {
					unknown = append(unknown, k)
					delete(params, k)
				}
			}
			if code&0xffff != 0 || len(unknown) > 0 {
				if err := writeRaw(conn, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown}); err != nil {
					return nil, nil, err
				}
			}
			return conn, st, nil
		default:
			return conn, nil, &startupError{fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff)}
		}
	}
}

func parseStartupParams(b []byte) (map[string]string, error) {
	params := map[string]string{}
	for len(b) > 0 && b[0] != 0 {
		k, rest, ok := cstring(b)
		if !ok {
			return nil, errors.New("invalid startup packet layout: missing terminator")
		}
		v, rest, ok := cstring(rest)
		if !ok {
			return nil, errors.New("invalid startup packet layout: missing value")
		}
		params[string(k)] = string(v)
		b = rest
	}
	if len(b) != 1 {
		return nil, errors.New("invalid startup packet layout: expected terminator as last byte")
	}
	if params["user"] == "" {
		return nil, errors.New("no PostgreSQL user name specified in startup packet")
	}
	return params, nil
}

func isLoopback(a net.Addr) bool {
	switch t := a.(type) {
	case *net.TCPAddr:
		return t.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// login authenticates the agent, opens the recording, applies the grant and
// connects upstream. On failure it has already answered the client and
// recorded why.
func (c *conn) login(ctx context.Context, st *startup) error {
	s := c.srv
	c.st = st
	user := st.params["user"]
	dbname := st.params["database"]
	if dbname == "" {
		dbname = user
	}
	if st.params["replication"] != "" && st.params["replication"] != "false" && st.params["replication"] != "0" {
		return c.refuse(ctx, nil, codeFeatureNotSupp, "replication connections are not supported through phigate")
	}
	if !st.tls && !(s.cfg.AllowCleartextLoopback && isLoopback(c.client.RemoteAddr())) {
		return c.refuse(ctx, &record.Event{Kind: record.KindAuthFailed, Auth: &record.AuthFailure{User: user, Reason: "tls required"}},
			codeAuthSpec, "phigate requires an encrypted connection: use sslmode=require or stronger")
	}
	if snap := s.cfg.State.Load(); snap.Unavailable != "" {
		// Nothing can be decided: a revocation may be unknown here.
		return c.refuse(ctx, &record.Event{Kind: record.KindAccessDenied, Resource: dbname, Denied: &record.Denial{Reason: "node unavailable: " + snap.Unavailable}},
			codeCannotConnectNow, "phigate node unavailable: "+snap.Unavailable)
	}
	if snap := s.cfg.State.Load(); snap.Accepting != nil {
		if err := snap.Accepting(); err != nil {
			// Refused before the token is read: nothing is decided but that
			// the node cannot record another session now.
			return c.refuse(ctx, &record.Event{Kind: record.KindAccessDenied, Resource: dbname, Denied: &record.Denial{Reason: "not accepting new sessions: " + err.Error()}},
				codeCannotConnectNow, "phigate is not accepting new sessions: "+err.Error())
		}
	}
	if err := writeRaw(c.client, &pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return err
	}
	typ, body, err := readTyped(c.client, 1<<16)
	if err != nil || typ != 'p' {
		if err == nil {
			err = fmt.Errorf("expected password message, got %q", typ)
			_ = writeRaw(c.client, pgError("FATAL", codeProtocolViolation, "expected password response"))
		}
		return err
	}
	token, _, ok := cstring(body)
	if !ok {
		return c.refuse(ctx, nil, codeProtocolViolation, "invalid password packet")
	}
	snap := s.cfg.State.Load()
	id, err := snap.Auth.Authenticate(ctx, identity.Credentials{User: user, Token: string(token), Client: identity.ClientAddr(c.client.RemoteAddr())})
	if err != nil {
		reason := "invalid token"
		if re := (*identity.RefusedError)(nil); errors.As(err, &re) && re.Reason != "" {
			// Why, as the authenticator says it (never the token): an
			// expired JWT, a client address outside the token's range...
			reason = "invalid token: " + clip(re.Reason, 200)
		}
		if !errors.Is(err, identity.ErrInvalidToken) {
			reason = "authenticator error"
			c.log.Warn("authenticate", "err", err)
		}
		return c.refuse(ctx, &record.Event{Kind: record.KindAuthFailed, Auth: &record.AuthFailure{User: user, Reason: reason}},
			codeInvalidPassword, fmt.Sprintf("password authentication failed for user %q", user))
	}
	c.ident = id
	c.log = c.log.With("identity", id.Name)
	adm, d := snap.Admit(id, dbname)
	if adm.Resource == nil {
		if d.Grant == nil && snap.Resources[dbname] == nil {
			return c.refuse(ctx, &record.Event{Kind: record.KindAccessDenied, Resource: dbname, Denied: &record.Denial{Reason: d.Reason}},
				codeInvalidCatalog, fmt.Sprintf("resource %q does not exist", dbname))
		}
		return c.refuse(ctx, &record.Event{Kind: record.KindAccessDenied, Resource: dbname, Denied: &record.Denial{Rule: d.Rule(), Reason: d.Reason}},
			codeInsufficientPriv, "permission denied: "+d.Reason)
	}
	res := adm.Resource
	s.admitted(c, adm)
	c.fe.revision = snap.Revision
	c.res, c.grant = res, adm.Grant
	c.prof.Store(adm.Profile)
	c.subjects.Store(res.Subjects)
	c.cat = s.catalogFor(res)
	if err := c.startRecording(); err != nil {
		return err
	}
	if c.profile() != nil && snap.Auditor != nil {
		// Proof batches ride group commits (lazy), but one at most is in
		// flight: a bulk read of masked data then runs at the speed the
		// disk takes its proof, and memory does not grow with the result.
		var inFlight session.Position
		c.proofs = proof.NewCollector(c.id, snap.Auditor, func(ev *record.Event) error {
			if err := c.rec.Wait(ctx, inFlight); err != nil {
				return err
			}
			lsn, err := c.rec.AppendLazy(ev)
			inFlight = lsn
			return err
		})
	}

	runtime, perr := upstreamParams(c.grant, st.params)
	if perr != nil {
		return c.refuse(ctx, &record.Event{Kind: record.KindAccessDenied, Resource: res.Name, Denied: &record.Denial{Rule: c.grant.Name, Reason: perr.Message}},
			perr.Code, perr.Message)
	}
	c.writeAhead = !c.grant.ReadOnly()
	c.readAhead = c.writeAhead && c.grant.ReadAhead
	if !c.writeAhead {
		runtime["default_transaction_read_only"] = "on"
	}
	dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	up, err := dialUpstream(dctx, res, c.grant.Level(), runtime, s.cfg.ConnectTimeout)
	cancel()
	if err != nil {
		c.log.Warn("upstream connect failed", "resource", res.Name, "err", err)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && relayedLoginErrors[pe.Code] {
			// The server refused the session's settings: the agent gets
			// the server's own error.
			return c.refuse(ctx, &record.Event{Kind: record.KindAccessDenied, Resource: res.Name, Denied: &record.Denial{Reason: "upstream refused: " + pe.Message}},
				pe.Code, pe.Message)
		}
		// Other upstream errors may name hosts and roles; the agent only
		// learns that the resource is unreachable.
		c.end("upstream unavailable")
		return c.fatal(ctx, codeConnectFailure, fmt.Sprintf("phigate cannot connect to resource %q", res.Name))
	}
	for _, name := range []string{"client_encoding", "standard_conforming_strings"} {
		if why := unsafeSetting(name, up.params[name]); why != "" {
			up.conn.Close()
			return c.refuse(ctx, &record.Event{Kind: record.KindAccessDenied, Resource: res.Name, Denied: &record.Denial{Reason: why}},
				codeFeatureNotSupp, why)
		}
	}
	c.up = up
	s.keys.issue(c)
	return nil
}

// relayedLoginErrors are the upstream's refusals of a session's parameters,
// which the agent is told as the server said them.
var relayedLoginErrors = map[string]bool{
	"42704": true, // unrecognized configuration parameter
	"22023": true, // invalid parameter value
	"22P02": true,
	"42501": true, // permission denied to set parameter
	"55P02": true, // cannot be changed now
	"0A000": true,
}

// unsafeSetting says why a server setting would make phigate's parser read
// statements differently from the server, or "" when it does not.
func unsafeSetting(name, value string) string {
	switch name {
	case "client_encoding":
		if !sqlclass.SafeClientEncoding(value) {
			return "phigate requires client_encoding UTF8 (or SQL_ASCII), not " + strconv.Quote(value) + ": in other encodings a byte of a multi-byte character can read as a quote or a backslash"
		}
	case "standard_conforming_strings":
		if v, ok := sqlclass.ParseBool(value); !ok || !v {
			return "phigate requires standard_conforming_strings = on: with it off the server reads backslashes in string literals differently from phigate's parser"
		}
	}
	return ""
}

// upstreamParams decides which startup parameters reach the upstream
// session. Each one is judged as the SET it amounts to, under the session's
// grant (so default_transaction_read_only=on passes, off needs admin, and
// settings phigate's parser depends on are refused); options may carry -c
// name=value (or --name=value) switches and nothing else. Whatever passes
// is sent, and the server refuses what it does not know with its own error.
func upstreamParams(g *policy.Grant, params map[string]string) (map[string]string, *pgproto3.ErrorResponse) {
	runtime := map[string]string{}
	// The server applies options first and the other parameters after
	// them, so a parameter of its own overrides the same one in options.
	if opts, ok := params["options"]; ok {
		pairs, err := parseOptions(opts)
		if err != nil {
			return nil, err
		}
		for _, kv := range pairs {
			if err := judgeParam(g, kv[0], kv[1]); err != nil {
				return nil, err
			}
			runtime[kv[0]] = kv[1]
		}
	}
	for _, name := range slices.Sorted(maps.Keys(params)) {
		switch name {
		case "user", "database", "replication", "options":
			continue
		}
		value := params[name]
		if err := judgeParam(g, name, value); err != nil {
			return nil, err
		}
		runtime[name] = value
	}
	return runtime, nil
}

func judgeParam(g *policy.Grant, name, value string) *pgproto3.ErrorResponse {
	stmts, err := sqlclass.Classify("SET " + quoteIdent(name) + " TO " + quoteLiteral(value))
	if err != nil || len(stmts) != 1 {
		return pgError("FATAL", codeInvalidParameterValue, fmt.Sprintf("invalid value for parameter %q", name))
	}
	if stmts[0].Refused != "" {
		return pgError("FATAL", codeFeatureNotSupp, stmts[0].Refused)
	}
	if d := policy.Command(g, sqlclass.Actions(nil, stmts)); !d.Allowed {
		return pgError("FATAL", codeInsufficientPriv, fmt.Sprintf("permission denied to set parameter %q: %s", name, d.Reason))
	}
	return nil
}

// parseOptions reads the startup "options" parameter as PostgreSQL does
// (pg_split_opts: words split at unescaped white space, backslash escapes),
// accepting only the switches that set parameters.
func parseOptions(s string) ([][2]string, *pgproto3.ErrorResponse) {
	var words []string
	for i := 0; i < len(s); {
		for i < len(s) && isSpaceByte(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		var w strings.Builder
		for escaped := false; i < len(s); i++ {
			ch := s[i]
			if isSpaceByte(ch) && !escaped {
				break
			}
			if !escaped && ch == '\\' {
				escaped = true
				continue
			}
			escaped = false
			w.WriteByte(ch)
		}
		words = append(words, w.String())
	}
	var out [][2]string
	for i := 0; i < len(words); i++ {
		w := words[i]
		var setting string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			setting = words[i]
		case strings.HasPrefix(w, "-c") && len(w) > 2:
			setting = w[2:]
		case strings.HasPrefix(w, "--") && len(w) > 2:
			setting = w[2:]
		default:
			return nil, pgError("FATAL", codeInsufficientPriv, fmt.Sprintf("phigate accepts only -c name=value in options, not %q", w))
		}
		name, value, ok := strings.Cut(setting, "=")
		if !ok || name == "" {
			return nil, pgError("FATAL", codeSyntaxError, fmt.Sprintf("-c %s requires a value", setting))
		}
		out = append(out, [2]string{strings.ReplaceAll(name, "-", "_"), value})
	}
	return out, nil
}

func isSpaceByte(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

func quoteIdent(s string) string   { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// startRecording opens the session's recording with its session.start event.
func (c *conn) startRecording() error {
	st := c.st
	rec, err := c.srv.cfg.Recorder.Start(c.id)
	if err != nil {
		c.log.Error("cannot start recording", "err", err)
		_ = writeRaw(c.client, pgError("FATAL", codeIOError, "phigate cannot record this session; refusing it"))
		return err
	}
	c.rec = rec
	start := &record.SessionStart{
		Protocol:    "postgres",
		Client:      c.client.RemoteAddr().String(),
		TLS:         st.tls,
		User:        st.params["user"],
		Database:    st.params["database"],
		Application: st.params["application_name"],
	}
	if st.tls {
		start.TLSVersion = tls.VersionName(st.tlsState.Version)
	}
	if c.ident.Name != "" {
		start.IdentityKind = string(c.ident.Kind)
		start.Groups = c.ident.Groups
	}
	resource := ""
	if c.res != nil {
		resource = c.res.Name
		start.Upstream = c.res.Address + "/" + c.res.Database
		start.Grant = c.grant.Name
		start.Durability = durabilityOf(c.grant)
		if c.profile() != nil {
			start.Masking = c.grant.Masking
		}
	}
	rec.SetSubject(c.ident.Name, resource)
	if _, err := rec.Append(&record.Event{Kind: record.KindSessionStart, Start: start}); err != nil {
		c.log.Error("cannot record session start", "err", err)
		_ = writeRaw(c.client, pgError("FATAL", codeIOError, "phigate cannot record this session; refusing it"))
		return err
	}
	return nil
}

// durabilityOf says in the session's start event when its commands are
// durable (record.SessionStart.Durability).
func durabilityOf(g *policy.Grant) string {
	switch {
	case g.ReadOnly():
		return record.DurabilityOutput
	case g.ReadAhead:
		return record.DurabilityReadAhead
	}
	return record.DurabilityCommand
}

// refuse records why a login was refused (if ev is set), makes that durable,
// and only then tells the client.
func (c *conn) refuse(ctx context.Context, ev *record.Event, code, msg string) error {
	if obs := c.srv.cfg.Observer; obs != nil {
		obs.SessionRefused()
	}
	if ev != nil {
		if c.rec == nil {
			if err := c.startRecording(); err != nil {
				return err
			}
		}
		if _, err := c.rec.Append(ev); err != nil {
			c.log.Error("cannot record refusal", "err", err)
		}
		c.end("refused")
	}
	return c.fatal(ctx, code, msg)
}

// fatal syncs the recording, then sends a FATAL error.
func (c *conn) fatal(ctx context.Context, code, msg string) error {
	if c.rec != nil {
		if err := c.rec.Sync(ctx); err != nil {
			code, msg = codeIOError, "phigate cannot record this session; refusing it"
		}
	}
	_ = writeRaw(c.client, pgError("FATAL", code, msg))
	return errHandled
}

// readTyped reads one typed message during the startup phase.
func readTyped(r io.Reader, max int) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[1:])))
	if n < 4 || n-4 > max {
		return 0, nil, fmt.Errorf("%w: %d", ErrBadLength, n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// clip cuts s to at most n bytes, at a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
