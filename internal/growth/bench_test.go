package growth

import (
	"runtime"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/model"
)

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchMemory tracks n segments through scans spaced a minute apart (the
// default 30 m window keeps a sample per 112 s) and reports heap bytes per segment.
func benchMemory(b *testing.B, n int, growing bool) {
	for i := 0; i < b.N; i++ {
		before := heap()
		tr := NewTracker(Options{})
		obs := make([]Obs, n)
		for j := range obs {
			obs[j] = Obs{ID: model.SegmentID{Dev: 1, Ino: uint64(j + 1), Gen: int64(j)}, Size: 1000}
		}
		for scan := 0; scan < 60; scan++ {
			if growing {
				for j := range obs {
					obs[j].Size += int64(1000 + scan)
				}
			}
			tr.Observe("s", t0.Add(time.Duration(scan)*2*time.Minute), obs)
		}
		after := heap()
		b.ReportMetric(float64(after-before)/float64(n), "B/segment")
		runtime.KeepAlive(tr)
	}
}

// BenchmarkTrackerMemory: heap per tracked segment, for idle (closed) segments,
// which keep no window (their size and a map slot), and for segments growing at
// every scan, which keep the full window of MaxSamples (16).
func BenchmarkTrackerMemory(b *testing.B) {
	b.Run("idle-100k", func(b *testing.B) { benchMemory(b, 100000, false) })
	b.Run("growing-100k", func(b *testing.B) { benchMemory(b, 100000, true) })
}

// BenchmarkObserve: cost of one scan's worth of observations for 100,000 segments.
func BenchmarkObserve(b *testing.B) {
	tr := NewTracker(Options{})
	obs := make([]Obs, 100000)
	for j := range obs {
		obs[j] = Obs{ID: model.SegmentID{Dev: 1, Ino: uint64(j + 1)}, Size: 1000}
	}
	tr.Observe("s", t0, obs)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Observe("s", t0.Add(time.Duration(i+1)*time.Second), obs)
	}
}
