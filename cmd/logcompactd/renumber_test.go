package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

// renumberWriter is a log-writing application (LCD_TEST_RENUMBERWRITER =
// "mode:dir:linesPerBatch:rotateMs:seed"). Every 10 ms it appends a batch of
// whole lines "app <seq>\n", seq counting from 0, to dir/app.log:
//
//   - mode "renumber": app.log stays open; after a random interval of 0.2 to 1.8
//     rotateMs (seeded: the daemon's scans, which follow the renames, do not
//     settle into the gaps between rotations) it rotates the way
//     logrotate's numbered scheme does: every app.log.<N> present (listed at that
//     moment: the daemon merges and archives them away, so the set has gaps),
//     highest N first, is renamed to app.log.<N+1>; then app.log to app.log.1;
//     one more batch goes through the old descriptor (a write in flight while
//     rotating); a new app.log is opened and the old one closed. A name gone
//     meanwhile (ENOENT: archived or merged) is skipped. Renames never replace
//     (RENAME_NOREPLACE): a writer bug must not pass for the daemon's loss.
//   - mode "reopen": the application of a logrotate `create` setup: for each
//     batch it opens app.log (O_APPEND, never O_CREATE: the file is logrotate's
//     to create), writes, closes. While app.log is missing (between logrotate's
//     rename and its create) the batch waits for the next tick; nothing is lost.
//
// On SIGTERM it prints how many lines it wrote and exits 0.
func renumberWriter(spec string) {
	f := strings.Split(spec, ":")
	mode, dir := f[0], f[1]
	perBatch, _ := strconv.Atoi(f[2])
	rotateMs, _ := strconv.Atoi(f[3])
	seed, _ := strconv.ParseUint(f[4], 10, 64)
	rng := rand.New(rand.NewPCG(seed, seed))
	interval := func() time.Duration {
		return time.Duration(rotateMs)*time.Millisecond/5 + time.Duration(rng.Int64N(int64(rotateMs)*int64(time.Millisecond)*8/5+1))
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	path := filepath.Join(dir, "app.log")
	fail := func(code int, err error) {
		fmt.Fprintln(os.Stderr, "renumber writer:", err)
		os.Exit(code)
	}
	seq := 0
	batch := func() []byte {
		var b bytes.Buffer
		for i := 0; i < perBatch; i++ {
			fmt.Fprintf(&b, "app %d\n", seq+i)
		}
		return b.Bytes()
	}
	write := func(out *os.File) {
		if _, err := out.Write(batch()); err != nil {
			fail(4, err)
		}
		seq += perBatch
	}
	tick := time.NewTicker(10 * time.Millisecond)
	if mode == "reopen" {
		for {
			select {
			case <-stop:
				fmt.Println(seq)
				os.Exit(0)
			case <-tick.C:
				out, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				if errors.Is(err, os.ErrNotExist) {
					continue // mid-rotation: logrotate has not created it yet
				}
				if err != nil {
					fail(3, err)
				}
				write(out)
				if err := out.Close(); err != nil {
					fail(4, err)
				}
			}
		}
	}
	open := func() *os.File {
		out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
		if err != nil {
			fail(3, err)
		}
		return out
	}
	rename := func(from, to string) error {
		return unix.Renameat2(unix.AT_FDCWD, filepath.Join(dir, from), unix.AT_FDCWD, filepath.Join(dir, to), unix.RENAME_NOREPLACE)
	}
	out := open()
	rotate := time.NewTimer(interval())
	for {
		select {
		case <-stop:
			out.Close()
			fmt.Println(seq)
			os.Exit(0)
		case <-tick.C:
			write(out)
		case <-rotate.C:
			ents, err := os.ReadDir(dir)
			if err != nil {
				fail(5, err)
			}
			var nums []int
			for _, e := range ents {
				if n, ok := numbered(e.Name()); ok {
					nums = append(nums, n)
				}
			}
			sort.Sort(sort.Reverse(sort.IntSlice(nums)))
			for _, n := range nums {
				err := rename(fmt.Sprintf("app.log.%d", n), fmt.Sprintf("app.log.%d", n+1))
				if err != nil && !errors.Is(err, unix.ENOENT) {
					fail(5, fmt.Errorf("rename app.log.%d: %w", n, err))
				}
			}
			if err := rename("app.log", "app.log.1"); err != nil {
				fail(5, fmt.Errorf("rename app.log: %w", err))
			}
			write(out)
			next := open()
			out.Close()
			out = next
			rotate.Reset(interval())
		}
	}
}

// numbered reports N for a name exactly "app.log.<digits>" (not the daemon's
// "app.log.3~c1", not a temp file).
func numbered(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "app.log.")
	if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	return n, err == nil
}

