package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/bench/harness"
)

// streamRowWidth is the width of the text column of the streaming query;
// rows are a little wider with the integer column.
const streamRowWidth = 1000

// streamQuery returns a SELECT whose text-format result carries at least
// size bytes of column data. With masked, the short id column is named so
// that phigate's bench profile masks it (rule pattern ^masked_: redact, with
// the masking proof recorded): a masked export where the identifiers are a
// small part of each row.
func streamQuery(size int64, masked bool) (sql string, rows int64) {
	perRow := int64(streamRowWidth + 7) // "1234567" + the repeated text
	rows = (size + perRow - 1) / perRow
	col := "id"
	if masked {
		col = "masked_id"
	}
	return fmt.Sprintf("SELECT lpad(g::text, 7, '0') AS %s, repeat('x', %d) AS payload FROM generate_series(1, %d) AS g",
		col, streamRowWidth, rows), rows
}

// StreamRun is one read of a large result.
type StreamRun struct {
	Bytes   int64 // column data received
	Rows    int64
	Elapsed time.Duration
}

// MBps is the throughput in 10^6 bytes per second.
func (r StreamRun) MBps() float64 { return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds() }

// streamOnce connects to ep and reads the whole result of the streaming
// query, discarding it row by row as a client that exports data would.
func streamOnce(ctx context.Context, ep harness.Endpoint, size int64, masked bool) (StreamRun, error) {
	conn, err := pgconn.Connect(ctx, ep.DSN())
	if err != nil {
		return StreamRun{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	sql, wantRows := streamQuery(size, masked)
	start := time.Now()
	rr := conn.ExecParams(ctx, sql, nil, nil, nil, nil)
	var run StreamRun
	for rr.NextRow() {
		for _, v := range rr.Values() {
			run.Bytes += int64(len(v))
		}
		run.Rows++
	}
	if _, err := rr.Close(); err != nil {
		return StreamRun{}, fmt.Errorf("stream query: %w", err)
	}
	run.Elapsed = time.Since(start)
	if run.Rows != wantRows {
		return StreamRun{}, fmt.Errorf("stream query: %d rows, want %d", run.Rows, wantRows)
	}
	return run, nil
}

// ParseSize reads sizes like 256MiB, 1GiB, 512MB, 1000000 (bytes).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
