package pgwire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/resource"
)

// ValidateResource checks r as a PostgreSQL resource and fills in its
// defaults: what every protocol needs (resource.Validate), and an address
// PostgreSQL clients can dial (host:port, or a socket directory with an
// optional :port).
func ValidateResource(r *resource.Resource) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.Protocol != resource.Postgres {
		return fmt.Errorf("protocol %q is not PostgreSQL", r.Protocol)
	}
	_, _, err := hostPort(r)
	return err
}

func hostPort(r *resource.Resource) (string, uint16, error) {
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

func tlsConfig(r *resource.Resource, host string) (*tls.Config, error) {
	switch r.TLS {
	case resource.TLSDisable:
		return nil, nil
	case resource.TLSRequire:
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil
	}
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if r.ServerName != "" {
		cfg.ServerName = r.ServerName
	}
	switch {
	case r.CAPEM != nil:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(r.CAPEM) {
			return nil, errors.New("ca_pem holds no certificates")
		}
		cfg.RootCAs = pool
	case r.CAFile != "":
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
func dialUpstream(ctx context.Context, r *resource.Resource, level policy.Level, runtime map[string]string, timeout time.Duration) (*upstream, error) {
	cfg, err := connConfig(r, level, timeout)
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
func connConfig(r *resource.Resource, level policy.Level, timeout time.Duration) (*pgconn.Config, error) {
	host, port, err := hostPort(r)
	if err != nil {
		return nil, err
	}
	cfg, err := pgconn.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = host, port
	login := r.For(level)
	cfg.Database, cfg.User = r.Database, login.User
	cfg.Password = login.Password.Reveal()
	cfg.ConnectTimeout = timeout
	cfg.Fallbacks = nil
	if cfg.TLSConfig, err = tlsConfig(r, host); err != nil {
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
