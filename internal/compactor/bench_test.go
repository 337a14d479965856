package compactor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

const (
	benchInputs = 16
	benchSize   = 8 << 20 // 16 × 8 MiB = 128 MiB per merge
)

var benchLine = bytes.Repeat([]byte("2026-11-24T00:00:00Z level=info msg=\"request served\" status=200 bytes=5120\n"), 1)

func makeInputs(b *testing.B, dir string) []string {
	b.Helper()
	block := bytes.Repeat(benchLine, benchSize/len(benchLine)+1)[:benchSize]
	var names []string
	for i := 0; i < benchInputs; i++ {
		n := fmt.Sprintf("app-%03d.log", i)
		if err := os.WriteFile(filepath.Join(dir, n), block, 0o644); err != nil {
			b.Fatal(err)
		}
		names = append(names, n)
	}
	// Inputs on disk and in the page cache for both contenders alike.
	if err := exec.Command("sync").Run(); err != nil {
		b.Fatal(err)
	}
	return names
}

// mergeRig is one directory of inputs with a journal, for benchmarks.
type mergeRig struct {
	logs string
	d    *fsx.Dir
	env  *Env
}

func newMergeRig(b *testing.B, maxRate float64) (*mergeRig, func()) {
	base := b.TempDir()
	logs, state := filepath.Join(base, "logs"), filepath.Join(base, "state")
	os.MkdirAll(logs, 0o755)
	os.MkdirAll(state, 0o700)
	d, _ := fsx.OpenDir(logs)
	sd, _ := fsx.OpenDir(state)
	j, err := fsx.OpenJournal(sd, "journal")
	if err != nil {
		b.Fatal(err)
	}
	ls := fsx.NewLeases()
	r := &mergeRig{logs: logs, d: d, env: &Env{Ops: &fsx.Runner{Journal: j, Leases: ls}, Pacer: NewPacer(maxRate, 1<<20, nil)}}
	return r, func() { ls.Close(); j.Close(); sd.Close(); r.d.Close() }
}

func (r *mergeRig) job(names []string) MergeJob {
	job := MergeJob{Stream: "app", Dir: r.d, DirPath: r.logs, Output: "app-000~c1.log", Compress: "none"}
	for _, n := range names {
		st, _ := r.d.Stat(n)
		job.Inputs = append(job.Inputs, fsx.RefOf(n, st))
	}
	return job
}

// catFsyncRm is the peer: `cat inputs > out`, fsync out, `rm` the inputs, then
// fsync the directory — what a merge must do, without its crash safety.
func catFsyncRm(b *testing.B, dir string, names []string) time.Duration {
	start := time.Now()
	out, err := os.Create(filepath.Join(dir, "cat.out"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("cat", names...)
	cmd.Dir, cmd.Stdout = dir, out
	if err := cmd.Run(); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
	out.Close()
	rm := exec.Command("rm", append([]string{"--"}, names...)...)
	rm.Dir = dir
	if err := rm.Run(); err != nil {
		b.Fatal(err)
	}
	df, _ := os.Open(dir)
	df.Sync()
	df.Close()
	return time.Since(start)
}

// BenchmarkMergeVsCat: in every iteration, on freshly written 16 × 8 MiB inputs
// (on disk and in the page cache), first the peer — `cat` + fsync + `rm` of
// the inputs + fsync of the dir — then, on a second fresh set, logcompactd's
// merge through the whole crash-safe protocol. Alternating the two in one
// iteration keeps the VM's page-cache and memory effects out of the ratio.
// Reported: ms per 128 MiB for each, the ratio, and the ratio up to the
// commit (before the inputs are removed).
func BenchmarkMergeVsCat(b *testing.B) {
	r, done := newMergeRig(b, 0)
	defer done()
	var catT, mergeT, commitT time.Duration
	for i := 0; i < b.N; i++ {
		os.RemoveAll(r.logs)
		os.MkdirAll(r.logs, 0o755)
		r.d.Close()
		r.d, _ = fsx.OpenDir(r.logs)
		catT += catFsyncRm(b, r.logs, makeInputs(b, r.logs))
		os.Remove(filepath.Join(r.logs, "cat.out"))
		job := r.job(makeInputs(b, r.logs))
		start := time.Now()
		r.env.Ops.Fault = func(p string) {
			if p == "merge:committed" {
				commitT += time.Since(start)
			}
		}
		if _, err := r.env.Merge(context.Background(), job); err != nil {
			b.Fatal(err)
		}
		mergeT += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(float64(catT.Milliseconds())/n, "cat+fsync+rm-ms")
	b.ReportMetric(float64(mergeT.Milliseconds())/n, "merge-ms")
	b.ReportMetric(float64(mergeT)/float64(catT), "merge/cat")
	b.ReportMetric(float64(commitT)/float64(catT), "commit/cat")
}

// BenchmarkMergeMaxRate: the rate a 128 MiB merge achieves under max_rate 32 MiB/s.
func BenchmarkMergeMaxRate(b *testing.B) {
	r, done := newMergeRig(b, 32<<20)
	defer done()
	b.SetBytes(benchInputs * benchSize)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		os.RemoveAll(r.logs)
		os.MkdirAll(r.logs, 0o755)
		r.d.Close()
		r.d, _ = fsx.OpenDir(r.logs)
		job := r.job(makeInputs(b, r.logs))
		b.StartTimer()
		if _, err := r.env.Merge(context.Background(), job); err != nil {
			b.Fatal(err)
		}
	}
}