// renumberRig is what the two rename-under-kill tests share: a production build
// of the daemon (not the race one, like TestSoak), a hot dir, a cold dir on a
// tmpfs, and an aggressive config: scans every 150 ms, segments closed 250 ms
// after their last write, any two closed segments merged, a 512 KiB cap that
// keeps archival (zstd) busy, stream order by mtime as numbered rotation needs.
type renumberRig struct {
	t                    *testing.T
	seed                 uint64
	rng                  *rand.Rand
	root, hot, cold, bin string
	config, logPath      string
	logFile              *os.File
	stream               rigStream
	// control names the writer's own files in hot (lock, state, a link to
	// the current file): not segments, not read by ledger.
	control map[string]bool
}

// rigStream is what differs between the rig's users: the stream's pattern and
// order, and the sizes that keep merging and archival busy at the writer's rate.
type rigStream struct {
	pattern, order     string
	targetSize, maxHot string
	// store, when set, is the cold tier: s3://bkt/fleet/{host} on this real S3
	// server (r.cold is then where its POSIX backend keeps those objects).
	store *testutil.S3
}

func newRenumberRig(t *testing.T) *renumberRig {
	return newRigStream(t, rigStream{pattern: "app.log*", order: "mtime", targetSize: "64KiB", maxHot: "512KiB"})
}

// newRigStream is the rig with the stream st (the recipe tests of
// writers_test.go: real log writers, each with its own pattern and order).
func newRigStream(t *testing.T, st rigStream) *renumberRig {
	testutil.RequireRoot(t, "mount a tmpfs as the cold tier")
	// The kill rigs spend most of their minute waiting on writers and kill
	// schedules: they run side by side (go test -parallel, GOMAXPROCS at a time),
	// after the package's other tests.
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LCD_RENUMBER_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("LCD_RENUMBER_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (LCD_RENUMBER_SEED to replay the kill schedule)", seed)
	r := &renumberRig{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed)), root: t.TempDir(), stream: st}
	r.bin = filepath.Join(r.root, "logcompactd")
	if out, err := exec.Command("go", "build", "-o", r.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	r.hot, r.cold = filepath.Join(r.root, "hot"), filepath.Join(r.root, "cold")
	for _, d := range []string{r.hot, r.cold} {
		must(t, os.Mkdir(d, 0o755))
	}
	coldDir, s3 := r.cold, ""
	if st.store != nil {
		host, err := os.Hostname()
		must(t, err)
		r.cold = filepath.Join(st.store.Dir, "bkt", "fleet", host)
		coldDir = "s3://bkt/fleet/{host}"
		s3 = fmt.Sprintf(", s3: {endpoint: %q, path_style: true, timeout: 5s}", st.store.Endpoint)
	} else {
		must(t, syscall.Mount("tmpfs", r.cold, "tmpfs", 0, "size=256m"))
		t.Cleanup(func() { _ = syscall.Unmount(r.cold, syscall.MNT_DETACH) })
	}
	r.config = filepath.Join(r.root, "logcompactd.yaml")
	must(t, os.WriteFile(r.config, []byte(fmt.Sprintf(`state_dir: %s/state
scan_interval: 150ms
growth: {window: 10s}
load: {enabled: false}
compaction: {quiesce: 250ms, threshold: 0.000001, min_segments: 2, target_size: %s, growth_ref: 1KiB/s, workers: 2, max_rate: 8MiB/s}
archive: {cold_dir: %q, time_to_archive: 20s, max_hot_bytes: %s, compress: zstd%s}
streams:
  - {name: app, dir: %s, pattern: %q, order: %s}
`, r.root, st.targetSize, coldDir, st.maxHot, s3, r.hot, st.pattern, st.order)), 0o644))
	r.logPath = filepath.Join(r.root, "daemon.log")
	f, err := os.Create(r.logPath)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	r.logFile = f
	if keep := os.Getenv("LCD_RENUMBER_KEEP"); keep != "" {
		t.Cleanup(func() { // before the tmpfs is unmounted and the root removed
			if t.Failed() {
				dst := filepath.Join(keep, fmt.Sprintf("%s-%d", t.Name(), seed))
				if out, err := exec.Command("cp", "-a", r.root, dst).CombinedOutput(); err != nil {
					t.Logf("keep %s: %v %s", dst, err, out)
				} else {
					t.Logf("hot, cold, state and daemon.log kept in %s", dst)
				}
			}
		})
	}
	return r
}

