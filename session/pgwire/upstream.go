package pgwire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Secret holds a credential. It prints and logs as a placeholder, so that a
// stray %v or slog attribute cannot leak it.
type Secret struct{ value string }

// NewSecret wraps a credential.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the credential, for the one place that must send it.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether no credential is set.
func (s Secret) IsZero() bool { return s.value == "" }

func (Secret) String() string               { return "[secret]" }
func (Secret) GoString() string             { return "[secret]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[secret]") }
func (Secret) MarshalText() ([]byte, error) { return []byte("[secret]"), nil }

// TLS modes for the upstream connection, as in libpq's sslmode.
const (
	TLSDisable    = "disable"
	TLSRequire    = "require"     // encrypted, server certificate not checked
	TLSVerifyFull = "verify-full" // encrypted, certificate chain and host name checked
)

// Resource is a protected PostgreSQL database, reached with a credential
// that only the gateway holds.
type Resource struct {
	Name string
	// Address is host:port, or the absolute path of a Unix socket directory
	// (optionally with :port, default 5432).
	Address  string
	Database string
	// User and Password log in every level that Roles does not cover: with
	// no Roles, every session. Empty when Roles has LevelAdmin (they would
	// never be used).
	User     string
	Password Secret
	// Roles holds a credential per access level (read, write, admin). A
	// session logs in with the role of the least level at or above its
	// grant's that has one, else with User; see credential. Nil: every
	// session logs in as User.
	Roles map[AccessLevel]Credential
	// TLS is disable, require or verify-full. Empty means verify-full.
	TLS string
	// CAFile is a PEM bundle for verify-full; empty means the system roots.
	CAFile string
	// ServerName overrides the name checked in verify-full (default: the host).
	ServerName string
}

// Validate checks r and fills in its defaults (TLS). Server's New does it
// too; callers that use a Resource without a Server (the role check) call it
// first.
func (r *Resource) Validate() error { return r.validate() }

func (r *Resource) validate() error {
	if r.Address == "" || r.Database == "" {
		return errors.New("address and database are required")
	}
	if err := r.validateCredentials(); err != nil {
		return err
	}
	switch r.TLS {
	case "":
		r.TLS = TLSVerifyFull
	case TLSDisable, TLSRequire, TLSVerifyFull:
	default:
		return fmt.Errorf("tls must be disable, require or verify-full, not %q", r.TLS)
	}
	_, _, err := r.hostPort()
	return err
}

func (r *Resource) hostPort() (string, uint16, error) {
	host, port := r.Address, "5432"
	if h, p, err := net.SplitHostPort(r.Address); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(r.Address, "/") {
		if i := strings.LastIndexByte(r.Address, ':'); i > 0 {
			host, port = r.Address[:i], r.Address[i+1:]
		}
	} else {
		return "", 0, fmt.Errorf("address %q: want host:port or a socket directory", r.Address)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("address %q: bad port", r.Address)
	}
	return host, uint16(n), nil
}

func (r *Resource) tlsConfig(host string) (*tls.Config, error) {
	switch r.TLS {
	case TLSDisable:
		return nil, nil
	case TLSRequire:
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil
	}
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if r.ServerName != "" {
		cfg.ServerName = r.ServerName
	}
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no certificates", filepath.Base(r.CAFile))
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// upstream is an authenticated server connection taken over from pgconn.
type upstream struct {
	conn      net.Conn
	pid       uint32
	secretKey []byte
	params    map[string]string
	txStatus  byte
	host      string
	port      uint16
}

// dialUpstream logs in to r with the gateway's credential for level. pgconn
// does the startup and authentication (SCRAM-SHA-256, md5 or password,
// whatever the server asks for); the connection is then hijacked and relayed
// raw.
func dialUpstream(ctx context.Context, r *Resource, level AccessLevel, runtime map[string]string, timeout time.Duration) (*upstream, error) {
	cfg, err := r.connConfig(level, timeout)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams = maps.Clone(runtime)
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// pgconn may have read ahead of the login (its background reader runs
	// while a write is slow): SyncConn drains it, as Hijack's contract asks,
	// so the server's first reply after login cannot be swallowed.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	return &upstream{
		conn:      hj.Conn,
		pid:       hj.PID,
		secretKey: hj.SecretKey,
		params:    hj.ParameterStatuses,
		txStatus:  hj.TxStatus,
		host:      cfg.Host,
		port:      cfg.Port,
	}, nil
}

// connConfig is how the gateway logs in to r: its own credential, its TLS
// mode, no fallbacks and nothing taken from PG* environment variables that
// the resource sets itself.
func (r *Resource) connConfig(level AccessLevel, timeout time.Duration) (*pgconn.Config, error) {
	host, port, err := r.hostPort()
	if err != nil {
		return nil, err
	}
	cfg, err := pgconn.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = host, port
	user, password := r.credential(level)
	cfg.Database, cfg.User = r.Database, user
	cfg.Password = password.Reveal()
	cfg.ConnectTimeout = timeout
	cfg.Fallbacks = nil
	if cfg.TLSConfig, err = r.tlsConfig(host); err != nil {
		return nil, err
	}
	return cfg, nil
}

// sendCancel asks the upstream server to cancel whatever the backend
// (pid, key) is running, the way libpq does: a fresh connection carrying only
// a CancelRequest.
func sendCancel(ctx context.Context, host string, port uint16, pid uint32, key []byte) error {
	network, addr := "tcp", net.JoinHostPort(host, strconv.Itoa(int(port)))
	if strings.HasPrefix(host, "/") {
		network, addr = "unix", filepath.Join(host, ".s.PGSQL."+strconv.Itoa(int(port)))
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	msg := make([]byte, 0, 12+len(key))
	msg = binary.BigEndian.AppendUint32(msg, uint32(12+len(key)))
	msg = binary.BigEndian.AppendUint32(msg, cancelRequestCode)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	msg = append(msg, key...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	// The server closes the connection when done; wait for that so the
	// cancel is delivered before we return.
	var b [1]byte
	_, _ = c.Read(b[:])
	return nil
}
