// Command fgbench measures what a large merge costs the applications on the host:
// a writer appends a 200-byte line every 2 ms to the active segment of a stream
// (write + fdatasync, as a durable logger does, timing each append) while the
// real daemon (`logcompactd run`) merges the stream's closed segments (-size in
// total, 8 inputs, compress none: copy_file_range on the same filesystem).
//
// It runs one scenario per -scenarios entry (max_rate and load awareness on or
// off) and prints, per scenario, the merge's duration and the writer's append
// latency p50/p99/max during the merge against a baseline taken just before,
// with nothing else running. As root it syncs and drops the page cache before
// each scenario, so the merge reads from the disk.
//
//	go run ./scripts/fgbench -bin bin/logcompactd -dir /var/tmp -size 1GiB
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type scenario struct {
	name    string
	maxRate string // compaction.max_rate
	load    bool   // load.enabled
	// asUnit: the daemon runs as packaging/systemd's unit runs it, Nice=10 and
	// IOSchedulingClass=idle (here with nice(1) and ionice(1), which set the
	// same two attributes before exec).
	asUnit bool
}

var scenarios = map[string]scenario{
	"unpaced":   {"unpaced", "0", false, false},
	"rate":      {"rate", "64MiB/s", false, false},
	"load":      {"load", "0", true, false},
	"rate+load": {"rate+load", "64MiB/s", true, false},
	"unit":      {"unit", "64MiB/s", true, true},
}

func main() {
	bin := flag.String("bin", "bin/logcompactd", "the daemon binary")
	dir := flag.String("dir", os.TempDir(), "where to make the stream (a disk, not a tmpfs, to be meaningful)")
	size := flag.Int64("size", 1<<30, "bytes of closed segments to merge")
	list := flag.String("scenarios", "unpaced,rate+load,rate,load,unit", "comma-separated: unpaced, rate, load, rate+load, unit (the defaults, nice 10, idle I/O class)")
	base := flag.Duration("baseline", 5*time.Second, "how long to measure the writer alone before each merge")
	flag.Parse()
	for _, name := range strings.Split(*list, ",") {
		sc, ok := scenarios[name]
		if !ok {
			fail(fmt.Errorf("unknown scenario %q", name))
		}
		if err := run(*bin, *dir, *size, *base, sc); err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fgbench:", err)
	os.Exit(1)
}

func run(bin, parent string, size int64, baseline time.Duration, sc scenario) error {
	work, err := os.MkdirTemp(parent, "lcd-bench-fg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	logs := filepath.Join(work, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		return err
	}
	line := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	for i := 0; i < len(line); i += 100 {
		line[i] = '\n'
	}
	old := time.Now().Add(-time.Hour)
	per := size / 8
	for i := 1; i <= 8; i++ {
		p := filepath.Join(logs, fmt.Sprintf("app-%06d.log", i))
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		for n := int64(0); n < per; n += int64(len(line)) {
			if _, err := f.Write(line[:min(int64(len(line)), per-n)]); err != nil {
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Chtimes(p, old, old); err != nil {
			return err
		}
	}
	syscall.Sync()
	if os.Geteuid() == 0 {
		_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
	}
	cfg := filepath.Join(work, "logcompactd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`state_dir: %s/state
scan_interval: 1s
load: {enabled: %v, interval: 1s}
compaction: {quiesce: 1s, target_size: %d, threshold: 0.000001, min_segments: 2, workers: 1, max_rate: %s}
archive: {cold_dir: %s/cold, max_hot_bytes: 1TiB}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, work, sc.load, size*2, sc.maxRate, work, logs)), 0o644); err != nil {
		return err
	}

	active, err := os.OpenFile(filepath.Join(logs, "app-999999.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer active.Close()
	w := startWriter(active)
	time.Sleep(baseline) // the baseline is a measurement window, not a wait for an event
	before := w.cut()

	argv := []string{bin, "--config", cfg, "--log-format", "json", "run"}
	if sc.asUnit {
		argv = append([]string{"nice", "-n", "10", "ionice", "-c", "3"}, argv...)
	}
	daemon := exec.Command(argv[0], argv[1:]...)
	stderr, err := daemon.StderrPipe()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := daemon.Start(); err != nil {
		return err
	}
	merged := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"msg":"merged"`) || strings.Contains(sc.Text(), `"msg":"merge abandoned`) {
				merged <- sc.Text()
			}
		}
		close(merged)
	}()
	msg, ok := <-merged
	took := time.Since(start)
	during := w.cut()
	w.stop()
	_ = daemon.Process.Signal(syscall.SIGTERM)
	go func() {
		for range merged {
		}
	}()
	_ = daemon.Wait()
	if !ok || !strings.Contains(msg, `"msg":"merged"`) {
		return fmt.Errorf("no merge: %s", msg)
	}
	b, d := summarize(before), summarize(during)
	fmt.Printf("FG scenario=%s max_rate=%s load=%v as_unit=%v size_mib=%d merge_s=%.2f merge_mib_s=%.1f "+
		"base_p50_us=%d base_p99_us=%d base_max_us=%d p50_us=%d p99_us=%d max_us=%d appends=%d\n",
		sc.name, sc.maxRate, sc.load, sc.asUnit, size>>20, took.Seconds(), float64(size)/(1<<20)/took.Seconds(),
		b.p50, b.p99, b.max, d.p50, d.p99, d.max, d.n)
	return nil
}

// writer appends and fdatasyncs a line every 2 ms, recording each append's latency.
type writer struct {
	cutc  chan chan []time.Duration
	stopc chan struct{}
	done  chan struct{}
}

func startWriter(f *os.File) *writer {
	w := &writer{cutc: make(chan chan []time.Duration), stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		defer close(w.done)
		line := append(bytes.Repeat([]byte("x"), 199), '\n')
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var lat []time.Duration
		for {
			select {
			case <-w.stopc:
				return
			case c := <-w.cutc:
				c <- lat
				lat = nil
			case <-tick.C:
				t0 := time.Now()
				if _, err := f.Write(line); err != nil {
					fail(err)
				}
				if err := unix.Fdatasync(int(f.Fd())); err != nil {
					fail(err)
				}
				lat = append(lat, time.Since(t0))
			}
		}
	}()
	return w
}

// cut returns the latencies recorded since the previous cut.
func (w *writer) cut() []time.Duration {
	c := make(chan []time.Duration)
	w.cutc <- c
	return <-c
}

func (w *writer) stop() { close(w.stopc); <-w.done }

type stats struct{ n, p50, p99, max int64 }

func summarize(l []time.Duration) stats {
	if len(l) == 0 {
		return stats{}
	}
	slices.Sort(l)
	at := func(q float64) int64 { return l[min(len(l)-1, int(q*float64(len(l))))].Microseconds() }
	return stats{n: int64(len(l)), p50: at(0.50), p99: at(0.99), max: l[len(l)-1].Microseconds()}
}
