package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

// soakWriter is a log-writing application (LCD_TEST_SOAKWRITER =
// "mode:dir:name:bytesPerSecond:rotateBytes"). It appends whole lines
// "<name> <seq>\n", seq counting from 0, every 20 ms, and rotates at rotateBytes:
//
//   - mode "rename": writes dir/name.log; rotation renames it to name.log.<k>,
//     writes one more line through the old descriptor (a write in flight while
//     rotating), opens a new name.log, then closes the old one.
//   - mode "number": writes dir/name-<k>.log, closing it and opening the next.
//
// On SIGTERM it prints how many lines it wrote and exits 0.
func soakWriter(spec string) {
	f := strings.Split(spec, ":")
	mode, dir, name := f[0], f[1], f[2]
	rate, _ := strconv.Atoi(f[3])
	rotate, _ := strconv.Atoi(f[4])
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	k, seq, size := 1, 0, 0
	path := func() string {
		if mode == "rename" {
			return filepath.Join(dir, name+".log")
		}
		return filepath.Join(dir, fmt.Sprintf("%s-%06d.log", name, k))
	}
	open := func() *os.File {
		out, err := os.OpenFile(path(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		return out
	}
	write := func(out *os.File, n int) {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "%s %09d\n", name, seq)
			seq++
		}
		m, err := out.WriteString(b.String())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		size += m
	}
	out := open()
	tick := time.NewTicker(20 * time.Millisecond)
	perTick := max(1, rate/50/(len(name)+11))
	for {
		select {
		case <-stop:
			out.Close()
			fmt.Println(seq)
			os.Exit(0)
		case <-tick.C:
			write(out, perTick)
			if size < rotate {
				continue
			}
			size = 0
			if mode == "rename" {
				if err := os.Rename(path(), filepath.Join(dir, fmt.Sprintf("%s.log.%d", name, k))); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(5)
				}
				k++
				write(out, 1)
				next := open()
				out.Close()
				out = next
			} else {
				out.Close()
				k++
				out = open()
			}
		}
	}
}

// soakDuration is how long TestSoak runs: LCD_SOAK (a Go duration; `make soak`
// sets 10m), one minute by default (what `make test` and CI run).
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("LCD_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("LCD_SOAK=%q: %v", s, err)
		}
		return d
	}
	return time.Minute
}

// TestSoak runs four applications writing and rotating (two rename-then-reopen,
// two numbered) into two directories, and the daemon (a production build, not
// the race one) at aggressive settings — merging, archiving with zstd to a cold
// dir on a tmpfs — killed with SIGKILL at a random moment every 1-5 s and
// restarted, for soakDuration. Then the writers stop, one `once` finishes what
// is left, and the ledger is checked: every line of every writer exactly once
// across hot and cold, in order within each file; no temp file anywhere; peak
// memory of every daemon instance and the state files bounded.
func TestSoak(t *testing.T) {
	dur := soakDuration(t)
	soak(t, dur, dur-max(10*time.Second, dur/5))
}

// singleDuration is how long TestSingleInstance runs: LCD_SINGLE (a Go
// duration; `make soak-single` sets 1h), one minute by default (make test).
func singleDuration(t *testing.T) time.Duration {
	if s := os.Getenv("LCD_SINGLE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("LCD_SINGLE=%q: %v", s, err)
		}
		return d
	}
	return time.Minute
}

// TestSingleInstance is the soak without kills: one `run` for the whole
// duration under the same writers, rotation, merges and archival. Every line
// exactly once, and memory that does not creep: the resident set at the end
// (median of the last 5 samples, one a second) at most 1.2× what it was at a
// sixth of the run (10 minutes of an hour; 10 s of make test's minute).
func TestSingleInstance(t *testing.T) {
	soak(t, singleDuration(t), 0)
}

