package spool

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/session/record"
)

const crashDirEnv = "PHIGATE_SPOOL_CRASH_DIR"

// TestCrashChild is the process that gets killed: it records sessions as
// fast as it can and prints a line for every event whose Wait returned,
// and for every session whose Close returned. It only runs when re-executed
// by TestCrashRecovery.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashRecovery")
	}
	seg, _ := strconv.ParseInt(os.Getenv(crashDirEnv+"_SEGMENT"), 10, 64)
	maxOpen, _ := strconv.Atoi(os.Getenv(crashDirEnv + "_MAX_OPEN"))
	s, err := Open(Config{Dir: dir, SegmentBytes: seg, MaxOpenFiles: maxOpen})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // never outlive a lost parent
	defer cancel()
	go s.Run(ctx)
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for n := 0; ctx.Err() == nil; n++ {
				rec := newRecorder(sessionID(w*10000 + n))
				l, err := s.Create(rec.id)
				if err != nil {
					say("error %v", err)
					return
				}
				events := 20 + rng.IntN(200)
				for i := 0; i < events; i++ {
					var frame []byte
					if i < events-1 {
						frame = rec.next()
					} else {
						frame = rec.end("terminate")
					}
					lsn, err := l.Append(frame)
					if err == nil {
						err = s.Wait(ctx, lsn)
					}
					if err != nil {
						say("error %v", err)
						return
					}
					say("ack %s %d", rec.id, i)
				}
				if err := l.Close(ctx); err != nil {
					say("error %v", err)
					return
				}
				say("closed %s", rec.id)
			}
		})
	}
	wg.Wait()
}

// TestCrashRecovery kills a recording process with SIGKILL in the middle of
// its appends, then recovers its spool: every acknowledged event is in its
// session file, every file verifies, sessions whose Close returned stay
// closed, and the others are listed as recovered and can be closed.
func TestCrashRecovery(t *testing.T) {
	cases := []struct {
		name          string
		segment       int64
		losePageCache bool // remove the session files after the kill, as if never written back
		maxOpen       int  // Config.MaxOpenFiles of the child; 0: the default
	}{
		{"small segments", minSegmentBytes, false, 0},
		{"journal only", DefaultSegmentBytes, true, 0},
		// Eight writers, three session files open: files are closed and
		// opened again all the time, across segment rolls.
		{"small segments, 3 open files", minSegmentBytes, false, 3},
	}
	for _, tc := range cases {
		for _, kill := range []int{150, 1500, 4000} {
			t.Run(fmt.Sprintf("%s/kill after %d", tc.name, kill), func(t *testing.T) {
				crashAndRecover(t, tc.segment, tc.maxOpen, tc.losePageCache, kill)
			})
		}
	}
}

func crashAndRecover(t *testing.T, segment int64, maxOpen int, losePageCache bool, kill int) {
	dir := t.TempDir()
	acked, closed := runAndKill(t, dir, segment, maxOpen, kill)
	if losePageCache {
		files, _ := filepath.Glob(filepath.Join(dir, "sessions", "*.rec"))
		for _, f := range files {
			os.Remove(f)
		}
	}

	s := openSpool(t, Config{Dir: dir, SegmentBytes: segment})
	recovered := make(map[string]bool)
	for _, id := range s.Recovered() {
		recovered[id] = true
	}
	for id := range closed {
		if recovered[id] {
			t.Errorf("session %s was closed but is listed as recovered", id)
		}
	}
	for id, last := range acked {
		f, err := DirStore{Dir: dir}.Open(context.Background(), id)
		if err != nil {
			t.Fatalf("acknowledged session %s: %v", id, err)
		}
		sum, err := record.Verify(f, id, recovered[id], nil)
		f.Close()
		if err != nil {
			t.Fatalf("session %s: %v", id, err)
		}
		if sum.Events < uint64(last)+1 {
			t.Fatalf("session %s: %d events on disk, %d acknowledged", id, sum.Events, last+1)
		}
		if !recovered[id] && !sum.Closed {
			t.Fatalf("session %s neither closed nor recovered", id)
		}
	}
	// A shipper starting now finds every session whose Close returned and
	// none that the crash left open; the feed reports those as they close.
	feed := s.WatchClosed()
	defer feed.Stop()
	final, err := s.ClosedSessions()
	if err != nil {
		t.Fatal(err)
	}
	isFinal := make(map[string]bool)
	for _, id := range final {
		isFinal[id] = true
		if recovered[id] {
			t.Errorf("session %s is listed as recovered and as closed", id)
		}
	}
	for id := range closed {
		if !isFinal[id] {
			t.Errorf("session %s was closed but is not listed as closed", id)
		}
	}
	r := start(t, s)
	for id := range recovered {
		endRecovered(t, r, id)
		verifyFile(t, dir, id, false)
	}
	nRecovered := len(recovered)
	reported := collect(t, feed, nRecovered)
	for _, id := range reported {
		if !recovered[id] {
			t.Errorf("feed reported %s, which was not recovered", id)
		}
		delete(recovered, id)
	}
	if len(recovered) != 0 {
		t.Errorf("recovered sessions closed but not reported: %v", recovered)
	}
	t.Logf("%d sessions acknowledged, %d closed, %d recovered", len(acked), len(closed), nRecovered)
}

// runAndKill runs TestCrashChild on dir until it has acknowledged n events,
// kills it, and returns the last acknowledged event index per session and
// the sessions whose Close returned.
func runAndKill(t *testing.T, dir string, segment int64, maxOpen, n int) (acked map[string]int, closed map[string]bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s_SEGMENT=%d", crashDirEnv, segment),
		fmt.Sprintf("%s_MAX_OPEN=%d", crashDirEnv, maxOpen))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked, closed = make(map[string]int), make(map[string]bool)
	sc := bufio.NewScanner(stdout)
	count := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "ack":
			i, _ := strconv.Atoi(f[2])
			acked[f[1]] = i
			count++
		case len(f) == 2 && f[0] == "closed":
			closed[f[1]] = true
		case len(f) > 0 && f[0] == "error":
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child: %s", sc.Text())
		}
		if count == n {
			// Kill between two acknowledgements, while the other writers
			// are mid-append: lines already printed are the child's promise.
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}
	if count < n {
		t.Fatalf("child acknowledged only %d events", count)
	}
	return acked, closed
}
