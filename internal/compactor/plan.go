// Package compactor decides which closed segments to merge (Plan, pure) and, from
// the compaction issue on, runs the merges. This file is the decision: a snapshot
// of one stream in, the priority with its terms and the jobs with their reasons out.
package compactor

import (
	"fmt"

	"github.com/logcompactd/logcompactd/internal/model"
)

// Priority is the compaction priority of a stream with every term of the formula.
type Priority struct {
	Growth      float64 // G, bytes appended per second
	GrowthRef   float64 // growth_ref, bytes/s
	Bytes       int64   // B, bytes in eligible segments
	Target      int64   // target_size
	Load        float64 // L in [0,1]
	Eligible    int     // number of eligible segments
	MinSegments int
	Value       float64
}

// ComputePriority is the one place the formula lives:
//
//	priority = (1 + G/growth_ref) × (B/target_size) × (1 − L),  0 if eligible < min_segments
//
// Dimensionless, so one threshold means the same for every stream; monotone: up
// with growth and bytes, down with load. Worked example, target 128 MiB, growth_ref
// 1 MiB/min, threshold 1.0: 64 MiB of small closed segments in an idle stream on
// an idle host gives (1+0)×0.5×1 = 0.5, no compaction yet; the same stream growing
// 1 MiB/min gives (1+1)×0.5×1 = 1.0, compact now; under load L = 0.5 it gives 0.5
// again, and waits until 128 MiB (or faster growth) brings it back to 1.0.
func ComputePriority(g, growthRef float64, b, target int64, load float64, eligible, minSegments int) Priority {
	p := Priority{Growth: g, GrowthRef: growthRef, Bytes: b, Target: target, Load: load,
		Eligible: eligible, MinSegments: minSegments}
	if eligible < minSegments || target <= 0 || growthRef <= 0 {
		return p
	}
	p.Value = (1 + max(g, 0)/growthRef) * (float64(b) / float64(target)) * (1 - min(max(load, 0), 1))
	return p
}

// Terms renders the formula with its numbers, for reasons and logs.
func (p Priority) Terms() string {
	return fmt.Sprintf("(1 + G %.0f B/s / growth_ref %.0f B/s) × (B %d / target %d) × (1 − L %.2f) = %.2f",
		p.Growth, p.GrowthRef, p.Bytes, p.Target, p.Load, p.Value)
}

// Job merges a run of adjacent eligible segments into Output.
type Job struct {
	Inputs []model.Segment
	Output string
	Bytes  int64
	Reason string
}

// Decision is the plan for one stream.
type Decision struct {
	Priority Priority
	Jobs     []Job
	Why      string // why there is no job, when there is none
	Deferred bool   // no job because of load (Why says so)
}

// Input is what Plan needs beyond the stream snapshot.
type Input struct {
	Load       float64
	PauseAbove float64
	Exclude    map[string]bool        // segments already claimed this pass (by archival)
	Taken      func(name string) bool // names in use in the stream's directory
}

// Eligible reports whether a segment may be merged: closed, or consolidated below
// target_size; smaller than target_size; not claimed by archival.
func Eligible(s model.Segment, target int64, exclude map[string]bool) bool {
	return (s.State == model.Closed || s.State == model.Consolidated) && s.Size < target && !exclude[s.Name]
}

// MaxInputs bounds the inputs of one job: each is held open (and leased) for
// the whole job, so 50,000 tiny segments must not make one job of 50,000 fds.
const MaxInputs = 512

