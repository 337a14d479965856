package growth

import (
	"bytes"
	"encoding/gob"
	"errors"
	"math"
	"os"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/model"
)

var t0 = time.Unix(1_700_000_000, 0)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want)) }

func TestWorkedExampleFromTheDocComment(t *testing.T) {
	var w Window
	o := Options{Window: time.Hour, Alpha: 0.3, MaxSamples: 16}
	// Samples 240 s apart (the window/16 spacing), so every one is kept.
	w.Add(at(0), 0, o)
	w.Add(at(240), 3000, o)
	w.Add(at(480), 4000, o)
	// intervals newest first: 240 s +1000, 240 s +3000 -> (1000+0.7*3000)/(240+0.7*240)
	want := (1000 + 0.7*3000) / (240 + 0.7*240)
	if got := w.Rate(o); !near(got, want, 1e-9) {
		t.Fatalf("rate %v, want %v", got, want)
	}
}

// trace feeds a segment size function sampled every step seconds for dur seconds.
func trace(o Options, step, dur float64, size func(s float64) int64) (*Window, []float64) {
	var w Window
	var rates []float64
	for s := 0.0; s <= dur; s += step {
		w.Add(at(s), size(s), o)
		rates = append(rates, w.Rate(o))
	}
	return &w, rates
}