// env is the daemon's environment: with an S3 cold tier, its credentials
// (through the standard AWS chain).
func (r *renumberRig) env() []string {
	if r.stream.store == nil {
		return os.Environ()
	}
	return append(os.Environ(), r.stream.store.Env()...)
}

// startWriter starts renumberWriter with spec; stop SIGTERMs it and returns the
// number of lines it wrote.
func (r *renumberRig) startWriter(spec string) (stop func() int) {
	t := r.t
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(childEnv(), "LCD_TEST_RENUMBERWRITER="+spec)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return func() int {
		t.Helper()
		must(t, cmd.Process.Signal(syscall.SIGTERM))
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer: %v (a writer failure, not the daemon's)", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatalf("writer output %q: %v", out.String(), err)
		}
		return n
	}
}

// killLoop runs `logcompactd run` and kills it with SIGKILL after a random
// 1-3 s, again and again, for d. It returns the number of kills and how many of
// them left an operation in the journal (a merge or archival in flight).
func (r *renumberRig) killLoop(d time.Duration) (kills, inFlight int) {
	t := r.t
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		cmd := exec.Command(r.bin, "--config", r.config, "--log-format", "json", "run")
		cmd.Env = r.env()
		cmd.Stdout, cmd.Stderr = r.logFile, r.logFile
		must(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		life := time.NewTimer(time.Second + time.Duration(r.rng.Int64N(int64(2*time.Second))))
		select {
		case err := <-exited:
			life.Stop()
			t.Fatalf("the daemon exited by itself after %d kills: %v (seed %d, log %s)", kills, err, r.seed, tail(r.logPath))
		case <-life.C:
		}
		must(t, cmd.Process.Signal(syscall.SIGKILL))
		<-exited
		kills++
		if sd, err := fsx.OpenDir(filepath.Join(r.root, "state")); err == nil {
			if ops, _ := fsx.ReadJournal(sd, "journal"); len(ops) > 0 {
				inFlight++
			}
			sd.Close()
		}
	}
	return kills, inFlight
}

// finalOnce runs one `once` (recovery, then a last pass) with a deadline.
func (r *renumberRig) finalOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bin, "--config", r.config, "--log-format", "json", "once")
	cmd.Env = r.env()
	cmd.Stdout, cmd.Stderr = r.logFile, r.logFile
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("final once: %v (ctx %v, log %s)", err, ctx.Err(), tail(r.logPath))
	}
}

// ledger checks the promise over hot and cold (decompressed): every line
// 0..written-1 exactly once, increasing within each file (ledgerFile), and no
// temp file in hot, cold or the state dir. It returns the counts; for the first
// lost or duplicated lines the failure names the files that hold their neighbours
// or their copies.
func (r *renumberRig) ledger(written int) (files, lost, dup int) {
	t := r.t
	where := make([][]string, written) // the files holding each line
	for _, dir := range []string{r.hot, filepath.Join(r.cold, "app"), filepath.Join(r.root, "state")} {
		ents, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			if fsx.IsTemp(e.Name()) {
				t.Errorf("temp file left: %s", filepath.Join(dir, e.Name()))
			}
			if dir == filepath.Join(r.root, "state") || !e.Type().IsRegular() || (dir == r.hot && r.control[e.Name()]) {
				continue
			}
			files++
			seen := map[string][]int{}
			path := filepath.Join(dir, e.Name())
			ledgerFile(t, path, seen)
			for name := range seen {
				if name != "app" {
					t.Errorf("%s: lines of an unknown writer %q", path, name)
				}
			}
			rel, _ := filepath.Rel(r.root, path)
			for _, s := range seen["app"] {
				if s < 0 || s >= written {
					t.Errorf("%s: line %d was never written (wrote %d)", rel, s, written)
					continue
				}
				where[s] = append(where[s], rel)
			}
		}
	}
	for s, in := range where {
		switch {
		case len(in) == 0:
			lost++
			if lost <= 5 {
				var near []string
				if s > 0 {
					near = append(near, where[s-1]...)
				}
				if s+1 < written {
					near = append(near, where[s+1]...)
				}
				t.Errorf("line %d lost (its neighbours are in %v)", s, near)
			}
		case len(in) > 1:
			dup += len(in) - 1
			if dup <= 5 {
				t.Errorf("line %d present %d times: in %v", s, len(in), in)
			}
		}
	}
	return files, lost, dup
}