// soak runs the writers for dur; the daemon is killed -9 every 1-5 s during
// killPhase, then one instance runs to the end.
func soak(t *testing.T, dur, killPhase time.Duration) {
	testutil.RequireRoot(t, "mount a tmpfs as the cold tier")
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LCD_SOAK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("soak for %s, seed %d (LCD_SOAK_SEED to replay the kill schedule)", dur, seed)

	root := t.TempDir()
	bin := filepath.Join(root, "logcompactd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	hotA, hotB, cold := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "cold")
	for _, d := range []string{hotA, hotB, cold} {
		must(t, os.Mkdir(d, 0o755))
	}
	must(t, syscall.Mount("tmpfs", cold, "tmpfs", 0, "size=1g"))
	t.Cleanup(func() { _ = syscall.Unmount(cold, syscall.MNT_DETACH) })
	config := filepath.Join(root, "logcompactd.yaml")
	must(t, os.WriteFile(config, []byte(fmt.Sprintf(`state_dir: %s/state
scan_interval: 200ms
growth: {window: 10s}
load: {enabled: false}
compaction: {quiesce: 300ms, threshold: 0.000001, min_segments: 2, target_size: 512KiB, growth_ref: 1KiB/s, workers: 2, max_rate: 2MiB/s}
archive: {cold_dir: %s, time_to_archive: 20s, max_hot_bytes: 3MiB, compress: zstd}
streams:
  - {name: web, dir: %s, pattern: "web.log*", order: mtime}
  - {name: api, dir: %s, pattern: "api-*.log"}
  - {name: db, dir: %s, pattern: "db.log*", order: mtime}
  - {name: worker, dir: %s, pattern: "worker-*.log"}
`, root, cold, hotA, hotA, hotB, hotB)), 0o644))

	type app struct {
		name string
		cmd  *exec.Cmd
		out  bytes.Buffer
	}
	var apps []*app
	for _, w := range []struct{ mode, dir, name string }{
		{"rename", hotA, "web"}, {"number", hotA, "api"}, {"rename", hotB, "db"}, {"number", hotB, "worker"},
	} {
		a := &app{name: w.name}
		a.cmd = exec.Command(os.Args[0])
		a.cmd.Env = append(childEnv(), fmt.Sprintf("LCD_TEST_SOAKWRITER=%s:%s:%s:%d:%d", w.mode, w.dir, w.name, 60000, 48<<10))
		a.cmd.Stdout, a.cmd.Stderr = &a.out, os.Stderr
		must(t, a.cmd.Start())
		t.Cleanup(func() { _ = a.cmd.Process.Kill() })
		apps = append(apps, a)
	}

	logPath := filepath.Join(root, "daemon.log")
	logFile, err := os.Create(logPath)
	must(t, err)
	defer logFile.Close()
	var kills, inFlight int
	var peaks []int64 // peak RSS of each killed instance, KiB
	deadline := time.Now().Add(killPhase)
	for time.Now().Before(deadline) {
		d := exec.Command(bin, "--config", config, "--log-format", "json", "run")
		d.Stdout, d.Stderr = logFile, logFile
		must(t, d.Start())
		exited := make(chan error, 1)
		go func() { exited <- d.Wait() }()
		life := time.NewTimer(time.Second + time.Duration(rng.Int64N(int64(4*time.Second))))
		select {
		case err := <-exited:
			life.Stop()
			t.Fatalf("the daemon exited by itself after %d kills: %v (log %s)", kills, err, tail(logPath))
		case <-life.C:
		}
		peaks = append(peaks, vmHWM(d.Process.Pid))
		must(t, d.Process.Signal(syscall.SIGKILL))
		<-exited
		kills++
		if sd, err := fsx.OpenDir(filepath.Join(root, "state")); err == nil {
			if ops, _ := fsx.ReadJournal(sd, "journal"); len(ops) > 0 {
				inFlight++
			}
			sd.Close()
		}
	}

	// The last fifth: one instance left running under the same writers (memory of
	// a long-lived process, sampled every second), then a clean SIGTERM.
	calm := exec.Command(bin, "--config", config, "--log-format", "json", "run")
	calm.Stdout, calm.Stderr = logFile, logFile
	must(t, calm.Start())
	calmEnd := time.After(dur - killPhase)
	sample := time.NewTicker(time.Second)
	var rssKiB []int64
	for sampling := true; sampling; {
		select {
		case <-sample.C:
			rssKiB = append(rssKiB, vmRSS(calm.Process.Pid))
		case <-calmEnd:
			sampling = false
		}
	}
	sample.Stop()
	peaks = append(peaks, vmHWM(calm.Process.Pid))
	must(t, calm.Process.Signal(syscall.SIGTERM))
	if err := calm.Wait(); err != nil {
		t.Fatalf("SIGTERM under load: %v (log %s)", err, tail(logPath))
	}

	written := map[string]int{}
	for _, a := range apps {
		must(t, a.cmd.Process.Signal(syscall.SIGTERM))
		if err := a.cmd.Wait(); err != nil {
			t.Fatalf("writer %s: %v", a.name, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(a.out.String()))
		must(t, err)
		written[a.name] = n
	}
	final := exec.Command(bin, "--config", config, "--log-format", "json", "once")
	final.Stdout, final.Stderr = logFile, logFile
	if err := final.Run(); err != nil {
		t.Fatalf("final once: %v (log %s)", err, tail(logPath))
	}

	// The ledger: every line of every writer, exactly once, across hot and cold.
	seen := map[string][]int{}
	files := 0
	for _, dir := range []string{hotA, hotB, filepath.Join(cold, "web"), filepath.Join(cold, "api"),
		filepath.Join(cold, "db"), filepath.Join(cold, "worker"), filepath.Join(root, "state")} {
		ents, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			if fsx.IsTemp(e.Name()) {
				t.Errorf("temp file left: %s", filepath.Join(dir, e.Name()))
			}
			if dir == filepath.Join(root, "state") || !e.Type().IsRegular() {
				continue
			}
			files++
			ledgerFile(t, filepath.Join(dir, e.Name()), seen)
		}
	}
	lost, dup := 0, 0
	for name, n := range written {
		got := seen[name]
		sort.Ints(got)
		count := make([]int, n)
		for _, s := range got {
			if s < 0 || s >= n {
				t.Errorf("%s: line %d was never written (wrote %d)", name, s, n)
				continue
			}
			count[s]++
		}
		for s, c := range count {
			switch {
			case c == 0:
				lost++
				if lost <= 5 {
					t.Errorf("%s: line %d lost", name, s)
				}
			case c > 1:
				dup += c - 1
				if dup <= 5 {
					t.Errorf("%s: line %d present %d times", name, s, c)
				}
			}
		}
	}
	logs, _ := os.ReadFile(logPath)
	merges := bytes.Count(logs, []byte(`"msg":"merged`))
	archives := bytes.Count(logs, []byte(`"msg":"archived"`))
	var stateBytes int64
	ents, _ := os.ReadDir(filepath.Join(root, "state"))
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			stateBytes += fi.Size()
		}
	}
	slices.Sort(peaks)
	peakKiB := peaks[len(peaks)-1]
	total := 0
	for _, n := range written {
		total += n
	}
	t.Logf("soak %s (seed %d): %d kill -9s, %d with a merge or archival in flight; %d lines written by 4 writers, "+
		"%d lost, %d duplicated; %d merges and %d archivals logged; %d files at the end; peak RSS of an instance median %.1f MiB, max %.1f MiB; "+
		"RSS of the long-lived one %s MiB; state dir %d bytes",
		dur, seed, kills, inFlight, total, lost, dup, merges, archives, files, float64(peaks[len(peaks)/2])/1024, float64(peakKiB)/1024, mib(rssKiB), stateBytes)
	// The same, for make bench's table (scripts/benchtable).
	if killPhase > 0 {
		t.Logf("SOAK seconds=%.0f kills=%d in_flight=%d lines=%d lost=%d duplicated=%d merges=%d archivals=%d peak_mib=%.1f state_bytes=%d",
			dur.Seconds(), kills, inFlight, total, lost, dup, merges, archives, float64(peakKiB)/1024, stateBytes)
	}
	if lost+dup > 0 {
		t.Fatalf("%d lines lost, %d duplicated (seed %d)", lost, dup, seed)
	}
	if merges == 0 || archives == 0 {
		t.Fatalf("the soak did not exercise the daemon: %d merges, %d archivals", merges, archives)
	}
	if killPhase == 0 {
		// Memory of the one instance: the end against a sixth of the way in.
		early, late := medianAround(rssKiB, len(rssKiB)/6), medianAround(rssKiB, len(rssKiB)-3)
		t.Logf("SINGLE seconds=%.0f lines=%d lost=%d duplicated=%d merges=%d archivals=%d rss_early_mib=%.1f rss_end_mib=%.1f",
			dur.Seconds(), total, lost, dup, merges, archives, float64(early)/1024, float64(late)/1024)
		if late > early*12/10 {
			t.Fatalf("the resident set grew from %d KiB at a sixth of the run to %d KiB at its end", early, late)
		}
	}
	if kills < int(killPhase/(6*time.Second)) { // lives are 1-5 s, 3 s on average
		t.Fatalf("only %d kills in %s", kills, killPhase)
	}
	// Bounded: a daemon over a handful of small streams stays small however long
	// the history, and the state (journal compacted at start, history of live
	// segments only) does not grow with time.
	if peakKiB > 64<<10 {
		t.Fatalf("a daemon instance peaked at %d KiB", peakKiB)
	}
	if stateBytes > 4<<20 {
		t.Fatalf("state dir holds %d bytes", stateBytes)
	}
}

