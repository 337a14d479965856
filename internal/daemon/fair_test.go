package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/logcompactd/logcompactd/internal/config"
)

// TestArchivalSharesTheWorkersAcrossStreams: one worker, two streams with
// three segments each to archive. The moves alternate between the streams: a
// chain takes the worker per move, and the other stream, waiting, gets it
// next. (A chain used to hold its worker to the end: one stream with a long
// chain, or one huge segment, starved the others.)
func TestArchivalSharesTheWorkersAcrossStreams(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a", "b", "cold"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	for stream, n := range map[string]int{"a": 4, "b": 4} {
		for i := 1; i <= n; i++ {
			p := filepath.Join(dir, stream, fmt.Sprintf("%s-%06d.log", stream, i))
			if err := os.WriteFile(p, []byte("line\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, old.Add(time.Duration(i)*time.Second), old.Add(time.Duration(i)*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`state_dir: %s/state
load: {enabled: false}
compaction: {workers: 1, threshold: 1000000}
archive: {cold_dir: %s/cold, max_age: 1m, compress: none}
streams:
  - {name: a, dir: %s/a, pattern: "a-*.log"}
  - {name: b, dir: %s/b, pattern: "b-*.log"}
`, dir, dir, dir, dir)))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	d, err := Open(cfg, Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Once(); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, e := range logs.FilterMessage("archived").All() {
		order = append(order, e.ContextMap()["stream"].(string))
	}
	if got := strings.Join(order, ","); got != "a,b,a,b,a,b" && got != "b,a,b,a,b,a" {
		t.Fatalf("archived in stream order %s, want them alternating (each waits for one move of the other, not all)", got)
	}
}

// TestAShrinkingSegmentIsReportedAndCounted: a segment truncated by its writer
// (copytruncate) between two passes is logged at warn with the bytes that
// vanished, and counted per stream.
func TestAShrinkingSegmentIsReportedAndCounted(t *testing.T) {
	cfg, logs := testConfig(t)
	core, seen := observer.New(zap.WarnLevel)
	d, err := Open(cfg, Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Pass(nil, nil)
	p := filepath.Join(logs, "app-000002.log")
	if err := os.Truncate(p, 1000); err != nil {
		t.Fatal(err)
	}
	d.Pass(nil, nil)
	got := seen.FilterMessageSnippet("a segment shrank").All()
	if len(got) != 1 || got[0].ContextMap()["bytes"] != int64(300000-1000) || got[0].ContextMap()["segment"] != "app-000002.log" {
		t.Fatalf("logged %v", seen.All())
	}
	if n := d.ShrunkBytes()["app"]; n != 299000 {
		t.Fatalf("counted %d bytes, want 299000", n)
	}
}
