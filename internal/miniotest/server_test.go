package miniotest

import (
	"context"
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
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	select {
	case <-s.exited:
	default:
		t.Fatalf("minio (pid %d) still running after Stop", pid)
	}
	if _, err := c.ListBuckets(ctx); err == nil {
		t.Fatal("server still answers after Stop")
	}
}