func TestSyntheticTraces(t *testing.T) {
	o := Options{Window: 10 * time.Minute, Alpha: 0.3, MaxSamples: 16}
	cases := []struct {
		name  string
		size  func(s float64) int64
		check func(t *testing.T, w *Window, rates []float64)
	}{
		{"a steady writer is measured at its rate", func(s float64) int64 { return int64(1000 * s) },
			func(t *testing.T, w *Window, rates []float64) {
				if r := rates[len(rates)-1]; !near(r, 1000, 0.01) {
					t.Fatalf("rate %v, want 1000", r)
				}
			}},
		{"a burst raises the rate within a few samples", func(s float64) int64 {
			if s < 1200 {
				return int64(100 * s)
			}
			return 120000 + int64(10000*(s-1200))
		}, func(t *testing.T, w *Window, rates []float64) {
			// step 30 s: index 43 is 90 s into the burst
			if r := rates[43]; r < 5000 {
				t.Fatalf("rate 90 s into a 10 kB/s burst is %v", r)
			}
		}},
		{"a stopped writer decays to zero within the window", func(s float64) int64 {
			return int64(1000 * math.Min(s, 600))
		}, func(t *testing.T, w *Window, rates []float64) {
			if r := rates[len(rates)-1]; r != 0 {
				t.Fatalf("rate %v long after stop, want 0", r)
			}
			if r := rates[22]; r >= 1000 || r <= 0 { // 60 s after the stop: decaying
				t.Fatalf("rate just after stop %v", r)
			}
		}},
		{"a truncation restarts the window and never goes negative", func(s float64) int64 {
			if s < 600 {
				return int64(1000 * s)
			}
			return int64(1000 * (s - 600)) // truncated at 600 s, then written again
		}, func(t *testing.T, w *Window, rates []float64) {
			for i, r := range rates {
				if r < 0 {
					t.Fatalf("negative rate %v at %d", r, i)
				}
			}
			if r := rates[len(rates)-1]; !near(r, 1000, 0.01) {
				t.Fatalf("rate after restart %v", r)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, rates := trace(o, 30, 1800, c.size)
			if w.Len() > o.MaxSamples {
				t.Fatalf("%d samples kept, bound is %d", w.Len(), o.MaxSamples)
			}
			c.check(t, w, rates)
		})
	}
}

func TestIdleSegmentKeepsTwoSamples(t *testing.T) {
	o := Options{Window: time.Minute, MaxSamples: 16}
	w, _ := trace(o, 1, 3600, func(float64) int64 { return 42 })
	if w.Len() != 2 {
		t.Fatalf("idle window keeps %d samples", w.Len())
	}
}

func TestStreamCountsAppendedBytesOnly(t *testing.T) {
	o := Options{Window: time.Hour, MaxSamples: 16}
	tr := NewTracker(o)
	a := model.SegmentID{Dev: 1, Ino: 1}
	b := model.SegmentID{Dev: 1, Ino: 2}
	c := model.SegmentID{Dev: 1, Ino: 3}
	merged := model.SegmentID{Dev: 1, Ino: 4}
	// First scan: existing bytes are history, not growth.
	tr.Observe("s", at(0), []Obs{{a, 5000}, {b, 0}})
	// 100 s later: b grew by 10000 and new segment c appeared with 10000 bytes: "rotated".
	tr.Observe("s", at(100), []Obs{{a, 5000}, {b, 10000}, {c, 10000}})
	if r := tr.StreamRate("s"); !near(r, 200, 0.01) {
		t.Fatalf("stream rate %v, want 200 (20000 B / 100 s)", r)
	}
	if r := tr.SegmentRate("s", b); !near(r, 100, 0.01) {
		t.Fatalf("segment rate %v, want 100", r)
	}
	// The daemon merges a and b into one output: not growth, not shrinkage.
	tr.Adopt(merged)
	tr.Observe("s", at(200), []Obs{{merged, 15000}, {c, 10000}})
	if r := tr.StreamRate("s"); r >= 200 || r < 0 {
		t.Fatalf("a merge changed stream growth: %v", r)
	}
	if tr.Segments() != 2 {
		t.Fatalf("tracker keeps %d segments, want 2 (a and b forgotten)", tr.Segments())
	}
}

// restarted is what a new process makes of tr's saved history.
func restarted(t *testing.T, o Options, tr *Tracker) *Tracker {
	t.Helper()
	data, err := tr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tr2 := NewTracker(o)
	if err := tr2.Unmarshal(data); err != nil {
		t.Fatal(err)
	}
	return tr2
}

func TestHistoryRoundTripAndRestart(t *testing.T) {
	o := Options{Window: time.Hour, MaxSamples: 16}
	tr := NewTracker(o)
	id := model.SegmentID{Dev: 1, Ino: 7, Gen: 99}
	tr.Observe("s", at(0), []Obs{{id, 0}})
	tr.Observe("s", at(300), []Obs{{id, 300000}})
	out := model.SegmentID{Dev: 1, Ino: 8}
	tr.Adopt(out) // a merge output the next process must not count as growth
	tr.ObserveFS(1, at(0), 1000)
	tr.ObserveFS(1, at(300), 31000)
	// "Restarted": a new tracker loads the history and keeps predicting from it.
	tr2 := restarted(t, o, tr)
	tr2.Observe("s", at(600), []Obs{{id, 600000}, {out, 1 << 30}})
	if r := tr2.StreamRate("s"); !near(r, 1000, 0.05) {
		t.Fatalf("stream rate after restart %v: the adopted output counted as growth?", r)
	}
	if r := tr2.SegmentRate("s", id); !near(r, 1000, 0.01) {
		t.Fatalf("rate after restart %v", r)
	}
	if r := tr2.FSRate(1); !near(r, 100, 0.01) {
		t.Fatalf("fs rate %v", r)
	}
	// A reused inode (another generation) does not inherit the history.
	if r := tr2.SegmentRate("s", model.SegmentID{Dev: 1, Ino: 7, Gen: 100}); r != 0 {
		t.Fatalf("reused inode inherited rate %v", r)
	}
	data, err := tr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := tr2.Unmarshal(data); err == nil {
		t.Fatal("corrupt history accepted")
	}
}

// seal is a history file of w under magic.
func seal(t *testing.T, magic []byte, w *wire) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(magic)
	if err := gob.NewEncoder(&buf).Encode(w); err != nil {
		t.Fatal(err)
	}
	return sealed(buf.Bytes())
}

