package main

import (
	"slices"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1GiB": 1 << 30, "256MiB": 256 << 20, "512MB": 512e6, "10KiB": 10 << 10, "4096": 4096, " 2 GiB ": 2 << 30,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "0", "1TiB", "9999999999999GiB", "1.5GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestStreamQuerySize(t *testing.T) {
	for _, size := range []int64{1 << 20, 256 << 20, 1 << 30} {
		_, rows := streamQuery(size, false)
		if got := rows * (streamRowWidth + 7); got < size || got-size >= streamRowWidth+7 {
			t.Errorf("size %d: %d rows carry %d bytes", size, rows, got)
		}
	}
}

func TestRotate(t *testing.T) {
	s := []system{{name: "a"}, {name: "b"}, {name: "c"}}
	first := map[string]int{}
	for k := range 6 {
		r := rotate(s, k)
		if len(r) != 3 {
			t.Fatalf("rotate dropped systems: %v", r)
		}
		first[r[0].name]++
	}
	if first["a"] != 2 || first["b"] != 2 || first["c"] != 2 {
		t.Fatalf("each system should lead equally often: %v", first)
	}
	if s[0].name != "a" {
		t.Fatal("rotate changed its input")
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.clients, []int{1, 16, 64}) || c.scale != 10 || len(c.stream) != 2 || c.stream[1] != 1<<30 {
		t.Fatalf("defaults: %+v", c)
	}
	for _, bad := range [][]string{
		{"-clients", "0"}, {"-modes", "fast"}, {"-systems", "pgpool"}, {"-stream", "1PB"}, {"-duration", "10ms"},
		{"-workloads", "tpcc"}, {"-stream-reps", "0"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	f.Add("1GiB")
	f.Add("256MiB")
	f.Add("9223372036854775807B")
	f.Fuzz(func(t *testing.T, in string) {
		n, err := ParseSize(in)
		if err == nil && (n <= 0 || n > 1<<50) {
			t.Fatalf("ParseSize(%q) = %d", in, n)
		}
	})
}

func TestParseRounds(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil || c.rounds != 1 {
		t.Fatalf("default: rounds %d, %v", c.rounds, err)
	}
	if c, err := parseFlags([]string{"-rounds", "3"}); err != nil || c.rounds != 3 {
		t.Fatalf("-rounds 3: %d, %v", c.rounds, err)
	}
	if _, err := parseFlags([]string{"-rounds", "0"}); err == nil {
		t.Fatal("-rounds 0 accepted")
	}
}