// Plan decides the compaction of one stream. Eligible segments are merged in
// stream order, in runs of adjacent segments whose total stays within target_size
// and whose count stays within MaxInputs (one job per run of two or more); a run
// never spans an ineligible segment, nor a foreign file (symlink, FIFO, hard
// link) that sorts between two segments, nor a change of owner, group or mode:
// an output has its first input's, so a run that mixed them would hand one
// owner's lines to another or widen who may read them.
func Plan(s *model.Stream, in Input) Decision {
	c := s.Config.Compaction
	target := int64(c.TargetSize)
	var b int64
	n := 0
	for _, seg := range s.Segments {
		if Eligible(seg, target, in.Exclude) {
			b += seg.Size
			n++
		}
	}
	d := Decision{Priority: ComputePriority(s.GrowthRate, float64(c.GrowthRef), b, target, in.Load, n, c.MinSegments)}
	p := d.Priority
	switch {
	case n < c.MinSegments:
		d.Why = fmt.Sprintf("%d eligible segments, fewer than min_segments %d", n, c.MinSegments)
		return d
	case in.Load >= in.PauseAbove:
		d.Why = fmt.Sprintf("load %.2f ≥ pause_above %.2f: no new compaction", in.Load, in.PauseAbove)
		d.Deferred = true
		return d
	case p.Value < c.Threshold:
		d.Why = fmt.Sprintf("priority %.2f < threshold %.2f", p.Value, c.Threshold)
		return d
	}
	for i := range s.Segments {
		if Eligible(s.Segments[i], target, in.Exclude) {
			s.Segments[i].Priority = p.Value
		}
	}
	nameOrder := s.Config.Order != "mtime"
	var run []int
	var runBytes int64
	tie := ""
	flush := func() {
		defer func() { run, runBytes = nil, 0 }()
		for !nameOrder && len(run) > 0 && endsOnATie(s.Segments, run[0], run[len(run)-1]) {
			if tie == "" {
				tie = fmt.Sprintf("%s shares its mtime with a segment next to it: no merge ends with it", s.Segments[run[len(run)-1]].Name)
			}
			runBytes -= s.Segments[run[len(run)-1]].Size
			run = run[:len(run)-1]
		}
		if len(run) < 2 {
			return
		}
		first, last := run[0], run[len(run)-1]
		before, after := "", ""
		if first > 0 {
			before = s.Segments[first-1].Name
		}
		if last+1 < len(s.Segments) {
			after = s.Segments[last+1].Name
		}
		taken := in.Taken
		if taken == nil {
			taken = func(string) bool { return false }
		}
		out := model.ConsolidatedName(s.Config.Pattern, s.Segments[first].Name, s.Segments[last].Name, before, after, nameOrder, taken)
		if out == "" {
			d.Why = fmt.Sprintf("no consolidated name for %q fits pattern %q and the stream order", s.Segments[first].Name, s.Config.Pattern)
			return
		}
		job := Job{Output: out, Bytes: runBytes,
			Reason: fmt.Sprintf("priority %.2f ≥ threshold %.2f: %s", p.Value, c.Threshold, p.Terms())}
		for _, i := range run {
			job.Inputs = append(job.Inputs, s.Segments[i])
		}
		d.Jobs = append(d.Jobs, job)
	}
	for i, seg := range s.Segments {
		if !Eligible(seg, target, in.Exclude) || (nameOrder && i > 0 && foreignBetween(s.Foreign, s.Segments[i-1].Name, seg.Name)) {
			flush()
			if !Eligible(seg, target, in.Exclude) {
				continue
			}
		}
		if runBytes+seg.Size > target || len(run) >= MaxInputs || (len(run) > 0 && s.Segments[run[0]].Access != seg.Access) {
			flush()
		}
		run = append(run, i)
		runBytes += seg.Size
	}
	flush()
	if len(d.Jobs) == 0 && d.Why == "" {
		d.Why = "no two adjacent eligible segments fit within target_size"
		if tie != "" {
			d.Why = tie
		}
	}
	return d
}

// endsOnATie reports whether a merge of segs[first..last] in an mtime-ordered
// stream would lose its place. The output takes its last input's mtime and is
// born at the merge: sharing that mtime with the segment after the run, it
// would sort after it by birth (scanner.Compare) — the wrong place. Such an
// input waits: the tie is with a segment still being written, as a rule, and
// its next write ends it (a tie among closed segments merges its tail, the
// run that ends the tie). Sorting after a segment before the run is its place
// — unless the filesystem keeps no birth times, and the output's name decides.
func endsOnATie(segs []model.Segment, first, last int) bool {
	next, prev := last+1, first-1
	return next < len(segs) && segs[next].MtimeNs == segs[last].MtimeNs ||
		prev >= 0 && segs[prev].ID.Gen == 0 && segs[prev].MtimeNs == segs[last].MtimeNs
}

// foreignBetween reports whether a foreign name sorts strictly between a and b.
func foreignBetween(foreign []string, a, b string) bool {
	for _, f := range foreign {
		if model.NaturalLess(a, f) && model.NaturalLess(f, b) {
			return true
		}
	}
	return false
}
