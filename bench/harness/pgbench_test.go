package harness

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// pgbench 15's report, as captured from a real run.
const pgbench15Output = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 1
query mode: simple
number of clients: 2
number of threads: 2
maximum number of tries: 1
duration: 1 s
number of transactions actually processed: 263
number of failed transactions: 0 (0.000%)
latency average = 7.619 ms
initial connection time = 3.449 ms
tps = 262.485004 (without initial connection time)
`

func TestParseSummary(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Summary
		err  error
	}{
		{"pgbench 15", pgbench15Output, Summary{TPS: 262.485004, Transactions: 263, LatencyAvgMS: 7.619, ConnectMS: 3.449}, nil},
		{"failures", strings.Replace(pgbench15Output, "failed transactions: 0 (0.000%)", "failed transactions: 12 (4.5%)", 1),
			Summary{TPS: 262.485004, Transactions: 263, Failed: 12, LatencyAvgMS: 7.619, ConnectMS: 3.449}, nil},
		{"older pgbench, tps only", "tps = 10.5 (without initial connection time)\n", Summary{TPS: 10.5}, nil},
		{"aborted run", "pgbench: error: connection to server failed\n", Summary{}, ErrNoTPS},
		{"no transaction completed", "duration: 1 s\nnumber of transactions actually processed: 0\nnumber of failed transactions: 0 (NaN%)\n", Summary{}, nil},
		{"tps inside a line is not the report", "x tps = 5 (without initial connection time)\n", Summary{}, ErrNoTPS},
		{"empty", "", Summary{}, ErrNoTPS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSummary([]byte(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadTxLog(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []int64
		failed  int64
		wantErr bool
	}{
		{"real lines", "0 1 6547 0 1795638479 209652\n0 2 7314 0 1795638479 216974\n", []int64{6547, 7314}, 0, false},
		{"with lag and retries", "3 9 812 0 1795638479 209652 15 0\n", []int64{812}, 0, false},
		{"failed and skipped", "0 1 failed 0 1795638479 209652\n1 4 skipped 0 1795638479 1\n2 2 99 0 1 1\n", []int64{99}, 2, false},
		{"blank lines", "\n0 1 5 0 1 1\n\n", []int64{5}, 0, false},
		{"short line", "0 1 5\n", nil, 0, true},
		{"not a number", "0 1 5ms 0 1 1\n", nil, 0, true},
		{"negative", "0 1 -5 0 1 1\n", nil, 0, true},
		{"line too long", "0 1 5 0 1 " + strings.Repeat("9", 5000) + "\n", nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, failed, err := ReadTxLog(strings.NewReader(tc.in), nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if !slices.Equal(got, tc.want) || failed != tc.failed {
				t.Fatalf("got %v (%d failed), want %v (%d failed)", got, failed, tc.want, tc.failed)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(i + 1)
	}
	for _, tc := range []struct {
		in   []int64
		p    float64
		want int64
	}{
		{nil, 50, 0},
		{[]int64{7}, 50, 7},
		{[]int64{7}, 99, 7},
		{[]int64{1, 2}, 50, 1},
		{[]int64{1, 2, 3}, 50, 2},
		{hundred, 50, 50},
		{hundred, 99, 99},
		{hundred, 100, 100},
		{hundred, 0.001, 1},
	} {
		if got := Percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("Percentile(%d values, %v) = %d, want %d", len(tc.in), tc.p, got, tc.want)
		}
	}
	// Durations too (the cluster benchmark's propagation and join times).
	if got := Percentile([]time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}, 99); got != 3*time.Millisecond {
		t.Errorf("Percentile of durations = %v, want 3ms", got)
	}
}

func FuzzParseSummary(f *testing.F) {
	f.Add([]byte(pgbench15Output))
	f.Add([]byte("tps = 1e400 (without initial connection time)\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSummary(b)
		if err == nil && (s.TPS < 0 || s.TPS != s.TPS) {
			t.Fatalf("accepted tps %v", s.TPS)
		}
	})
}

func FuzzReadTxLog(f *testing.F) {
	f.Add("0 1 6547 0 1795638479 209652\n1 1 failed 0 1795638479 209017\n")
	f.Add("0 1 5 0 1 1 2 3\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		lat, _, err := ReadTxLog(strings.NewReader(in), nil)
		if err != nil {
			return
		}
		for _, v := range lat {
			if v < 0 {
				t.Fatalf("negative latency %d accepted", v)
			}
		}
	})
}