// medianAround is the median of the 5 samples centred on i (fewer at the ends).
func medianAround(kib []int64, i int) int64 {
	lo, hi := max(0, i-2), min(len(kib), i+3)
	w := slices.Clone(kib[lo:hi])
	slices.Sort(w)
	return w[len(w)/2]
}

// ledgerFile adds the sequence numbers of each writer's lines in path (zstd
// when it ends in .zst) to seen, and checks they increase within the file.
func ledgerFile(t *testing.T, path string, seen map[string][]int) {
	t.Helper()
	r, done := openSegment(t, path)
	defer done()
	last := map[string]int{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, num, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			t.Fatalf("%s: malformed line %q", path, sc.Text())
		}
		if l, ok := last[name]; ok && n <= l {
			t.Errorf("%s: %s line %d after %d", path, name, n, l)
		}
		last[name] = n
		seen[name] = append(seen[name], n)
	}
	must(t, sc.Err())
}

// vmHWM is a process's peak resident set in KiB (0 if unreadable).
func vmHWM(pid int) int64 { return procStatus(pid, "VmHWM:") }

// vmRSS is a process's resident set in KiB (0 if unreadable).
func vmRSS(pid int) int64 { return procStatus(pid, "VmRSS:") }

// mib shows samples in KiB as "first … last (max M)" in MiB.
func mib(kib []int64) string {
	if len(kib) == 0 {
		return "-"
	}
	m := kib[0]
	for _, k := range kib {
		m = max(m, k)
	}
	return fmt.Sprintf("%.1f at first, %.1f at the end, %.1f max", float64(kib[0])/1024, float64(kib[len(kib)-1])/1024, float64(m)/1024)
}

func procStatus(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// tail is the end of a log file, for failure messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	return string(b[max(0, len(b)-4000):])
}