// fewAbandoned fails when more than one job in ten gave up: jobs follow their
// inputs by identity, so a writer renaming them is not a reason to (the first
// logrotate runs abandoned 39 of 160 merges).
func (r *renumberRig) fewAbandoned() {
	merges, archives, abandoned := r.logged()
	if abandoned*10 > merges+archives {
		r.t.Errorf("%d jobs abandoned for %d merges and %d archivals", abandoned, merges, archives)
	}
}

// logged counts the merges and archivals the daemon instances logged, and the
// jobs that gave up (inputs intact: a writer renamed or changed one meanwhile).
func (r *renumberRig) logged() (merges, archives, abandoned int) {
	logs, err := os.ReadFile(r.logPath)
	must(r.t, err)
	return bytes.Count(logs, []byte(`"msg":"merged`)), bytes.Count(logs, []byte(`"msg":"archived"`)),
		bytes.Count(logs, []byte(`"msg":"merge abandoned`)) + bytes.Count(logs, []byte(`"msg":"archival not finished`))
}

// check logs the summary and fails on any lost or duplicated line, or when the
// daemon did not merge and archive while the writer renumbered.
func (r *renumberRig) check(what string, killPhase time.Duration, written, kills, inFlight int, extra string) {
	t := r.t
	files, lost, dup := r.ledger(written)
	merges, archives, abandoned := r.logged()
	t.Logf("%s (seed %d): %s of kill phase, %d kill -9s (%d with a merge or archival in flight); %d lines written, "+
		"%d lost, %d duplicated; %d merges and %d archivals logged, %d jobs abandoned; %d files at the end%s",
		what, r.seed, killPhase, kills, inFlight, written, lost, dup, merges, archives, abandoned, files, extra)
	if lost+dup > 0 {
		t.Fatalf("%d lines lost, %d duplicated (seed %d)", lost, dup, r.seed)
	}
	if merges == 0 || archives == 0 {
		t.Fatalf("the daemon was not exercised: %d merges, %d archivals", merges, archives)
	}
	if kills < int(killPhase/(4*time.Second)) { // lives are 1-3 s, 2 s on average
		t.Fatalf("only %d kills in %s", kills, killPhase)
	}
}

// TestRenumberingWriterUnderKill: an application rotates its log the way
// logrotate's numbered scheme does, about ten times a second (20-180 ms apart),
// renaming every app.log.<N> to app.log.<N+1> under the daemon, which merges and
// archives them (cold on a tmpfs, zstd) and is killed -9 every 1-3 s for a
// minute. Then the writer stops, one `once` finishes, and the ledger must hold
// every line exactly once across hot and cold, in order within each file, no
// temp file. LCD_RENUMBER_SEED replays the kill and rotation schedules (not the
// timing); LCD_RENUMBER_KEEP=DIR keeps what a failed run left there.
func TestRenumberingWriterUnderKill(t *testing.T) {
	r := newRenumberRig(t)
	const killPhase = 60 * time.Second
	stop := r.startWriter(fmt.Sprintf("renumber:%s:20:100:%d", r.hot, r.rng.Uint64()))
	kills, inFlight := r.killLoop(killPhase)
	written := stop()
	r.finalOnce()
	files := r.inStreamOrder()
	r.check("renumbering writer", killPhase, written, kills, inFlight, fmt.Sprintf("; %d files in stream order; cat read %d lines in order",
		len(files), r.catCheck(written)))
	r.fewAbandoned()
}

// TestLogrotateNumberedUnderKill: the same, with the rotation done by the real
// logrotate (numbered scheme, create), forced about ten times a second, and an
// application that reopens app.log for every batch. rotate 1000 is more than
// the ~600 rotations of the test: logrotate's own retention never deletes a line.
func TestLogrotateNumberedUnderKill(t *testing.T) {
	lr := testutil.RequireTool(t, "logrotate")
	r := newRenumberRig(t)
	conf, state := r.logrotateConf(lr, `rotate 1000
    create
    missingok
    nocompress
    nodateext
    nocopytruncate`)
	stopWriter := r.startWriter("reopen:" + r.hot + ":20:0:0")
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	stopRotating := r.logrotateLoop(lr, conf, state, func() <-chan time.Time { return tick.C })
	const killPhase = 60 * time.Second
	kills, inFlight := r.killLoop(killPhase)
	rs := stopRotating()
	written := stopWriter()
	r.finalOnce()
	if rs.failed > 0 {
		t.Errorf("%d of %d logrotate runs failed, the first: %s", rs.failed, rs.runs, rs.first)
	}
	if rs.runs < int(killPhase/(200*time.Millisecond)) {
		t.Errorf("only %d logrotate runs in %s, want about ten a second", rs.runs, killPhase)
	}
	files := r.inStreamOrder()
	r.check("logrotate numbered", killPhase, written, kills, inFlight, fmt.Sprintf("; %d logrotate runs; %d files in stream order", rs.runs, len(files)))
	r.fewAbandoned()
}