// A history saved in the previous format (LCDGROW1) loads into the same
// tracker as one saved now: idle and growing segments of two streams, their
// rates, the adopted outputs and the filesystem's window. The LCDGROW1 file
// was written by commit 1cd7af1 from the tracker this test builds.
func TestAVersion1HistoryStillLoads(t *testing.T) {
	o := Options{Window: time.Hour, MaxSamples: 16}
	tr := NewTracker(o)
	idle, growing, other := model.SegmentID{Dev: 1, Ino: 1, Gen: 5}, model.SegmentID{Dev: 1, Ino: 2}, model.SegmentID{Dev: 2, Ino: 1}
	for m := 0; m <= 10; m++ {
		tr.Observe("a", at(float64(60*m)), []Obs{{idle, 100}, {growing, int64(1000 * m)}})
		tr.Observe("b", at(float64(60*m)), []Obs{{other, int64(10 * m)}})
		tr.ObserveFS(1, at(float64(60*m)), int64(5000*m))
	}
	tr.Adopt(model.SegmentID{Dev: 1, Ino: 9})
	old, err := os.ReadFile("testdata/history-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	v1 := NewTracker(o)
	if err := v1.Unmarshal(old); err != nil {
		t.Fatal(err)
	}
	for _, got := range []*Tracker{v1, restarted(t, o, tr)} {
		if got.Segments() != 3 || got.windows("a") != 1 || got.windows("b") != 1 || !got.adopted[model.SegmentID{Dev: 1, Ino: 9}] {
			t.Fatalf("%d segments, %d and %d windows, adopted %v", got.Segments(), got.windows("a"), got.windows("b"), got.adopted)
		}
		for _, c := range []struct {
			stream string
			id     model.SegmentID
		}{{"a", idle}, {"a", growing}, {"b", other}} {
			if a, b := tr.SegmentRate(c.stream, c.id), got.SegmentRate(c.stream, c.id); a != b {
				t.Fatalf("%s %v: rate %v before, %v loaded", c.stream, c.id, a, b)
			}
		}
		if tr.StreamRate("a") != got.StreamRate("a") || tr.FSRate(1) != got.FSRate(1) || got.FSRate(1) == 0 {
			t.Fatalf("stream rate %v/%v, fs rate %v/%v", tr.StreamRate("a"), got.StreamRate("a"), tr.FSRate(1), got.FSRate(1))
		}
	}
}

// Columns of different lengths are a corrupt history, refused whole.
func TestUnevenSegmentColumnsAreCorrupt(t *testing.T) {
	w := wire{Streams: []wireStream{{Name: "s", Dev: []uint64{1, 1}, Ino: []uint64{1}, Gen: []int64{0, 0}, Size: []int64{1, 2}}}}
	tr := NewTracker(Options{})
	if err := tr.Unmarshal(seal(t, magic, &w)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("uneven columns: %v", err)
	}
}

func TestPredict(t *testing.T) {
	if p := Predict(1000, 10, time.Minute); p != 1600 {
		t.Fatalf("Predict = %v", p)
	}
	if p := Predict(1000, 0, time.Hour); p != 1000 {
		t.Fatalf("Predict idle = %v", p)
	}
}

func FuzzUnmarshalHistory(f *testing.F) {
	tr := NewTracker(Options{})
	tr.Observe("s", at(0), []Obs{{model.SegmentID{Ino: 1}, 10}})
	tr.Observe("s", at(10), []Obs{{model.SegmentID{Ino: 1}, 20}})
	good, _ := tr.Marshal()
	f.Add(good)
	f.Add([]byte("LCDGROW1"))
	f.Add([]byte("LCDGROW2"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := NewTracker(Options{})
		if err := tr.Unmarshal(data); err != nil {
			return
		}
		for name, st := range tr.streams {
			for id := range st.segs {
				if r := tr.SegmentRate(name, id); r < 0 || math.IsNaN(r) {
					t.Fatalf("rate %v from decoded history", r)
				}
			}
		}
	})
}

// FuzzUnmarshalSealedHistory fuzzes what lies behind the checksum, which
// FuzzUnmarshalHistory's mutations almost never get past: each input is sealed
// as an LCDGROW1 and an LCDGROW2 file. Whatever loads gives rates that are
// finite and not negative, and can be observed and saved again.
func FuzzUnmarshalSealedHistory(f *testing.F) {
	tr := NewTracker(Options{})
	idle, growing := model.SegmentID{Dev: 1, Ino: 1}, model.SegmentID{Dev: 1, Ino: 2, Gen: 3}
	for m := 0; m < 4; m++ {
		tr.Observe("s", at(float64(60*m)), []Obs{{idle, 10}, {growing, int64(100 * m)}})
		tr.ObserveFS(1, at(float64(60*m)), int64(1000*m))
	}
	tr.Adopt(model.SegmentID{Dev: 1, Ino: 3})
	good, err := tr.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good[len(magic) : len(good)-4])
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, m := range [][]byte{magicV1, magic} {
			data := sealed(append(append([]byte{}, m...), body...))
			tr := NewTracker(Options{})
			if err := tr.Unmarshal(data); err != nil {
				continue
			}
			bad := func(r float64) bool { return r < 0 || math.IsNaN(r) || math.IsInf(r, 0) }
			for name, st := range tr.streams {
				if r := tr.StreamRate(name); bad(r) {
					t.Fatalf("%s: stream rate %v from decoded history", m, r)
				}
				for id := range st.segs {
					if r := tr.SegmentRate(name, id); bad(r) {
						t.Fatalf("%s: segment rate %v from decoded history", m, r)
					}
				}
				tr.Observe(name, at(1e6), []Obs{{idle, 10}})
			}
			for dev := range tr.fs {
				if r := tr.FSRate(dev); bad(r) {
					t.Fatalf("%s: fs rate %v from decoded history", m, r)
				}
			}
			if _, err := tr.Marshal(); err != nil {
				t.Fatalf("%s: a loaded history cannot be saved again: %v", m, err)
			}
		}
	})
}

