package daemon

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/config"
)

// BenchmarkPass100k is one pass (scan, growth, snapshot, plans, report) over
// 100,000 idle closed segments in one directory: "full" re-reads the directory,
// "unchanged" is a tick with no inotify event.
func BenchmarkPass100k(b *testing.B) {
	b.Run("full", func(b *testing.B) { benchPass(b, false) })
	b.Run("unchanged", func(b *testing.B) { benchPass(b, true) })
}

var benchHook func()

func benchPass(b *testing.B, reuse bool) {
	dir := b.TempDir()
	logs := filepath.Join(dir, "logs")
	os.Mkdir(logs, 0o755)
	old := time.Now().Add(-time.Hour)
	for i := 0; i < 100000; i++ {
		p := filepath.Join(logs, fmt.Sprintf("seg-%06d.log", i))
		os.WriteFile(p, make([]byte, 100), 0o644)
		os.Chtimes(p, old, old)
	}
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`state_dir: %s/state
compaction: {threshold: 1000000}
archive: {cold_dir: %s/cold, max_hot_bytes: 100GiB}
streams:
  - {name: s, dir: %s, pattern: "seg-*.log"}
`, dir, dir, logs)))
	if err != nil {
		b.Fatal(err)
	}
	d, err := Open(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	d.Pass(nil, nil) // first scan: leases
	var unchanged map[string]bool
	if reuse {
		unchanged = map[string]bool{logs: true} // what run passes when inotify saw nothing
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Pass(nil, unchanged)
	}
	b.StopTimer()
	if benchHook != nil {
		benchHook()
	}
	start := time.Now()
	if err := d.SaveHistory(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "save-history-ms")
}

// BenchmarkLiveSet is what an idle daemon keeps between passes over 100,000
// closed segments in 1,000 directories: the heap in use after two passes and a
// collection, per segment. The resident set of `run` follows it (GOGC=25).
func BenchmarkLiveSet(b *testing.B) {
	dir := b.TempDir()
	var streams []byte
	old := time.Now().Add(-time.Hour)
	for d := 0; d < 1000; d++ {
		logs := filepath.Join(dir, "logs", fmt.Sprintf("d%04d", d))
		if err := os.MkdirAll(logs, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			p := filepath.Join(logs, fmt.Sprintf("seg-%06d.log", i))
			os.WriteFile(p, make([]byte, 100), 0o644)
			os.Chtimes(p, old, old)
		}
		streams = fmt.Appendf(streams, "  - {name: s%04d, dir: %s, pattern: \"seg-*.log\"}\n", d, logs)
	}
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`state_dir: %s/state
compaction: {threshold: 1000000000}
archive: {cold_dir: %s/cold, max_hot_bytes: 1TiB}
streams:
%s`, dir, dir, streams)))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		d, err := Open(cfg, Options{})
		if err != nil {
			b.Fatal(err)
		}
		d.Pass(nil, nil)
		d.Pass(nil, nil)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if benchHook != nil {
			benchHook()
		}
		b.ReportMetric(float64(ms.HeapAlloc)/1e5, "live-B/segment")
		runtime.KeepAlive(d)
		d.Close()
	}
}

// BenchmarkWriteJSON: `plan --json`'s encoding of 100,000 closed segments in
// 1,000 streams (the report only; see scripts/bench-scale.sh for the command).
func BenchmarkWriteJSON(b *testing.B) {
	r := &Report{Time: "2026-12-03T00:00:00Z", Source: "local"}
	for i := range 1000 {
		s := StreamReport{Name: fmt.Sprintf("s%04d", i), Dir: fmt.Sprintf("/var/log/app/d%04d", i), Pattern: "seg-*.log",
			Actions: []Action{}, Deferred: []Action{}, Notes: []string{"nothing to merge"}, Skipped: []string{}}
		for j := range 100 {
			s.Segments = append(s.Segments, SegmentReport{Name: fmt.Sprintf("seg-%06d.log", j), Size: 101, State: "closed", PredictedSize: 101})
		}
		r.Streams = append(r.Streams, s)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.WriteJSON(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
