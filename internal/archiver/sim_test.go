package archiver

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/growth"
	"github.com/logcompactd/logcompactd/internal/model"
)

// The replay: testdata/bursty-48h.csv gives bytes/s per minute. The stream's
// writer appends at that rate, second by second, rotating to a new segment every
// 256 MiB. A policy looks every interval and archives closed segments (instantly:
// the replay measures the decisions, not the copy). Reported: peak hot bytes ÷ cap
// and the time spent over the cap.

const (
	simCap    = 20 << 30
	simRotate = 256 << 20
	simH      = time.Hour
	simLW     = 0.8
)

type simSeg struct {
	id   uint64
	size int64
}

type simStream struct {
	closed []simSeg
	active simSeg
	nextID uint64
}

func (s *simStream) hot() int64 {
	n := s.active.size
	for _, c := range s.closed {
		n += c.size
	}
	return n
}

// archiveDownTo archives the oldest closed segments until hot ≤ goal.
func (s *simStream) archiveDownTo(goal int64) {
	for len(s.closed) > 0 && s.hot() > goal {
		s.closed = s.closed[1:]
	}
}

func loadTrace(t testing.TB) []float64 {
	f, err := os.Open("testdata/bursty-48h.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rates []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		parts := strings.Split(sc.Text(), ",")
		r, err := strconv.ParseFloat(parts[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		rates = append(rates, r)
	}
	return rates
}

type simResult struct {
	peak       float64 // peak hot ÷ cap
	overSec    int     // seconds over the cap
	archivedGB float64
}

// replay runs a policy every interval seconds over the trace.
func replay(rates []float64, interval int, policy func(now time.Time, s *simStream)) simResult {
	s := &simStream{nextID: 1}
	s.active = simSeg{id: 0}
	var res simResult
	t0 := time.Unix(1_700_000_000, 0)
	var carry float64
	for sec := 0; sec < len(rates)*60; sec++ {
		carry += rates[sec/60]
		add := int64(carry)
		carry -= float64(add)
		s.active.size += add
		if s.active.size >= simRotate {
			s.closed = append(s.closed, s.active)
			s.active = simSeg{id: s.nextID}
			s.nextID++
		}
		if sec%interval == interval-1 {
			before := s.hot()
			policy(t0.Add(time.Duration(sec)*time.Second), s)
			res.archivedGB += float64(before-s.hot()) / 1e9
		}
		h := float64(s.hot()) / simCap
		res.peak = max(res.peak, h)
		if h > 1 {
			res.overSec++
		}
	}
	return res
}

// reactive archives down to the low watermark once the cap is crossed.
func reactive(_ time.Time, s *simStream) {
	if s.hot() > simCap {
		s.archiveDownTo(int64(simCap * simLW))
	}
}

// predictive runs logcompactd's own tracker and archiver.Plan.
func predictive() func(time.Time, *simStream) {
	tr := growth.NewTracker(growth.Options{Window: 30 * time.Minute, Alpha: 0.3})
	cfg := config.Stream{Name: "app", Archive: config.Archive{TimeToArchive: simH, MaxHotBytes: simCap,
		LowWatermark: simLW, UrgentWithin: 15 * time.Minute, Compress: "zstd"}}
	return func(now time.Time, s *simStream) {
		var obs []growth.Obs
		st := &model.Stream{Config: cfg}
		for _, c := range append(append([]simSeg{}, s.closed...), s.active) {
			obs = append(obs, growth.Obs{ID: model.SegmentID{Ino: c.id + 1}, Size: c.size})
			state := model.Closed
			if c.id == s.active.id {
				state = model.Active
			}
			st.Segments = append(st.Segments, model.Segment{Name: fmt.Sprintf("app-%06d.log", c.id), Size: c.size, State: state, MtimeNs: now.UnixNano()})
			st.HotBytes += c.size
		}
		tr.Observe("app", now, obs)
		st.GrowthRate = tr.StreamRate("app")
		st.PredictedBytes = growth.Predict(st.HotBytes, st.GrowthRate, simH)
		d := Plan([]*model.Stream{st}, Input{Now: now, PauseAbove: 0.85})
		gone := map[string]bool{}
		for _, j := range d.Jobs["app"] {
			gone[j.Segment.Name] = true
		}
		var kept []simSeg
		for _, c := range s.closed {
			if !gone[fmt.Sprintf("app-%06d.log", c.id)] {
				kept = append(kept, c)
			}
		}
		s.closed = kept
	}
}

func runPolicies(rates []float64) map[string]simResult {
	return map[string]simResult{
		"predictive (logcompactd, every 60 s)": replay(rates, 60, predictive()),
		"reactive size trigger, every 60 s":    replay(rates, 60, reactive),
		"hourly logrotate-style size check":    replay(rates, 3600, reactive),
	}
}

// TestPredictiveNeverOverTheCapOnTheBurstyTrace: on the committed trace, the
// predictive policy keeps hot bytes under the cap where both reactive policies
// cross it.
func TestPredictiveNeverOverTheCapOnTheBurstyTrace(t *testing.T) {
	res := runPolicies(loadTrace(t))
	for name, r := range res {
		t.Logf("%-40s peak %.2f × cap, %5d s over the cap, %.0f GB archived", name, r.peak, r.overSec, r.archivedGB)
	}
	if p := res["predictive (logcompactd, every 60 s)"]; p.peak > 1 || p.overSec > 0 {
		t.Fatalf("predictive crossed the cap: %+v", p)
	}
	for _, name := range []string{"reactive size trigger, every 60 s", "hourly logrotate-style size check"} {
		if res[name].overSec == 0 {
			t.Fatalf("%s never crossed the cap: the trace does not discriminate", name)
		}
	}
}

// BenchmarkPredictionVsReaction reports the replay's numbers (make bench).
func BenchmarkPredictionVsReaction(b *testing.B) {
	rates := loadTrace(b)
	for _, name := range []string{"predictive", "reactive-60s", "hourly"} {
		b.Run(name, func(b *testing.B) {
			var r simResult
			for i := 0; i < b.N; i++ {
				switch name {
				case "predictive":
					r = replay(rates, 60, predictive())
				case "reactive-60s":
					r = replay(rates, 60, reactive)
				default:
					r = replay(rates, 3600, reactive)
				}
			}
			b.ReportMetric(r.peak, "peak/cap")
			b.ReportMetric(float64(r.overSec), "s-over-cap")
			b.ReportMetric(r.archivedGB, "GB-archived")
		})
	}
}