// Touch stands for an observation of unchanged sizes: a segment that stopped
// growing decays exactly as it would if it had been re-observed, also when
// its window came from a saved history (a restart between two touches).
func TestTouchDecaysLikeAnUnchangedObservation(t *testing.T) {
	o := Options{Window: time.Hour, MaxSamples: 16}
	id := model.SegmentID{Dev: 1, Ino: 1}
	observed, touched := NewTracker(o), NewTracker(o)
	for _, tr := range []*Tracker{observed, touched} {
		tr.Observe("s", at(0), []Obs{{id, 0}})
		tr.Observe("s", at(60), []Obs{{id, 60000}})
	}
	reloaded := restarted(t, o, touched)
	for i := 2; i <= 30; i++ {
		observed.Observe("s", at(float64(60*i)), []Obs{{id, 60000}})
		touched.Touch("s", at(float64(60*i)))
		reloaded.Touch("s", at(float64(60*i)))
		if a, b, c := observed.SegmentRate("s", id), touched.SegmentRate("s", id), reloaded.SegmentRate("s", id); a != b || a != c {
			t.Fatalf("after %d min: observed %v, touched %v, touched after a restart %v", i, a, b, c)
		}
		if a, b, c := observed.StreamRate("s"), touched.StreamRate("s"), reloaded.StreamRate("s"); a != b || a != c {
			t.Fatalf("stream after %d min: observed %v, touched %v, touched after a restart %v", i, a, b, c)
		}
	}
	if r := touched.SegmentRate("s", id); r >= 1000*0.1 {
		t.Fatalf("rate %v did not decay after 29 idle minutes", r)
	}
	touched.Touch("unknown", at(2000)) // no stream, nothing to do
	if touched.Segments() != 1 {
		t.Fatalf("%d segments", touched.Segments())
	}
}

// Observing one stream neither forgets nor charges another's segments.
func TestStreamsAreIndependent(t *testing.T) {
	tr := NewTracker(Options{Window: time.Hour})
	a, b := model.SegmentID{Dev: 1, Ino: 1}, model.SegmentID{Dev: 1, Ino: 2}
	tr.Observe("x", at(0), []Obs{{a, 10}})
	tr.Observe("y", at(0), []Obs{{b, 10}})
	tr.Observe("x", at(10), []Obs{{a, 110}})
	if tr.Segments() != 2 || tr.SegmentRate("y", b) != 0 || !near(tr.SegmentRate("x", a), 10, 0.01) {
		t.Fatalf("segments %d, y rate %v, x rate %v", tr.Segments(), tr.SegmentRate("y", b), tr.SegmentRate("x", a))
	}
	// The same ID observed twice in one scan (cannot happen for a regular scan,
	// which skips hard links) still forgets what is gone.
	tr.Observe("x", at(20), []Obs{{b, 5}, {b, 5}})
	if tr.SegmentRate("x", a) != 0 || tr.Segments() != 2 {
		t.Fatalf("x still has a: %d segments", tr.Segments())
	}
}

// A filesystem's fill rate counts only once it has been watched for a while: a
// burst from another program between two samples a second apart (a compiler
// writing 300 MB) is not a rate to extrapolate over hours.
func TestFSRateNeedsAMinuteOfSamples(t *testing.T) {
	tr := NewTracker(Options{Window: time.Hour, MaxSamples: 16})
	tr.ObserveFS(1, at(0), 1<<30)
	tr.ObserveFS(1, at(1), 1<<30+300<<20)
	if r := tr.FSRate(1); r != 0 {
		t.Fatalf("fs rate %v after 1 s of samples, want 0 until %v", r, FSMinSpan)
	}
	tr.ObserveFS(1, at(61), 1<<30+300<<20)
	if r := tr.FSRate(1); r <= 0 {
		t.Fatalf("fs rate %v after 61 s, want the burst averaged in", r)
	}
	// A short growth window: half of it is enough.
	short := NewTracker(Options{Window: 10 * time.Second, MaxSamples: 16})
	short.ObserveFS(1, at(0), 0)
	short.ObserveFS(1, at(6), 6000)
	if r := short.FSRate(1); !near(r, 1000, 0.01) {
		t.Fatalf("fs rate %v with a 10 s window after 6 s, want 1000", r)
	}
}

