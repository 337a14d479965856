package archiver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/growth"
	"github.com/logcompactd/logcompactd/internal/model"
)

const MiB = 1 << 20

var now = time.Unix(1_700_000_000, 0)

func mk(name string, nseg int, segSize int64, growth float64, capB int64) *model.Stream {
	s := &model.Stream{Config: config.Stream{Name: name, Archive: config.Archive{
		TimeToArchive: time.Hour, MaxHotBytes: config.Size(capB), LowWatermark: 0.8,
		UrgentWithin: 5 * time.Minute, Compress: "zstd", KeepFree: config.Free{Percent: 5}}}}
	for i := 0; i < nseg; i++ {
		st := model.Closed
		if i == nseg-1 {
			st = model.Active
		}
		s.Segments = append(s.Segments, model.Segment{Name: fmt.Sprintf("%s-%03d.log", name, i),
			Size: segSize, State: st, MtimeNs: now.Add(-time.Duration(nseg-i) * time.Hour).UnixNano()})
		s.HotBytes += segSize
	}
	s.GrowthRate = growth
	s.PredictedBytes = growth_predict(s)
	return s
}

func growth_predict(s *model.Stream) float64 {
	return growth.Predict(s.HotBytes, s.GrowthRate, s.Config.Archive.TimeToArchive)
}

func jobNames(js []Job) string {
	var n []string
	for _, j := range js {
		n = append(n, strings.TrimSuffix(j.Segment.Name, ".log"))
	}
	return strings.Join(n, ",")
}

func TestPredictiveArchival(t *testing.T) {
	cases := []struct {
		name       string
		stream     *model.Stream
		load       float64
		want       string
		deferred   string
		wantUrgent bool
	}{
		{"a stream at half its cap whose growth would cross it within time_to_archive is archived now",
			// 10 × 50 MiB = 500 MiB of a 1000 MiB cap, growing 800 MiB/h: 1300 MiB predicted.
			mk("a", 10, 50*MiB, 800*MiB/3600.0, 1000*MiB), 0,
			// down to 800 MiB predicted: 500 MiB to go = 10 segments, but only 9 are closed
			"a-000,a-001,a-002,a-003,a-004,a-005,a-006,a-007,a-008", "", false},
		{"the same stream without growth is not archived",
			mk("a", 10, 50*MiB, 0, 1000*MiB), 0, "", "", false},
		{"non-urgent archival waits while the host is busy",
			mk("a", 10, 50*MiB, 800*MiB/3600.0, 1000*MiB), 0.9, "", "a-000,a-001,a-002,a-003,a-004,a-005,a-006,a-007,a-008", false},
		{"a breach predicted within urgent_within overrides load",
			// 950 MiB of 1000, growing 600 MiB/h: breach in 5 min; 1550 MiB predicted, down to 800.
			mk("a", 19, 50*MiB, 600*MiB/3600.0, 1000*MiB), 0.9,
			"a-000,a-001,a-002,a-003,a-004,a-005,a-006,a-007,a-008,a-009,a-010,a-011,a-012,a-013,a-014", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Plan([]*model.Stream{c.stream}, Input{Now: now, Load: c.load, PauseAbove: 0.85})
			if got := jobNames(d.Jobs["a"]); got != c.want {
				t.Fatalf("jobs %q, want %q", got, c.want)
			}
			if got := jobNames(d.Deferred["a"]); got != c.deferred {
				t.Fatalf("deferred %q, want %q", got, c.deferred)
			}
			for _, j := range d.Jobs["a"] {
				if j.Urgent != c.wantUrgent || j.Segment.State == model.Active {
					t.Fatalf("job %+v", j)
				}
			}
		})
	}
}

