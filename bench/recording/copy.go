package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/internal/synth"
)

// The COPY clients: both send the synthetic clinic's rows in COPY's text
// format, which phigate records whole, one copy.data event per CopyData
// message (its bytes base64 in the event's JSON).
const (
	// clientPgx: pgx's pgconn.CopyFrom from memory: one CopyData message
	// per read of its 64 KiB buffer (65531 bytes of rows each).
	clientPgx = "pgx"
	// clientPsql: psql's \copy from a file: psql sends about 8 KiB of
	// whole lines per CopyData message (COPYBUFSIZ), eight times the
	// messages, and so the events, of pgx for the same rows.
	clientPsql = "psql"
)

// copyTable is one table of the synthetic clinic as COPY text.
type copyTable struct {
	name    string // patients, encounters, prescriptions
	columns string // the column list, as in the COPY command
	data    []byte // the rows, COPY text format, without the end marker
	file    string // data, written out for psql
}

var copyHeaderRE = regexp.MustCompile(`^COPY public\.([a-z_]+) \(([a-z0-9_, ]+)\) FROM stdin;$`)

// parseCopyScript splits synth.WriteData's psql input into its tables.
func parseCopyScript(b []byte) ([]copyTable, error) {
	var out []copyTable
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			return nil, errors.New("copy script: unterminated line")
		}
		m := copyHeaderRE.FindSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("copy script: want a COPY ... FROM stdin; line, got %.60q", line)
		}
		end := bytes.Index(rest, []byte("\\.\n"))
		// The end marker is a line of its own: at the start, or after a newline.
		for end > 0 && rest[end-1] != '\n' {
			next := bytes.Index(rest[end+1:], []byte("\\.\n"))
			if next < 0 {
				end = -1
				break
			}
			end += 1 + next
		}
		if end < 0 {
			return nil, fmt.Errorf("copy script: table %s has no end marker", m[1])
		}
		out = append(out, copyTable{name: string(m[1]), columns: string(m[2]), data: rest[:end]})
		b = rest[end+len("\\.\n"):]
	}
	if len(out) == 0 {
		return nil, errors.New("copy script: no table")
	}
	return out, nil
}

// bytesPerPatient is about what synth writes per patient (patients,
// encounters with their notes, prescriptions), to size the data.
const bytesPerPatient = 2000

// copyWorkload is the COPY data and the tables each client copies into.
type copyWorkload struct {
	tables  []copyTable
	bytes   int64 // per client: the rows of every table
	clients int
}

// schema is the client's own schema: tables without keys or indexes, so
// that parallel clients do not wait on each other's locks.
func clientSchema(k int) string { return fmt.Sprintf("rec_%d", k) }

// prepareCopy generates the synthetic clinic (size bytes of COPY text, seed
// fixed: the same rows every run), writes it out for psql under dir, and
// creates the clients' tables through a direct connection.
func prepareCopy(ctx context.Context, pg *harness.Postgres, dir string, size int64, clients int) (*copyWorkload, error) {
	patients := int(max(1, size/bytesPerPatient))
	var buf bytes.Buffer
	buf.Grow(int(size + size/8))
	if err := synth.WriteData(&buf, patients, synth.DefaultSeed); err != nil {
		return nil, err
	}
	tables, err := parseCopyScript(buf.Bytes())
	if err != nil {
		return nil, err
	}
	w := &copyWorkload{tables: tables, clients: clients}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for i := range tables {
		t := &tables[i]
		t.file = filepath.Join(dir, t.name+".copy")
		if err := os.WriteFile(t.file, t.data, 0o644); err != nil {
			return nil, err
		}
		w.bytes += int64(len(t.data))
	}
	var ddl strings.Builder
	ddl.WriteString(synth.Schema())
	for k := range clients {
		fmt.Fprintf(&ddl, "CREATE SCHEMA %s;\n", clientSchema(k))
		for _, t := range tables {
			fmt.Fprintf(&ddl, "CREATE TABLE %s.%s (LIKE public.%s);\n", clientSchema(k), t.name, t.name)
		}
	}
	conn, err := pgconn.Connect(ctx, pg.Direct.DSN())
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, ddl.String()).ReadAll(); err != nil {
		return nil, fmt.Errorf("copy tables: %w", err)
	}
	return w, nil
}

// reset empties the clients' tables and checkpoints, so that every leg
// starts from the same state.
func (w *copyWorkload) reset(ctx context.Context, pg *harness.Postgres) error {
	var names []string
	for k := range w.clients {
		for _, t := range w.tables {
			names = append(names, clientSchema(k)+"."+t.name)
		}
	}
	for _, sql := range []string{"TRUNCATE " + strings.Join(names, ", "), "CHECKPOINT"} {
		if err := pg.Exec(ctx, harness.DB, sql); err != nil {
			return err
		}
	}
	return nil
}

