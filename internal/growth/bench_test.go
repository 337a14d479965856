package growth

import (
	"fmt"
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

// BenchmarkMarshal: the periodic history save's encoding, for 100,000 idle
// segments in one stream and in 1,000 streams of 100 (a hundred growing).
func BenchmarkMarshal(b *testing.B) {
	for _, streams := range []int{1, 1000} {
		b.Run(fmt.Sprintf("100k-in-%d", streams), func(b *testing.B) {
			tr := NewTracker(Options{})
			per := 100000 / streams
			for s := 0; s < streams; s++ {
				obs := make([]Obs, per)
				for j := range obs {
					obs[j] = Obs{ID: model.SegmentID{Dev: 1, Ino: uint64(s*per + j + 1), Gen: int64(j)}, Size: 1000}
				}
				name := fmt.Sprintf("s%04d", s)
				tr.Observe(name, t0, obs)
				obs[0].Size += 100 // one growing segment a stream (of the first 100)
				if s < 100 {
					tr.Observe(name, t0.Add(time.Minute), obs)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				data, err := tr.Marshal()
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(data)))
			}
		})
	}
}
