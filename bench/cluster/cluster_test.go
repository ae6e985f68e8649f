package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSplitClients(t *testing.T) {
	for _, tc := range []struct {
		n, k int
		want []int
	}{
		{16, 3, []int{6, 5, 5}},
		{15, 3, []int{5, 5, 5}},
		{3, 3, []int{1, 1, 1}},
		{17, 3, []int{6, 6, 5}},
	} {
		if got := splitClients(tc.n, tc.k); !slices.Equal(got, tc.want) {
			t.Errorf("splitClients(%d, %d) = %v, want %v", tc.n, tc.k, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	s := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]int64{50: 5, 99: 10, 100: 10, 1: 1} {
		if got := percentile(s, p); got != want {
			t.Errorf("percentile(%v) = %d, want %d", p, got, want)
		}
	}
	if got := percentile([]time.Duration(nil), 50); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

func TestReadTxLog(t *testing.T) {
	log := "0 1 1234 0 1700000000 123456\n0 2 failed 0 1700000000 123999\n1 1 99 0 1700000000 124000\n"
	lat, failed, err := readTxLog(strings.NewReader(log), nil)
	if err != nil || failed != 1 || !slices.Equal(lat, []int64{1234, 99}) {
		t.Fatalf("readTxLog = %v, %d, %v", lat, failed, err)
	}
	if _, _, err := readTxLog(strings.NewReader("0 1 x 0 1 2\n"), nil); err == nil {
		t.Fatal("a latency that is not a number was read")
	}
}

// The bounds of probeUntil frame the moment the condition became true: the
// lower one is the start of the last unsuccessful try, the upper one the end
// of the successful one.
func TestProbeUntilBounds(t *testing.T) {
	start := time.Now()
	flip := start.Add(20 * time.Millisecond)
	r := probeUntil(context.Background(), start, func(context.Context) (bool, error) {
		if time.Now().After(flip) {
			return true, nil
		}
		return false, errors.New("not yet")
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	at := flip.Sub(start)
	if r.lower > at || r.upper < at {
		t.Fatalf("bounds [%v, %v] do not hold the flip at %v", r.lower, r.upper, at)
	}
	if len(r.attempts) == 0 {
		t.Fatal("no unsuccessful attempt counted")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if r := probeUntil(ctx, time.Now(), func(context.Context) (bool, error) { return false, errors.New("never") }); r.err == nil {
		t.Fatal("a probe that never succeeds returned no error")
	}
}