// TestBurstThatStopsDoesNotFlap drives a stream through a burst with a fake
// clock: the growth tracker learns the rate from scans every minute, archival
// removes what Plan decides, and the cap is never crossed; once the burst stops
// archival stops too, and it never alternates archive/no-archive while idle.
func TestBurstThatStopsDoesNotFlap(t *testing.T) {
	opts := growth.Options{Window: 30 * time.Minute, Alpha: 0.3}
	tr := growth.NewTracker(opts)
	capB := int64(1000 * MiB)
	type seg struct {
		id   model.SegmentID
		name string
		size int64
	}
	var hot []seg
	next := uint64(1)
	newSeg := func() { hot = append(hot, seg{model.SegmentID{Ino: next}, fmt.Sprintf("s-%04d.log", next), 0}); next++ }
	newSeg()
	archivedAfterStop, archivedInBurst, peak := 0, 0, int64(0)
	for minute := 0; minute < 240; minute++ {
		at := now.Add(time.Duration(minute) * time.Minute)
		rate := int64(0)
		if minute >= 30 && minute < 90 {
			rate = 25 * MiB // per minute: a 1-hour burst that adds 1500 MiB, over the cap without archival
		}
		hot[len(hot)-1].size += rate
		if hot[len(hot)-1].size >= 50*MiB {
			newSeg()
		}
		var obs []growth.Obs
		s := &model.Stream{Config: config.Stream{Name: "s", Archive: config.Archive{TimeToArchive: time.Hour,
			MaxHotBytes: config.Size(capB), LowWatermark: 0.8, UrgentWithin: 5 * time.Minute}}}
		for i, h := range hot {
			obs = append(obs, growth.Obs{ID: h.id, Size: h.size})
			st := model.Closed
			if i == len(hot)-1 {
				st = model.Active
			}
			s.Segments = append(s.Segments, model.Segment{Name: h.name, Size: h.size, State: st, MtimeNs: at.UnixNano()})
			s.HotBytes += h.size
		}
		tr.Observe("s", at, obs)
		s.GrowthRate = tr.StreamRate("s")
		s.PredictedBytes = growth.Predict(s.HotBytes, s.GrowthRate, time.Hour)
		peak = max(peak, s.HotBytes)
		d := Plan([]*model.Stream{s}, Input{Now: at, PauseAbove: 0.85})
		gone := map[string]bool{}
		for _, j := range d.Jobs["s"] {
			gone[j.Segment.Name] = true
		}
		if len(gone) > 0 && minute >= 150 {
			archivedAfterStop++
		}
		if len(gone) > 0 && minute < 90 {
			archivedInBurst++
		}
		var kept []seg
		for _, h := range hot {
			if !gone[h.name] {
				kept = append(kept, h)
			}
		}
		hot = kept
	}
	if peak > capB {
		t.Fatalf("hot bytes peaked at %d MiB over the %d MiB cap", peak/MiB, capB/MiB)
	}
	if archivedInBurst == 0 {
		t.Fatal("the burst was never archived")
	}
	if archivedAfterStop > 0 {
		t.Fatalf("archival went on %d times long after the burst stopped", archivedAfterStop)
	}
}

func TestMaxAgeAndFilesystemGuard(t *testing.T) {
	a := mk("a", 4, 10*MiB, 0, 1000*MiB)
	a.Config.Archive.MaxAge = 150 * time.Minute
	d := Plan([]*model.Stream{a}, Input{Now: now, PauseAbove: 0.85})
	if got := jobNames(d.Jobs["a"]); got != "a-000,a-001" {
		t.Fatalf("max_age jobs %q", got)
	}

	// Two streams on one 1000 MiB filesystem with 60 MiB free, filling at 20 MiB/h,
	// keep_free 5% = 50 MiB: predicted free at +1h is 40 MiB, 10 MiB short.
	x := mk("x", 3, 4*MiB, 0, 1000*MiB)
	y := mk("y", 3, 4*MiB, 0, 1000*MiB)
	y.Segments[0].MtimeNs = now.Add(-10 * time.Hour).UnixNano() // y's oldest is older than x's
	for _, s := range []*model.Stream{x, y} {
		s.FS = model.FSInfo{Dev: 7, Total: 1000 * MiB, Avail: 60 * MiB, FillRate: 20 * MiB / 3600.0}
	}
	d = Plan([]*model.Stream{x, y}, Input{Now: now, Load: 0.95, PauseAbove: 0.85})
	if got := jobNames(d.Jobs["y"]) + "|" + jobNames(d.Jobs["x"]); got != "y-000|x-000,x-001" {
		t.Fatalf("fs guard jobs %q: want oldest first across streams, urgent despite load", got)
	}
	for _, j := range append(d.Jobs["x"], d.Jobs["y"]...) {
		if !j.Urgent || j.Kind != FSGuard || j.Output != j.Stream+"/"+j.Segment.Name+".zst" {
			t.Fatalf("job %+v", j)
		}
	}
}

// TestArchivalNeverSkipsASegment: with the second-oldest segment busy (being
// merged), archival takes only the oldest, never the ones after the busy one,
// however much it wants to free.
func TestArchivalNeverSkipsASegment(t *testing.T) {
	s := mk("a", 10, 50*MiB, 800*MiB/3600.0, 1000*MiB)
	s.Segments[1].State, s.Segments[1].Why = model.Active, "being merged"
	s.Segments[2].State = model.Inactive
	d := Plan([]*model.Stream{s}, Input{Now: now, PauseAbove: 0.85})
	if got := jobNames(d.Jobs["a"]); got != "a-000" {
		t.Fatalf("jobs %q, want only a-000 (a-001 is busy)", got)
	}
	s.Segments[1].State = model.Closed
	d = Plan([]*model.Stream{s}, Input{Now: now, PauseAbove: 0.85})
	if got := jobNames(d.Jobs["a"]); got != "a-000,a-001" {
		t.Fatalf("jobs %q, want a-000,a-001: an inactive input stops archival like a busy one", got)
	}
}

func TestMaxAgeTakesOnlyAPrefix(t *testing.T) {
	s := mk("a", 5, 10*MiB, 0, 1000*MiB)
	s.Config.Archive.MaxAge = 90 * time.Minute
	s.Segments[1].MtimeNs = now.Add(-time.Minute).UnixNano() // young, between two old ones (name order)
	d := Plan([]*model.Stream{s}, Input{Now: now, PauseAbove: 0.85})
	if got := jobNames(d.Jobs["a"]); got != "a-000" {
		t.Fatalf("jobs %q, want only a-000: a-002 is old but lies after the young a-001", got)
	}
}

