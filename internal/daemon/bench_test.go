package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/config"
)

// BenchmarkPass100k: one full pass (scan, growth, snapshot, plans, report) over
// 100,000 idle closed segments in one directory — the steady-state cost of
// every scan_interval on a large host.
func BenchmarkPass100k(b *testing.B) {
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
	d.Pass(nil) // first scan: leases
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Pass(nil)
	}
	b.StopTimer()
	start := time.Now()
	if err := d.SaveHistory(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "save-history-ms")
}
