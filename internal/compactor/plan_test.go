package compactor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/model"
)

const MiB = 1 << 20

func stream(growth float64, segs ...model.Segment) *model.Stream {
	return &model.Stream{
		Config: config.Stream{Name: "app", Pattern: "app-*.log", Order: "name", Compaction: config.Compaction{
			Threshold: 1, MinSegments: 3, TargetSize: 128 * MiB, GrowthRef: config.Rate(MiB / 60.0)}},
		Segments: segs, GrowthRate: growth,
	}
}

func segs(n int, size int64, state model.State) []model.Segment {
	var out []model.Segment
	for i := 0; i < n; i++ {
		out = append(out, model.Segment{Name: fmt.Sprintf("app-%06d.log", i+1), Size: size, State: state})
	}
	return out
}

func withActive(ss []model.Segment) []model.Segment {
	return append(ss, model.Segment{Name: fmt.Sprintf("app-%06d.log", len(ss)+1), Size: 1, State: model.Active})
}

func names(j Job) string {
	var n []string
	for _, s := range j.Inputs {
		n = append(n, s.Name)
	}
	return strings.Join(n, ",")
}

func TestPlan(t *testing.T) {
	cases := []struct {
		name   string
		stream *model.Stream
		load   float64
		want   []string // job inputs, comma-separated names
		wantP  float64
	}{
		{"an idle stream with half a target of small segments waits",
			stream(0, withActive(segs(8, 8*MiB, model.Closed))...), 0, nil, 0.5},
		{"the same stream growing at growth_ref compacts now, all in one run",
			stream(MiB/60.0, withActive(segs(8, 8*MiB, model.Closed))...), 0,
			[]string{"app-000001.log,app-000002.log,app-000003.log,app-000004.log,app-000005.log,app-000006.log,app-000007.log,app-000008.log"}, 1.0},
		{"under load 0.5 the same stream waits for twice as much",
			stream(MiB/60.0, withActive(segs(8, 8*MiB, model.Closed))...), 0.5, nil, 0.5},
		{"a full target of small segments compacts on an idle host, in runs within target_size",
			stream(0, withActive(segs(5, 40*MiB, model.Closed))...), 0,
			[]string{"app-000001.log,app-000002.log,app-000003.log", "app-000004.log,app-000005.log"}, 200.0 / 128},
		{"fewer than min_segments eligible gives priority 0",
			stream(100*MiB, withActive(segs(2, 100*MiB, model.Closed))...), 0, nil, 0},
		{"load at pause_above starts nothing however high the priority",
			stream(100*MiB, withActive(segs(8, 60*MiB, model.Closed))...), 0.9, nil, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Plan(c.stream, Input{Load: c.load, PauseAbove: 0.85})
			if c.wantP >= 0 && fmt.Sprintf("%.4f", d.Priority.Value) != fmt.Sprintf("%.4f", c.wantP) {
				t.Fatalf("priority %v, want %v (%s)", d.Priority.Value, c.wantP, d.Priority.Terms())
			}
			var got []string
			for _, j := range d.Jobs {
				got = append(got, names(j))
				if j.Bytes > int64(c.stream.Config.Compaction.TargetSize) {
					t.Fatalf("job of %d bytes exceeds target", j.Bytes)
				}
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Fatalf("jobs %q, want %q (why: %s)", got, c.want, d.Why)
			}
			if len(d.Jobs) == 0 && d.Why == "" {
				t.Fatal("no job and no reason")
			}
		})
	}
}

func TestRunsNeverSpanAnIneligibleOrForeignEntry(t *testing.T) {
	ss := segs(9, 25*MiB, model.Closed)
	ss[2].State = model.Active                            // held open for writing
	ss[5].State, ss[5].Size = model.Consolidated, 128*MiB // at target: not merged again
	s := stream(0, withActive(ss)...)
	s.Foreign = []string{"app-000007x.log"} // a symlink sorting between 7 and 8
	d := Plan(s, Input{PauseAbove: 0.85, Exclude: map[string]bool{"app-000009.log": true}})
	var got []string
	for _, j := range d.Jobs {
		got = append(got, names(j))
	}
	want := "app-000001.log,app-000002.log|app-000004.log,app-000005.log"
	if strings.Join(got, "|") != want {
		t.Fatalf("jobs %q, want %q", got, want)
	}
	if d.Jobs[0].Output != "app-000001~c1.log" {
		t.Fatalf("output %q", d.Jobs[0].Output)
	}
}

func TestPriorityIsMonotone(t *testing.T) {
	base := ComputePriority(1000, 2000, 50*MiB, 128*MiB, 0.3, 5, 3).Value
	if ComputePriority(2000, 2000, 50*MiB, 128*MiB, 0.3, 5, 3).Value <= base {
		t.Fatal("more growth did not raise priority")
	}
	if ComputePriority(1000, 2000, 60*MiB, 128*MiB, 0.3, 5, 3).Value <= base {
		t.Fatal("more bytes did not raise priority")
	}
	if ComputePriority(1000, 2000, 50*MiB, 128*MiB, 0.6, 5, 3).Value >= base {
		t.Fatal("more load did not lower priority")
	}
	if ComputePriority(-5, 2000, 50*MiB, 128*MiB, 2, 5, 3).Value != 0 {
		t.Fatal("out-of-range inputs were not clamped")
	}
	_ = time.Second
}

