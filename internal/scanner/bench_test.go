package scanner

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/config"
)

// Trees are built once per process (building 100,000 files takes seconds) and
// shared by the benchmark functions, which the testing package calls repeatedly.
var (
	treesMu sync.Mutex
	trees   = map[string][]string{}
)

// tree returns the dirs of a tree of dirs×files segments, each 100 bytes, mtime
// an hour ago (every segment but the newest is closed).
func tree(b *testing.B, dirs, files int) []string {
	key := fmt.Sprintf("%dx%d", dirs, files)
	treesMu.Lock()
	defer treesMu.Unlock()
	if t, ok := trees[key]; ok {
		return t
	}
	root, err := os.MkdirTemp("", "lcd-bench-"+key+"-")
	if err != nil {
		b.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	payload := make([]byte, 100)
	var out []string
	for d := 0; d < dirs; d++ {
		dir := filepath.Join(root, fmt.Sprintf("d%04d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < files; f++ {
			p := filepath.Join(dir, fmt.Sprintf("seg-%06d.log", f))
			if err := os.WriteFile(p, payload, 0o644); err != nil {
				b.Fatal(err)
			}
			if err := os.Chtimes(p, old, old); err != nil {
				b.Fatal(err)
			}
		}
		out = append(out, dir)
	}
	trees[key] = out
	return out
}

func streamsFor(dirs []string) []config.Stream {
	var ss []config.Stream
	for i, d := range dirs {
		ss = append(ss, config.Stream{Name: fmt.Sprintf("s%d", i), Dir: d, Pattern: "seg-*.log", Order: "name",
			Compaction: config.Compaction{Quiesce: 5 * time.Minute}})
	}
	return ss
}

func benchScan(b *testing.B, dirs, files int, warm bool) {
	ds := tree(b, dirs, files)
	s := New(streamsFor(ds), Options{})
	defer s.Close()
	if warm {
		s.Scan(time.Now(), nil, nil) // open the dirs
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !warm {
			s.Close()
			s = New(streamsFor(ds), Options{})
		}
		rs := s.Scan(time.Now(), nil, nil)
		n := 0
		for _, r := range rs {
			n += len(r.Segments)
		}
		if n != dirs*files {
			b.Fatalf("scanned %d segments", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(dirs*files), "ns/segment")
}

func benchFind(b *testing.B, dirs, files int) {
	ds := tree(b, dirs, files)
	root := filepath.Dir(ds[0])
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command("find", root, "-printf", "%s\n")
		cmd.Stdout = nil
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(dirs*files), "ns/segment")
}

// BenchmarkScan: a full scan of 100,000 segments. "cold" is a fresh scanner (the
// first scan after start: opens its dirs); "warm" is the steady state. Neither
// takes a lease: open for writing is asked of a decision's inputs only
// (CheckWriters).
// BenchmarkFind is `find DIR -printf '%s\n'` on the same tree in the same run.
func BenchmarkScan(b *testing.B) {
	b.Run("1dir-100k/cold", func(b *testing.B) { benchScan(b, 1, 100000, false) })
	b.Run("1dir-100k/warm", func(b *testing.B) { benchScan(b, 1, 100000, true) })
	b.Run("1000dirs-100/cold", func(b *testing.B) { benchScan(b, 1000, 100, false) })
	b.Run("1000dirs-100/warm", func(b *testing.B) { benchScan(b, 1000, 100, true) })
}

func BenchmarkFind(b *testing.B) {
	b.Run("1dir-100k", func(b *testing.B) { benchFind(b, 1, 100000) })
	b.Run("1000dirs-100", func(b *testing.B) { benchFind(b, 1000, 100) })
}
