package miniotest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestStartMakeBucketStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	s, err := Start(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("minio ready in %v", time.Since(start))
	defer s.Stop()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	locked, plain := s.MakeBucket(t), s.MakePlainBucket(t)
	if mode, _, _, _, err := c.GetObjectLockConfig(ctx, locked); err != nil || mode != "Enabled" {
		t.Fatalf("locked bucket: object lock %q %v", mode, err)
	}
	if v, err := c.GetBucketVersioning(ctx, locked); err != nil || !v.Enabled() {
		t.Fatalf("locked bucket: versioning %+v %v", v, err)
	}
	if _, _, _, _, err := c.GetObjectLockConfig(ctx, plain); err == nil {
		t.Fatal("plain bucket has an object lock configuration")
	}
	pid := s.cmd.Process.Pid
	start = time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("minio stopped in %v", time.Since(start))
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	select {
	case <-s.exited:
	default:
		t.Fatalf("minio (pid %d) still running after Stop", pid)
	}
	if conn, err := net.Dial("tcp", s.Addr()); err == nil {
		conn.Close()
		t.Fatal("server still listens after Stop")
	}
}

// TestDiesWithTestBinary starts a server from a child copy of this test
// binary, kills the child with SIGKILL (no cleanup runs) and waits for the
// server to go away: the parent-death signal must take it down.
func TestDiesWithTestBinary(t *testing.T) {
	if os.Getenv("MINIOTEST_CHILD") != "" {
		s, err := Start(context.Background(), os.Getenv("MINIOTEST_CHILD"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("ADDR", s.Addr())
		io.Copy(io.Discard, os.Stdin) // until the parent kills us
		return
	}
	if _, err := Binary(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiesWithTestBinary$", "-test.v")
	cmd.Env = append(os.Environ(), "MINIOTEST_CHILD="+t.TempDir())
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var addr string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child did not start a server")
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("minio on %s outlived its killed test binary", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