// copyResult is one leg's clients, all together.
type copyResult struct {
	bytes     int64         // rows sent, client to server
	rows      int64         // rows the server copied (its COPY tags)
	elapsed   time.Duration // the first client's start to the last one's end
	clientCPU time.Duration // psql's CPU time (pgx clients run in this process)
}

// run has every client copy all tables through ep at once.
func (w *copyWorkload) run(ctx context.Context, client string, ep harness.Endpoint, psql, scratch string) (copyResult, error) {
	results := make([]copyResult, w.clients)
	errs := make([]error, w.clients)
	var wg sync.WaitGroup
	start := time.Now()
	for k := range w.clients {
		wg.Go(func() {
			switch client {
			case clientPgx:
				results[k], errs[k] = w.copyPgx(ctx, ep, k)
			case clientPsql:
				results[k], errs[k] = w.copyPsql(ctx, ep, k, psql, scratch)
			default:
				errs[k] = fmt.Errorf("unknown COPY client %q", client)
			}
		})
	}
	wg.Wait()
	res := copyResult{elapsed: time.Since(start)}
	for _, r := range results {
		res.bytes += r.bytes
		res.rows += r.rows
		res.clientCPU += r.clientCPU
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	if want := w.rowsPerClient() * int64(w.clients); res.rows != want {
		return res, fmt.Errorf("%d rows copied, want %d", res.rows, want)
	}
	return res, nil
}

// rowsPerClient is the rows of every table (one per line of COPY text).
func (w *copyWorkload) rowsPerClient() int64 {
	var n int64
	for _, t := range w.tables {
		n += int64(bytes.Count(t.data, []byte("\n")))
	}
	return n
}

func (w *copyWorkload) copyPgx(ctx context.Context, ep harness.Endpoint, k int) (copyResult, error) {
	conn, err := pgconn.Connect(ctx, ep.DSN())
	if err != nil {
		return copyResult{}, fmt.Errorf("client %d: connect: %w", k, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var r copyResult
	for _, t := range w.tables {
		sql := fmt.Sprintf("COPY %s.%s (%s) FROM STDIN", clientSchema(k), t.name, t.columns)
		tag, err := conn.CopyFrom(ctx, bytes.NewReader(t.data), sql)
		if err != nil {
			return r, fmt.Errorf("client %d: %s: %w", k, sql, err)
		}
		r.bytes += int64(len(t.data))
		r.rows += tag.RowsAffected()
	}
	return r, nil
}

var copyTagRE = regexp.MustCompile(`(?m)^COPY (\d+)$`)

func (w *copyWorkload) copyPsql(ctx context.Context, ep harness.Endpoint, k int, psql, scratch string) (copyResult, error) {
	var script strings.Builder
	for _, t := range w.tables {
		fmt.Fprintf(&script, "\\copy %s.%s (%s) from '%s'\n", clientSchema(k), t.name, t.columns, t.file)
	}
	path := filepath.Join(scratch, fmt.Sprintf("copy-%d.psql", k))
	if err := os.WriteFile(path, []byte(script.String()), 0o644); err != nil {
		return copyResult{}, err
	}
	cmd := exec.CommandContext(ctx, psql, "-X", "-v", "ON_ERROR_STOP=1", "-h", ep.Host, "-p", strconv.Itoa(ep.Port),
		"-U", ep.User, "-d", ep.DB, "-f", path)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+ep.Password, "PGSSLMODE=disable", "PGAPPNAME=bench")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := pgtest.Spawn(cmd, syscall.SIGKILL); err != nil {
		return copyResult{}, fmt.Errorf("client %d: psql: %w", k, err)
	}
	err := cmd.Wait()
	var r copyResult
	if st := cmd.ProcessState; st != nil {
		r.clientCPU = st.UserTime() + st.SystemTime()
	}
	if err != nil {
		return r, fmt.Errorf("client %d: psql: %w\n%s", k, err, harness.Tail(out.Bytes(), 2000))
	}
	for _, m := range copyTagRE.FindAllSubmatch(out.Bytes(), -1) {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		r.rows += n
	}
	for _, t := range w.tables {
		r.bytes += int64(len(t.data))
	}
	return r, nil
}

// psqlBinary is the PostgreSQL installation's psql.
func psqlBinary() (string, error) {
	dir, err := pgtest.BinDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "psql"), nil
}