// logrotateConf writes a logrotate config for the rig's app.log with the given
// directives (an empty app.log is created first) and checks with a dry run that
// logrotate takes it: a config it ignores must fail here, not as a ledger full
// of lines that never rotated. logrotate ignores, with exit 0, a config
// writable by group or others; it is written 0644 in the rig's 0700 root.
func (r *renumberRig) logrotateConf(lr, directives string) (conf, state string) {
	t := r.t
	must(t, os.WriteFile(filepath.Join(r.hot, "app.log"), nil, 0o644))
	conf, state = filepath.Join(r.root, "logrotate.conf"), filepath.Join(r.root, "logrotate.state")
	must(t, os.WriteFile(conf, []byte(filepath.Join(r.hot, "app.log")+" {\n    "+directives+"\n}\n"), 0o644))
	must(t, os.Chmod(conf, 0o644))
	if out, err := exec.Command(lr, "-d", "-s", state, conf).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "rotating pattern: "+filepath.Join(r.hot, "app.log")) {
		t.Fatalf("logrotate -d: %v\n%s", err, out)
	}
	return conf, state
}

// rotations counts the runs of a logrotate loop and keeps its first failure.
type rotations struct {
	runs, failed int
	first        string
}

// logrotateLoop runs `logrotate -f` each time wait's channel fires, until the
// returned stop is called; stop returns the counts. A run that fails or prints
// anything counts as failed.
func (r *renumberRig) logrotateLoop(lr, conf, state string, wait func() <-chan time.Time) (stop func() rotations) {
	quit, done := make(chan struct{}), make(chan rotations, 1)
	go func() {
		var rs rotations
		for {
			select {
			case <-quit:
				done <- rs
				return
			case <-wait():
			}
			out, err := exec.Command(lr, "-f", "-s", state, conf).CombinedOutput()
			rs.runs++
			if err != nil || len(out) > 0 {
				rs.failed++
				if rs.first == "" {
					rs.first = fmt.Sprintf("%v: %s", err, out)
				}
			}
		}
	}()
	return func() rotations { close(quit); return <-done }
}

// TestOnceArchivesThousandsPastMaxAge: 1,500 closed segments older than
// archive.max_age (compaction off) and one active one. A single `once` must
// archive all 1,500 and exit 0, well within 120 s; the active one stays hot.
func TestOnceArchivesThousandsPastMaxAge(t *testing.T) {
	e := newEnv(t)
	cold := filepath.Join(e.dir, "cold")
	must(t, os.Mkdir(cold, 0o755))
	must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
scan_interval: 1s
load: {enabled: false}
compaction: {quiesce: 1s, threshold: 1000000}
archive: {cold_dir: %s, max_age: 1h, compress: none}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, cold, e.logs)), 0o644))
	const n = 1500
	old := time.Now().Add(-2 * time.Hour)
	for i := 1; i <= n; i++ {
		p := filepath.Join(e.logs, fmt.Sprintf("app-%06d.log", i))
		must(t, os.WriteFile(p, []byte(fmt.Sprintf("%-99s\n", fmt.Sprintf("segment %d", i))), 0o644))
		must(t, os.Chtimes(p, old, old))
	}
	active := "app-999999.log"
	must(t, os.WriteFile(filepath.Join(e.logs, active), []byte("active\n"), 0o644))

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--config", e.config, "once")
	cmd.Env = childEnv()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	ents, _ := os.ReadDir(filepath.Join(cold, "app"))
	hot, _ := os.ReadDir(e.logs)
	t.Logf("once over %d segments past max_age: %v after %s; %d archived, %d files left hot",
		n, err, took.Round(time.Millisecond), len(ents), len(hot))
	if ctx.Err() != nil {
		t.Fatalf("once did not exit within 120 s: killed with %d of %d segments archived", len(ents), n)
	}
	if err != nil {
		t.Fatalf("once: %v\n%s", err, tail2(stderr.String()))
	}
	if len(ents) != n {
		t.Errorf("%d of %d segments in the cold dir", len(ents), n)
	}
	for _, h := range hot {
		if h.Name() != active {
			t.Errorf("left hot: %s", h.Name())
		}
	}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("app-%06d.log", i)
		b, err := os.ReadFile(filepath.Join(cold, "app", name))
		if err != nil || string(b) != fmt.Sprintf("%-99s\n", fmt.Sprintf("segment %d", i)) {
			t.Fatalf("archive of %s: %v, %q", name, err, b)
		}
	}
}

