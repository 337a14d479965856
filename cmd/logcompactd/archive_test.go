package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

// allLines reads the hot segments and the cold archives (decompressed) of the
// stream in natural order and returns their concatenation.
func allLines(t *testing.T, hot, cold string) string {
	t.Helper()
	type seg struct{ key, path string }
	var segs []seg
	for _, d := range []string{hot, cold} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.Type().IsRegular() {
				segs = append(segs, seg{strings.TrimSuffix(e.Name(), ".zst"), filepath.Join(d, e.Name())})
			}
		}
	}
	sort.Slice(segs, func(i, j int) bool { return model.NaturalLess(segs[i].key, segs[j].key) })
	var b strings.Builder
	for _, s := range segs {
		r, done := openSegment(t, s.path)
		if _, err := io.Copy(&b, r); err != nil {
			t.Fatalf("%s: %v", s.path, err)
		}
		done()
	}
	return b.String()
}

// openSegment opens a hot segment or a cold archive for reading, decompressing
// when the name ends in .zst; done closes it.
func openSegment(t *testing.T, path string) (r io.Reader, done func()) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, ".zst") {
		return f, func() { f.Close() }
	}
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return zr, func() { zr.Close(); f.Close() }
}

// checkSequence checks that all holds the soak writer's lines "app 0 … n-1", in order.
func checkSequence(t *testing.T, all string, n int) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(all))
	i := 0
	for sc.Scan() {
		if want := fmt.Sprintf("app %09d", i); sc.Text() != want {
			t.Fatalf("line %d is %q, want %q: a line lost or duplicated", i, sc.Text(), want)
		}
		i++
	}
	if i != n {
		t.Fatalf("%d lines across hot and cold, the writer wrote %d", i, n)
	}
}