// TestUrgencyKeepsThePrefix: under load, a stream with old non-urgent max_age
// jobs and a filesystem-guard (urgent) job after them archives all of them, not
// only the urgent one, so no gap is left.
func TestUrgencyKeepsThePrefix(t *testing.T) {
	s := mk("a", 4, 10*MiB, 0, 1000*MiB)
	s.Config.Archive.MaxAge = 150 * time.Minute                     // a-000 and a-001 are older
	s.FS = model.FSInfo{Dev: 1, Total: 1000 * MiB, Avail: 25 * MiB} // keep_free 50 MiB: 5 MiB short after max_age
	d := Plan([]*model.Stream{s}, Input{Now: now, Load: 0.95, PauseAbove: 0.85})
	if got := jobNames(d.Jobs["a"]); got != "a-000,a-001,a-002" || len(d.Deferred["a"]) != 0 {
		t.Fatalf("jobs %q, deferred %q", got, jobNames(d.Deferred["a"]))
	}
}

func TestColdNameFitsNameMax(t *testing.T) {
	long := strings.Repeat("a", 251) + ".log" // 255 bytes: the longest a segment name can be
	for n := 0; n < 3; n++ {
		got := ColdName(long, codec.Text, "zstd", n)
		if len(got) > model.NameMax || !strings.HasSuffix(got, ".zst") {
			t.Fatalf("n=%d: %d bytes %q", n, len(got), got)
		}
		if n > 0 && !strings.HasSuffix(got, fmt.Sprintf(".%d.zst", n)) {
			t.Fatalf("n=%d: %q", n, got)
		}
	}
	if a, b := ColdName(long, codec.Text, "zstd", 0), ColdName(long, codec.Text, "zstd", 1); a == b {
		t.Fatal("two archives of a long name collide")
	}
}

func TestTimeNameReplacesTheWritersNumber(t *testing.T) {
	mt := time.Date(2026, 12, 2, 13, 45, 1, 123456789, time.FixedZone("CET", 3600))
	const stamp = "20261202T124501.123456789Z" // UTC
	for _, c := range []struct{ in, want string }{
		{"app.log.4", "app.log." + stamp},
		{"app.log.12", "app.log." + stamp},
		{"app.log.4~c2", "app.log." + stamp + "~c2"},
		{"app.log.12.gz", "app.log." + stamp + ".gz"},
		{"app.log.3~c1.zst", "app.log." + stamp + "~c1.zst"},
		// not a renumbered name: kept
		{"app.log-20261202-101010", "app.log-20261202-101010"},
		{"app-7.log", "app-7.log"},
		{"app.log", "app.log"},
		{"4", "4"},
		{"@400000006b0f1c4a3b9ac9ff.s", "@400000006b0f1c4a3b9ac9ff.s"},
	} {
		if got := TimeName(c.in, mt); got != c.want {
			t.Errorf("TimeName(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// later mtimes sort later, whatever number the writer gave the file
	a := TimeName("app.log.9", mt)
	b := TimeName("app.log.1", mt.Add(time.Nanosecond))
	c := TimeName("app.log.1", mt.Add(time.Second))
	if !(a < b && b < c) {
		t.Errorf("names not in time order: %q %q %q", a, b, c)
	}
	if long := strings.Repeat("x", 250) + ".1"; TimeName(long, mt) != long {
		t.Errorf("a name past NAME_MAX was made")
	}
}

func TestBatchGroupsSmallTextSegmentsInOrder(t *testing.T) {
	job := func(name string, size int64, enc codec.Encoding, sparse bool) Job {
		return Job{Segment: model.Segment{Name: name, Size: size, Sparse: sparse}, Encoding: enc}
	}
	jobs := []Job{job("a", 40, codec.Text, false), job("b", 40, codec.Text, false), job("c", 40, codec.Text, false),
		job("d", 10, codec.Zstd, false), job("e", 10, codec.Text, false), job("f", 10, codec.Text, true),
		job("g", 200, codec.Text, false), job("h", 1, codec.Text, false)}
	var got []string
	for _, b := range Batch(jobs, 100, 512) {
		var names []string
		for _, j := range b {
			names = append(names, j.Segment.Name)
		}
		got = append(got, strings.Join(names, ""))
	}
	// a+b fit 100, c starts anew; d (zstd) and f (sparse) stay alone; g alone
	// is over target but a job; h follows it.
	if want := "ab c d e f g h"; strings.Join(got, " ") != want {
		t.Fatalf("batches %q, want %q", strings.Join(got, " "), want)
	}
	if n := len(Batch(jobs[:3], 1<<30, 2)); n != 2 {
		t.Fatalf("max 2 segments: %d batches", n)
	}
	if b := BatchBase("app-1.log", "app-9.log", 9); b != "app-1.log..app-9.log" {
		t.Fatalf("BatchBase %q", b)
	}
	long := strings.Repeat("x", 200)
	if b := BatchBase(long, long, 3); b != long+"+2" {
		t.Fatalf("long BatchBase %q", b)
	}
}
