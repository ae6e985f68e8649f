package main

import (
	"context"
	"errors"
	"slices"
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
