package freeport

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestPortsAreDistinctBindableAndOutsideTheEphemeralRange(t *testing.T) {
	lo, hi := portRange()
	ps, err := Ports(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ps {
		if seen[p] {
			t.Fatalf("port %d given twice", p)
		}
		seen[p] = true
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		l.Close()
	}
}

// TestReservedAcrossProcesses runs this test binary again as a child that
// tries to lock every port the parent holds: each attempt must fail.
func TestReservedAcrossProcesses(t *testing.T) {
	if ports := os.Getenv("FREEPORT_CHILD"); ports != "" {
		dir := os.TempDir() + "/phigate-ports"
		for _, s := range strings.Split(ports, ",") {
			p, _ := strconv.Atoi(s)
			if f, ok := reserve(dir, p); ok {
				f.Close()
				t.Fatalf("child locked port %d that the parent holds", p)
			}
		}
		return
	}
	ps, err := Ports(5)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, p := range ps {
		s = append(s, strconv.Itoa(p))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReservedAcrossProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD="+strings.Join(s, ","))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
