// Command recording is phigate's recording benchmark (issue 10): what it
// costs to record every session durably and ship it to object storage,
// measured in one run on one machine against a real PostgreSQL (fsync on)
// and a real MinIO (a bucket with versioning and object lock):
//
//   - recording throughput: -copy-clients clients at once send the
//     synthetic clinic (internal/synth: patients, encounters with
//     free-text notes, prescriptions; -copy-mb each) with COPY FROM STDIN
//     in text format, which phigate records whole (copy.data events). Two
//     clients: pgx (pgconn.CopyFrom, 64 KiB CopyData messages) and psql
//     (\copy from a file, 8 KiB messages: eight times the events). Three
//     systems, the order rotating between -copy-rounds rounds: direct to
//     PostgreSQL (the peer), phigate with shipping off, phigate with
//     shipping on. Figures: COPY data (client to server) per second while
//     the clients run; for shipping on, also per second until the node's
//     backlog has drained (every session indexed in the store: shipped,
//     not queued), the drain time, events and recorded (raw) bytes per
//     second from the node's /metrics, the journal's mean fdatasync, CPU
//     time per part (/proc: the node, PostgreSQL, MinIO, the clients, and
//     the rest of a shared machine) and bytes written (files, sockets);
//   - compressed size: stored bytes (chunks and manifests) over the raw
//     recorded bytes, and over the COPY data;
//   - upload throughput: the node's stored bytes per second over load and
//     drain, and a direct Put of -put-objects 1 MiB random objects to
//     MinIO, 8 at a time, through storage/blob with the node's client
//     settings and retention (what the node's uploaders do);
//   - verification: `phigate audit verify --json` over everything the
//     node shipped in the run, keys from the node's API; MB/s of stored
//     chunk bytes by the report's own time; then the same recordings
//     copied into a directory store and verified there (the verifier
//     without the network);
//   - pgbench select-only and TPC-B-like, simple protocol, -clients
//     clients, -rounds rounds alternating shipping on and off (order
//     rotating), direct as context; TPS ratio on/off, events per
//     transaction, and the journal's fdatasync with shipping on and off.
//
// MinIO runs on this machine: its CPU and, unless -minio-dir moves its
// drive (to /dev/shm, say), its disk writes compete with the node's, which
// a remote store's would not. -chunk-interval sets the nodes'
// store.chunk_interval; -perf records CPU profiles (perf record -g) of the
// nodes and of audit verify, for finding where the time goes.
//
// Both nodes run the same binary, built with -tags phigate_bench (by this
// program, from the module it runs in, unless -phigate-bench names one):
// PHIGATE_BENCH_SHIPPING=off leaves recordings in the spool, so the legs
// differ in shipping only. Each node is a cluster of its own with the
// policy of bench/pg (recording with fsync, masking profile). The product
// binary (-phigate, from make build) runs `audit verify`.
//
// It prints a summary against the targets and writes recording-*.json
// (bench.Result) and its section of README.md under -results. Nothing it
// starts outlives it.
//
//	go run ./bench/recording -phigate ./bin/phigate -results bench/results
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// config is the command line.
type config struct {
	phigate      string
	phigateBench string
	out          string
	workdir      string
	keep         bool
	scale        int

	copyClients int
	copyMB      int
	copyRounds  int
	copyWith    []string

	clients   int
	jobs      int
	duration  time.Duration
	warmup    time.Duration
	rounds    int
	workloads []string

	putObjects int
	drainLimit time.Duration
	perf       string
	minioDir   string
	chunkEvery time.Duration
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("recording", flag.ContinueOnError)
	fs.StringVar(&c.phigate, "phigate", "./bin/phigate", "product phigate binary (make build): runs audit verify")
	fs.StringVar(&c.phigateBench, "phigate-bench", "", "phigate built with -tags phigate_bench, for the nodes (default: built into the working directory)")
	fs.StringVar(&c.out, "results", "bench/results", "directory for the JSON results and README.md")
	fs.StringVar(&c.workdir, "workdir", "", "working directory for the servers, kept (default: a new temp dir, removed at the end)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory (logs, spools, store)")
	fs.IntVar(&c.scale, "scale", 10, "pgbench scale factor (-s)")
	fs.IntVar(&c.copyClients, "copy-clients", 4, "COPY clients at once")
	fs.IntVar(&c.copyMB, "copy-mb", 48, "COPY data per client, MB (the same synthetic rows for each)")
	fs.IntVar(&c.copyRounds, "copy-rounds", 2, "COPY rounds per client kind; the order of the systems rotates")
	copyWith := fs.String("copy-with", "pgx,psql", "COPY clients: pgx (64 KiB messages), psql (8 KiB messages)")
	fs.IntVar(&c.clients, "clients", 16, "pgbench clients (-c)")
	fs.IntVar(&c.jobs, "jobs", 2, "pgbench threads (-j)")
	fs.DurationVar(&c.duration, "duration", 15*time.Second, "length of each pgbench run (-T)")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "select-only warm-up per system (0: none)")
	fs.IntVar(&c.rounds, "rounds", 3, "pgbench rounds of shipping on and off (order alternating); direct runs once per workload")
	workloads := fs.String("workloads", "select-only,read-write", "pgbench workloads")
	fs.IntVar(&c.putObjects, "put-objects", 256, "1 MiB objects of the direct Put benchmark (0: skip)")
	fs.DurationVar(&c.drainLimit, "drain-limit", 3*time.Minute, "longest wait for the node's backlog to drain after a leg")
	fs.StringVar(&c.minioDir, "minio-dir", "", "directory under which MinIO's drive is made (default: in the working directory, on the nodes' disk; /dev/shm keeps the store's writes off it, as a remote store would); removed at the end unless -workdir or -keep")
	fs.DurationVar(&c.chunkEvery, "chunk-interval", 0, "the nodes' store.chunk_interval (0: the product default, 1s)")
	fs.StringVar(&c.perf, "perf", "", "directory for CPU profiles (perf record -g) of the nodes during the first round of their legs, and of audit verify (empty: none)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.perf != "" {
		abs, err := filepath.Abs(c.perf)
		if err != nil {
			return c, err
		}
		c.perf = abs
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.copyWith = splitList(*copyWith)
	for _, w := range c.copyWith {
		if w != clientPgx && w != clientPsql {
			return c, fmt.Errorf("-copy-with: unknown client %q", w)
		}
	}
	c.workloads = splitList(*workloads)
	for _, w := range c.workloads {
		if w != "select-only" && w != "read-write" {
			return c, fmt.Errorf("-workloads: unknown workload %q", w)
		}
	}
	switch {
	case c.copyClients < 1, c.copyMB < 1:
		return c, errors.New("-copy-clients and -copy-mb: at least 1")
	case c.copyRounds < 0, c.rounds < 0, c.putObjects < 0:
		return c, errors.New("-copy-rounds, -rounds and -put-objects: 0 or more")
	case c.clients < 1:
		return c, errors.New("-clients: at least 1")
	case c.duration < time.Second:
		return c, errors.New("-duration: at least 1s")
	case c.drainLimit < time.Second:
		return c, errors.New("-drain-limit: at least 1s")
	case c.chunkEvery < 0 || c.chunkEvery > time.Hour:
		return c, errors.New("-chunk-interval: 0 up to 1h")
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() { harness.Main("bench/recording", parseFlags, run) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// rig is a run's servers.
type rig struct {
	cfg    config
	work   string
	pg     *harness.Postgres
	store  *objectStore
	on     *node // shipping to the store
	off    *node // PHIGATE_BENCH_SHIPPING=off
	parts  parts
	idle   float64 // the on node's backlog when idle
	psql   string
	verify string // the binary that runs audit verify
}

func run(ctx context.Context, cfg config) (err error) {
	started := time.Now()
	rep := &report{cfg: cfg, started: started.UTC(), loadStart: loadavg()}
	work, cleanup, err := harness.WorkDir(cfg.workdir, "phigate-bench-recording-", cfg.keep, logf)
	if err != nil {
		return err
	}
	defer cleanup()
	b := &rig{cfg: cfg, work: work}

	benchBin := cfg.phigateBench
	if benchBin == "" {
		benchBin = filepath.Join(work, "phigate-bench")
		logf("go build -tags phigate_bench -o %s ./node/cmd/phigate", benchBin)
		if err := buildBenchBinary(ctx, benchBin); err != nil {
			return err
		}
	}
	if benchBin, err = filepath.Abs(benchBin); err != nil {
		return err
	}
	b.verify = benchBin
	if p, err := filepath.Abs(cfg.phigate); err == nil {
		if _, err := os.Stat(p); err == nil {
			b.verify = p
		} else {
			logf("no product binary at %s (make build): audit verify runs the benchmark build", cfg.phigate)
		}
	}
	rep.verifyBin = b.verify
	if b.psql, err = psqlBinary(); err != nil {
		return err
	}

	if b.pg, err = harness.StartPostgres(ctx, filepath.Join(work, "postgres"), cfg.scale, logf); err != nil {
		return err
	}
	defer b.pg.Stop()
	minioDir := filepath.Join(work, "minio")
	if cfg.minioDir != "" {
		if minioDir, err = os.MkdirTemp(cfg.minioDir, "phigate-bench-minio-"); err != nil {
			return err
		}
		if !cfg.keep && cfg.workdir == "" {
			defer os.RemoveAll(minioDir)
		}
	}
	logf("minio in %s", minioDir)
	if b.store, err = startStore(ctx, minioDir); err != nil {
		return err
	}
	defer b.store.srv.Stop()

	token := harness.RandomSecret()
	logf("phigate nodes: %s (shipping to %s), %s", sysPhigateOn, b.store.location, sysPhigateOff)
	if b.on, err = startNode(ctx, benchBin, filepath.Join(work, sysPhigateOn), sysPhigateOn, true, b.pg, b.store, token, cfg.chunkEvery); err != nil {
		return err
	}
	defer b.on.proc.Stop()
	if b.off, err = startNode(ctx, benchBin, filepath.Join(work, sysPhigateOff), sysPhigateOff, false, b.pg, b.store, token, cfg.chunkEvery); err != nil {
		return err
	}
	defer b.off.proc.Stop()
	b.parts = parts{nodes: []*node{b.on, b.off}, pgPID: b.pg.PID(), minioPID: findProcess(b.store.srv.Addr())}
	if b.parts.minioPID == 0 {
		logf("minio's process not found: its CPU time is not counted")
	}
	if cfg.perf != "" {
		if err := os.MkdirAll(cfg.perf, 0o755); err != nil {
			return err
		}
		logf("CPU profiles (perf record -g) go to %s", cfg.perf)
	}
	if b.idle, err = b.on.idleBacklog(ctx, time.Minute); err != nil {
		return err
	}
	logf("%s idle backlog: %.0f bytes", sysPhigateOn, b.idle)

	var failures []error
	fail := func(err error) {
		logf("FAILED: %v", err)
		failures = append(failures, err)
	}
	stopped := func() error { return ctx.Err() }

	if cfg.copyRounds > 0 && len(cfg.copyWith) > 0 {
		size := int64(cfg.copyMB) * 1e6
		logf("COPY data: synthetic clinic, %d MB per client, %d clients", cfg.copyMB, cfg.copyClients)
		w, err := prepareCopy(ctx, b.pg, filepath.Join(work, "copy"), size, cfg.copyClients)
		if err != nil {
			return err
		}
		rep.copyBytesPerClient, rep.copyRowsPerClient = w.bytes, w.rowsPerClient()
		for _, client := range cfg.copyWith {
			legs, err := b.measureCopy(ctx, w, client)
			if stopped() != nil {
				return stopped()
			}
			if err != nil {
				fail(fmt.Errorf("COPY %s: %w", client, err))
			}
			rep.copies = append(rep.copies, legs...)
		}
	}

	if cfg.putObjects > 0 {
		logf("direct Put: %d objects of 1 MiB, 8 at a time", cfg.putObjects)
		p, err := b.store.measurePut(ctx, cfg.putObjects, 1<<20, 8)
		if stopped() != nil {
			return stopped()
		}
		if err != nil {
			fail(fmt.Errorf("direct Put: %w", err))
		} else {
			rep.put = &p
			logf("direct Put: %.1f MB/s (%d objects in %v)", p.MBps(), p.Objects, p.Elapsed.Round(time.Millisecond))
		}
	}

	if cfg.rounds > 0 && len(cfg.workloads) > 0 {
		legs, err := b.measurePgbench(ctx)
		if stopped() != nil {
			return stopped()
		}
		if err != nil {
			fail(err)
		}
		rep.pgbench = legs
	}

	// Everything the on node shipped in the run, verified as an auditor would.
	if m, err := b.on.scrape(ctx); err == nil {
		rep.shippedRaw, rep.shippedStored = m.get(mRaw), m.get(mStored)
		rep.uploadErrors = m.get(mUpErrors)
	}
	from, to := started.UTC().Truncate(time.Hour), time.Now().UTC().Add(time.Minute)
	logf("audit verify --store %s", b.store.location)
	u0 := b.parts.sample()
	v, err := runVerify(ctx, b.verify, "s3", b.store.location, b.store.credentialsEnv(), b.on, from, to, b.perfPath("verify-s3"))
	v.StoreCPU = b.parts.sample().since(u0).cpu[partMinio]
	if stopped() != nil {
		return stopped()
	}
	if err != nil {
		fail(err)
	}
	if v.ElapsedMS > 0 {
		rep.verifies = append(rep.verifies, v)
		logf("verify s3: %d sessions, %d chunks, %.1f MB in %d ms: %.1f MB/s (command %v, CPU %.2fs, MinIO's %.2fs)", v.Sessions, v.Chunks, float64(v.Bytes)/1e6, v.ElapsedMS, v.MBps(), v.Wall.Round(time.Millisecond), v.CPU.Seconds(), v.StoreCPU.Seconds())
	}
	dir := filepath.Join(work, "store-copy")
	start := time.Now()
	objects, n, err := b.store.copyToDir(ctx, dir)
	if err != nil {
		fail(fmt.Errorf("copy the store to a directory: %w", err))
	} else {
		logf("copied %d objects (%.1f MB) to %s in %v", objects, float64(n)/1e6, dir, time.Since(start).Round(time.Millisecond))
		v, err := runVerify(ctx, b.verify, "fs", fsLocation(dir), nil, b.on, from, to, b.perfPath("verify-fs"))
		if stopped() != nil {
			return stopped()
		}
		if err != nil {
			fail(err)
		}
		if v.ElapsedMS > 0 {
			rep.verifies = append(rep.verifies, v)
			logf("verify fs: %d sessions, %d chunks, %.1f MB in %d ms: %.1f MB/s (command %v, CPU %.2fs)", v.Sessions, v.Chunks, float64(v.Bytes)/1e6, v.ElapsedMS, v.MBps(), v.Wall.Round(time.Millisecond), v.CPU.Seconds())
		}
	}

	rep.loadEnd = loadavg()
	rep.elapsed = time.Since(started)
	rep.print(os.Stdout)
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	logf("results written to %s (run took %v)", cfg.out, rep.elapsed.Round(time.Second))
	return errors.Join(failures...)
}

// perfPath is where the profile of name goes, or "" without -perf.
func (b *rig) perfPath(name string) string {
	if b.cfg.perf == "" {
		return ""
	}
	return filepath.Join(b.cfg.perf, name+".perf.data")
}

// profile starts perf on n for the first round of a leg (-perf), and
// returns what stops it.
func (b *rig) profile(n *node, round int, name string) func() {
	path := b.perfPath(name)
	if path == "" || n == nil || round != 0 {
		return func() {}
	}
	stop, err := startPerf(n.proc.PID(), path)
	if err != nil {
		logf("no profile of %s: %v", name, err)
		return func() {}
	}
	return func() {
		if err := stop(); err != nil {
			logf("profile of %s: %v", name, err)
		}
	}
}

// loadavg is /proc/loadavg's three load averages, or "?": a figure taken
// under load from elsewhere must say so.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