// TestCompressedConsolidatedSegmentIsArchivedOnce: a merge with
// compaction.compress zstd makes a consolidated segment that is already zstd;
// archiving it with archive.compress zstd must not compress it again: the cold
// file carries one .zst and decompresses once (reference zstd) to the lines.
func TestCompressedConsolidatedSegmentIsArchivedOnce(t *testing.T) {
	zstdCLI := testutil.RequireTool(t, "zstd")
	e := newEnv(t)
	cold := filepath.Join(e.dir, "cold")
	must(t, os.Mkdir(cold, 0o755))
	config := func(compaction, archive string) {
		must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
load: {enabled: false}
compaction: {%s}
archive: {cold_dir: %s, %s}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, compaction, cold, archive, e.logs)), 0o644))
	}
	want := ""
	old := time.Now().Add(-time.Hour)
	for i := 1; i <= 4; i++ {
		c := lines(fmt.Sprintf("seg%d", i), 2000)
		want += c
		p := filepath.Join(e.logs, fmt.Sprintf("app-%06d.log", i))
		must(t, os.WriteFile(p, []byte(c), 0o644))
		must(t, os.Chtimes(p, old, old))
	}
	must(t, os.WriteFile(filepath.Join(e.logs, "app-000099.log"), []byte("active\n"), 0o644))

	// Step 1: merge only (no archival rule can fire), compressing.
	config("quiesce: 1s, min_segments: 2, threshold: 0.000001, target_size: 1MiB, compress: zstd",
		"time_to_archive: 1h, compress: zstd")
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once (merge): %d %s", code, stderr)
	}
	consolidated := filepath.Join(e.logs, "app-000001~c1.log")
	b, err := os.ReadFile(consolidated)
	if err != nil || !bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		names, _ := e.stream()
		t.Fatalf("no zstd consolidated segment after the merge (%v; hot %v)", err, names)
	}
	if got := zstdDecompress(t, zstdCLI, consolidated); got != want {
		t.Fatalf("the consolidated segment does not decompress to its inputs (%d vs %d bytes)", len(got), len(want))
	}

	// Step 2: archive only (compaction off), every closed segment older than 1 min.
	config("quiesce: 1s, threshold: 1000000", "max_age: 1m, compress: zstd")
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once (archive): %d %s", code, stderr)
	}
	ents, _ := os.ReadDir(filepath.Join(cold, "app"))
	var names []string
	for _, c := range ents {
		names = append(names, c.Name())
	}
	if len(names) != 1 {
		t.Fatalf("cold holds %v, want the one consolidated segment", names)
	}
	archive := filepath.Join(cold, "app", names[0])
	got := zstdDecompress(t, zstdCLI, archive)
	t.Logf("consolidated %d bytes (zstd) archived as %s; decompressed once: %d bytes, plain text %v",
		len(b), names[0], len(got), got == want)
	if !strings.HasSuffix(names[0], ".zst") || strings.HasSuffix(names[0], ".zst.zst") {
		t.Errorf("archive name %q: want exactly one .zst suffix", names[0])
	}
	if strings.HasPrefix(got, "\x28\xb5\x2f\xfd") {
		t.Fatalf("%s decompresses once to zstd again: compressed twice", names[0])
	}
	if got != want {
		t.Fatalf("%s decompresses to %d bytes, not the %d bytes of the original lines", names[0], len(got), len(want))
	}
	if _, err := os.Stat(consolidated); !os.IsNotExist(err) {
		t.Fatalf("the consolidated segment is still hot: %v", err)
	}
}

// zstdDecompress runs the reference decoder once on path (`zstd -dc`).
func zstdDecompress(t *testing.T, zstdCLI, path string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(zstdCLI, "-dc", path)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("zstd -dc %s: %v %s", path, err, errb.String())
	}
	return out.String()
}

// tail2 is the end of a process's output, for failure messages.
func tail2(s string) string { return s[max(0, len(s)-4000):] }