// TestRunsNeverMixOwnersGroupsOrModes: an output takes its first input's owner,
// group and mode, so a run stops wherever any of them changes: another user's
// 0644 segment first in a run of root's 0600 ones would hand root's lines to
// that user; 0644 then 0600 would widen who may read the 0600 lines.
func TestRunsNeverMixOwnersGroupsOrModes(t *testing.T) {
	root600 := model.Access{UID: 0, GID: 0, Mode: 0o600}
	cases := []struct {
		name   string
		access []model.Access
		want   string
	}{
		{"another user's segment before root's is merged with neither",
			[]model.Access{{UID: 1000, GID: 1000, Mode: 0o644}, root600, root600, root600}, "app-000002.log,app-000003.log,app-000004.log"},
		{"0644 then 0600 of the same owner are not merged together",
			[]model.Access{{Mode: 0o644}, {Mode: 0o644}, root600, root600}, "app-000001.log,app-000002.log|app-000003.log,app-000004.log"},
		{"another group is another run",
			[]model.Access{root600, root600, {GID: 4, Mode: 0o600}, {GID: 4, Mode: 0o600}}, "app-000001.log,app-000002.log|app-000003.log,app-000004.log"},
		{"the same owner, group and mode are one run",
			[]model.Access{root600, root600, root600, root600}, "app-000001.log,app-000002.log,app-000003.log,app-000004.log"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ss := segs(len(c.access), MiB, model.Closed)
			for i := range ss {
				ss[i].Access = c.access[i]
			}
			s := stream(100*MiB, withActive(ss)...)
			s.Config.Compaction.MinSegments = 2
			var got []string
			for _, j := range Plan(s, Input{PauseAbove: 0.85}).Jobs {
				got = append(got, names(j))
			}
			if strings.Join(got, "|") != c.want {
				t.Fatalf("jobs %q, want %q", got, c.want)
			}
		})
	}
}

// TestAJobHasAtMostMaxInputs: 50,000 tiny segments are many jobs of at most
// MaxInputs, not one job that opens them all.
func TestAJobHasAtMostMaxInputs(t *testing.T) {
	s := stream(100*MiB, withActive(segs(50000, 100, model.Closed))...)
	d := Plan(s, Input{PauseAbove: 0.85})
	total := 0
	for _, j := range d.Jobs {
		if len(j.Inputs) > MaxInputs {
			t.Fatalf("a job of %d inputs", len(j.Inputs))
		}
		total += len(j.Inputs)
	}
	if total != 50000 || len(d.Jobs) < 50000/MaxInputs {
		t.Fatalf("%d jobs over %d inputs", len(d.Jobs), total)
	}
}

// TestNoMergeEndsWithAnMtimeItShares: in an mtime-ordered stream an output
// takes its last input's mtime and is born at the merge, so it would sort after
// any other segment of that mtime (birth breaks the tie). A run never ends with
// such an input: here app-000005 shares its mtime with the active app-000006
// (a renumbering writer's last batch to the old file and first to the new fell
// in one clock tick). After a segment of its mtime is the output's place (born
// last, it sorts last of them) — unless the filesystem keeps no birth times
// (Gen 0), and its name would decide: app-000008/9 after the consolidated
// app-000007~c1 of their mtime merge only where births are kept.
func TestNoMergeEndsWithAnMtimeItShares(t *testing.T) {
	ss := withActive(segs(5, 10*MiB, model.Closed))
	for i := range ss {
		ss[i].MtimeNs = int64(i+1) * 1e9
	}
	ss[4].MtimeNs = ss[5].MtimeNs
	s := stream(MiB, ss...)
	s.Config.Order = "mtime"
	d := Plan(s, Input{PauseAbove: 0.85})
	var got []string
	for _, j := range d.Jobs {
		got = append(got, names(j))
		if j.Bytes != int64(len(j.Inputs))*10*MiB {
			t.Fatalf("job %s of %d bytes", names(j), j.Bytes)
		}
	}
	if want := "app-000001.log,app-000002.log,app-000003.log,app-000004.log"; strings.Join(got, "|") != want {
		t.Fatalf("jobs %q, want %q", got, want)
	}

	for _, gen := range []int64{0, 8e9} {
		full := model.Segment{Name: "app-000007~c1.log", Size: 128 * MiB, State: model.Consolidated, MtimeNs: 9e9, ID: model.SegmentID{Gen: gen}}
		tied := segs(3, 10*MiB, model.Closed)[1:]
		tied[0].Name, tied[1].Name = "app-000008.log", "app-000009.log"
		tied[0].MtimeNs, tied[1].MtimeNs = 9e9, 9e9
		tied[0].ID.Gen, tied[1].ID.Gen = gen, 2*gen
		s = stream(MiB, append([]model.Segment{full}, tied...)...)
		s.Config.Order, s.Config.Compaction.MinSegments = "mtime", 2
		d = Plan(s, Input{PauseAbove: 0.85})
		if gen == 0 && (len(d.Jobs) != 0 || !strings.Contains(d.Why, "app-000009.log shares its mtime")) {
			t.Fatalf("no birth times: jobs %v, why %q", d.Jobs, d.Why)
		}
		if gen != 0 && (len(d.Jobs) != 1 || names(d.Jobs[0]) != "app-000008.log,app-000009.log") {
			t.Fatalf("with birth times: jobs %v, why %q", d.Jobs, d.Why)
		}
	}
}