// windows counts the segments of stream that keep a window.
func (t *Tracker) windows(stream string) int {
	n := 0
	for _, s := range t.streams[stream].segs {
		if s.win != nil {
			n++
		}
	}
	return n
}

// A segment whose size has not changed within the window keeps no window: on a
// host with 100,000 closed segments that is the whole difference between a map
// slot and a slot, a struct and a slice per segment. A touch (a tick with no
// directory event) then allocates nothing and visits no window.
func TestAnIdleSegmentKeepsNoWindow(t *testing.T) {
	o := Options{Window: 10 * time.Minute, MaxSamples: 16}
	tr := NewTracker(o)
	obs := make([]Obs, 1000)
	for i := range obs {
		obs[i] = Obs{ID: model.SegmentID{Dev: 1, Ino: uint64(i + 1)}, Size: 100}
	}
	grower := len(obs) - 1
	for m := 0; m <= 5; m++ {
		obs[grower].Size = int64(100 + 6000*m)
		tr.Observe("s", at(float64(60*m)), obs)
	}
	if n := tr.windows("s"); n != 1 {
		t.Fatalf("%d segments keep a window, want 1 (the growing one)", n)
	}
	if r := tr.SegmentRate("s", obs[grower].ID); !near(r, 100, 0.01) {
		t.Fatalf("growing segment's rate %v, want 100", r)
	}
	if r := tr.SegmentRate("s", obs[0].ID); r != 0 {
		t.Fatalf("idle segment's rate %v", r)
	}
	if a := testing.AllocsPerRun(10, func() { tr.Touch("s", at(400)) }); a != 0 {
		t.Fatalf("a touch allocates %v times", a)
	}
	// Its growth leaves the window: rate 0, and the window goes.
	for m := 6; m <= 20; m++ {
		tr.Touch("s", at(float64(60*m)))
	}
	if n, r := tr.windows("s"), tr.SegmentRate("s", obs[grower].ID); n != 0 || r != 0 {
		t.Fatalf("after its growth left the window: %d windows, rate %v", n, r)
	}
	if tr.Segments() != len(obs) {
		t.Fatalf("%d segments tracked", tr.Segments())
	}
}

// A segment idle for long that grows again has the rate of its growth since it
// was last seen at its old size (the stream's previous observation or touch),
// across a restart too.
func TestARegrowingSegmentsRateIsSinceItWasLastSeen(t *testing.T) {
	o := Options{Window: 10 * time.Minute, MaxSamples: 16}
	id := model.SegmentID{Dev: 1, Ino: 1}
	tr := NewTracker(o)
	for m := 0; m <= 60; m++ {
		tr.Observe("s", at(float64(60*m)), []Obs{{id, 5000}})
	}
	tr.Touch("s", at(3630))
	tr.Observe("s", at(3660), []Obs{{id, 8000}})
	if r := tr.SegmentRate("s", id); !near(r, 100, 0.01) {
		t.Fatalf("rate %v, want 100 (3000 B in the 30 s since the touch)", r)
	}
	tr.Observe("s", at(3690), []Obs{{id, 8000}}) // one more sample: still growing within the window
	tr2 := restarted(t, o, tr)
	if a, b := tr.SegmentRate("s", id), tr2.SegmentRate("s", id); a != b || a == 0 {
		t.Fatalf("rate %v before a restart, %v after", a, b)
	}
	// An idle segment's history loads with no window; it regrows from the
	// stream's last observation.
	idle := model.SegmentID{Dev: 1, Ino: 2}
	tr3 := NewTracker(o)
	tr3.Observe("s", at(0), []Obs{{idle, 10}})
	tr3.Observe("s", at(60), []Obs{{idle, 10}})
	tr4 := restarted(t, o, tr3)
	if n := tr4.windows("s"); n != 0 {
		t.Fatalf("%d windows loaded for an idle segment", n)
	}
	tr4.Observe("s", at(120), []Obs{{idle, 6010}})
	if r := tr4.SegmentRate("s", idle); !near(r, 100, 0.01) {
		t.Fatalf("rate after a restart %v, want 100", r)
	}
}