func hotBytes(dir string) int64 {
	ents, _ := os.ReadDir(dir)
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// TestPredictiveArchivalKeepsTheCap: a real writer appends 200 KB/s, rotating
// every 128 KiB; the cold dir is a tmpfs (another filesystem: the copy, compress,
// verify protocol). Archival starts while the hot dir is below its cap, the cap
// is never crossed, and every line is present exactly once across hot and cold.
func TestPredictiveArchivalKeepsTheCap(t *testing.T) {
	testutil.RequireRoot(t, "mount a tmpfs as the cold tier")
	e := newEnv(t)
	cold := filepath.Join(e.dir, "cold")
	must(t, os.Mkdir(cold, 0o755))
	must(t, syscall.Mount("tmpfs", cold, "tmpfs", 0, "size=64m"))
	t.Cleanup(func() { _ = syscall.Unmount(cold, syscall.MNT_DETACH) })
	const capBytes = 2 << 20
	cfg := fmt.Sprintf(`state_dir: %s/state
scan_interval: 100ms
growth: {window: 5s}
load: {enabled: false}
compaction: {quiesce: 300ms, threshold: 1000000}
archive: {cold_dir: %s, time_to_archive: 5s, max_hot_bytes: %d, low_watermark: 0.8, urgent_within: 2s, compress: zstd}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, cold, capBytes, e.logs)
	must(t, os.WriteFile(e.config, []byte(cfg), 0o644))
	n := newNotifySocket(t)
	daemon, logs := e.startDaemon(n)

	w := exec.Command(os.Args[0], "-test.run=^$")
	w.Env = append(childEnv(), "LCD_TEST_SOAKWRITER=number:"+e.logs+":app:204800:131072")
	wout, _ := w.StdoutPipe()
	must(t, w.Start())
	var peak, hotAtFirst int64 = 0, -1
	deadline := time.Now().Add(8 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	for time.Now().Before(deadline) {
		<-tick.C
		h := hotBytes(e.logs)
		peak = max(peak, h)
		if hotAtFirst < 0 {
			if ents, _ := os.ReadDir(filepath.Join(cold, "app")); len(ents) > 0 {
				hotAtFirst = h
			}
		}
	}
	tick.Stop()
	must(t, w.Process.Signal(syscall.SIGTERM))
	out, _ := io.ReadAll(wout)
	_ = w.Wait()
	written, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("writer output %q", out)
	}
	must(t, daemon.Process.Signal(syscall.SIGTERM))
	if code := waitExit(t, daemon, 10*time.Second); code != 0 {
		t.Fatalf("daemon exit %d\n%s", code, logs.String())
	}
	t.Logf("writer wrote %d lines (%d KiB); hot peaked at %d KiB of a %d KiB cap; first archive appeared at %d KiB hot",
		written, written*15/1024, peak/1024, capBytes/1024, hotAtFirst/1024)
	if hotAtFirst < 0 {
		t.Fatalf("nothing was archived:\n%s", logs.String())
	}
	if hotAtFirst >= capBytes {
		t.Fatalf("archival started only at %d bytes, not before the cap", hotAtFirst)
	}
	if peak > capBytes {
		t.Fatalf("hot bytes peaked at %d over the cap %d", peak, capBytes)
	}
	checkSequence(t, allLines(t, e.logs, filepath.Join(cold, "app")), written)
}

// TestColdMountRemovedUnderneath: archival works, then the cold filesystem is
// lazily unmounted. The daemon must not write into the directory underneath,
// must not delete anything from hot, and says so in the log and STATUS=.
func TestColdMountRemovedUnderneath(t *testing.T) {
	testutil.RequireRoot(t, "mount and unmount a tmpfs")
	e := newEnv(t)
	cold := filepath.Join(e.dir, "cold")
	must(t, os.Mkdir(cold, 0o755))
	must(t, syscall.Mount("tmpfs", cold, "tmpfs", 0, "size=16m"))
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = syscall.Unmount(cold, syscall.MNT_DETACH)
		}
	})
	cfg := fmt.Sprintf(`state_dir: %s/state
scan_interval: 100ms
load: {enabled: false}
compaction: {quiesce: 300ms, threshold: 1000000}
archive: {cold_dir: %s, max_age: 1m, compress: zstd}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, cold, e.logs)
	must(t, os.WriteFile(e.config, []byte(cfg), 0o644))
	e.segment("app-000001.log", 4000, time.Hour)
	must(t, os.WriteFile(filepath.Join(e.logs, "app-000099.log"), []byte("active\n"), 0o644))
	n := newNotifySocket(t)
	daemon, logs := e.startDaemon(n)
	waitUntil(t, "the first archive", func() bool {
		_, err := os.Stat(filepath.Join(cold, "app", "app-000001.log.zst"))
		return err == nil
	})
	must(t, syscall.Unmount(cold, syscall.MNT_DETACH))
	mounted = false
	// More old segments that max_age wants archived.
	for i := 2; i <= 4; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 4000, time.Hour)
	}
	st := n.waitFor(t, "STATUS=")
	for !strings.Contains(st, "unusable") {
		st = n.waitFor(t, "STATUS=")
	}
	waitUntil(t, "the back-off in the log", func() bool { return strings.Contains(logs.String(), "cold dir unusable") })
	for i := 0; i < 5; i++ { // a few more cycles
		n.waitFor(t, "STATUS=")
	}
	if ents, _ := os.ReadDir(cold); len(ents) != 0 {
		t.Fatalf("the daemon wrote into the directory under the unmounted cold tier: %v", ents)
	}
	for i := 2; i <= 4; i++ {
		if _, err := os.Stat(filepath.Join(e.logs, fmt.Sprintf("app-%06d.log", i))); err != nil {
			t.Fatalf("a hot segment was removed while the cold tier was gone: %v", err)
		}
	}
	t.Logf("STATUS while the cold tier is gone: %s", st)
	must(t, daemon.Process.Signal(syscall.SIGTERM))
	if code := waitExit(t, daemon, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestBrokenColdTierHurtsNothing: a cold dir that is missing, or on a read-only
// filesystem: `once` exits 0, every hot segment stays, nothing is written, and the
// log says archival backs off.
func TestBrokenColdTierHurtsNothing(t *testing.T) {
	cases := []struct {
		name  string
		root  bool
		setup func(t *testing.T, cold string)
	}{
		{"a missing cold dir", false, func(t *testing.T, cold string) {}},
		{"a cold dir on a read-only filesystem", true, func(t *testing.T, cold string) {
			must(t, os.Mkdir(cold, 0o755))
			must(t, syscall.Mount("tmpfs", cold, "tmpfs", 0, "size=1m"))
			t.Cleanup(func() { _ = syscall.Unmount(cold, syscall.MNT_DETACH) })
			must(t, os.Mkdir(filepath.Join(cold, "app"), 0o750))
			must(t, syscall.Mount("", cold, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.root {
				testutil.RequireRoot(t, "mount a read-only tmpfs")
			}
			e := newEnv(t)
			cold := filepath.Join(e.dir, "cold")
			c.setup(t, cold)
			cfg := fmt.Sprintf(`state_dir: %s/state
load: {enabled: false}
compaction: {quiesce: 300ms, threshold: 1000000}
archive: {cold_dir: %s, max_age: 1m, compress: zstd}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, cold, e.logs)
			must(t, os.WriteFile(e.config, []byte(cfg), 0o644))
			for i := 1; i <= 3; i++ {
				e.segment(fmt.Sprintf("app-%06d.log", i), 4000, time.Hour)
			}
			must(t, os.WriteFile(filepath.Join(e.logs, "app-000099.log"), []byte("active\n"), 0o644))
			before := listing(t, e.logs)
			_, stderr, code := e.cli("once")
			if code != 0 {
				t.Fatalf("once: exit %d\n%s", code, stderr)
			}
			if after := listing(t, e.logs); after != before {
				t.Fatalf("hot changed:\n%s\n---\n%s", before, after)
			}
			if !strings.Contains(stderr, "cold dir unusable") && !strings.Contains(stderr, "archival abandoned") {
				t.Fatalf("no back-off in the log:\n%s", stderr)
			}
			if ents, err := os.ReadDir(filepath.Join(cold, "app")); err == nil && len(ents) != 0 {
				t.Fatalf("something was written to the cold dir: %v", ents)
			}
		})
	}
}
