package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/archiver"
	"github.com/logcompactd/logcompactd/internal/compactor"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
)

// plannedMerge is a compaction decision with what the job needs to run it.
type plannedMerge struct {
	stream config.Stream
	job    compactor.Job
	inputs []fsx.FileRef // the inputs as scanned, in order: identity, size, mtime, name
	reason string
}

// plannedArchive is an archival decision with the segment as scanned.
type plannedArchive struct {
	stream config.Stream
	job    archiver.Job
	input  fsx.FileRef
	more   []fsx.FileRef // the segments after input in the same object (a batch)
}

// outcome is reported back to the loop, which owns the growth tracker.
type outcome struct {
	stream    string
	output    model.SegmentID
	ok        bool
	discarded model.SegmentID // a staged output that was never published
}

// executor runs jobs on at most compaction.workers goroutines. Whoever submits
// waits for it (wait, close); jobs see ctx cancelled on close and stop at a safe
// point (the operation layer removes whatever they created). Each job opens its
// own directory handles (the scanner's are only read), checked to be the
// directories the plan was made from. Outcomes never block a job: they queue
// until the loop takes them (take), however many jobs a pass runs.
type executor struct {
	d      *Daemon
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup
	ready  chan struct{} // an outcome is queued; buffer 1, non-blocking send
	once   sync.Once

	mu struct {
		sync.Mutex
		busy     map[string]map[fsx.FileID]bool // inputs of running jobs, per stream
		outcomes []outcome
		merges   map[string]*backoff // per stream: merges that keep failing (ENOSPC on hot, ...)
		running  map[*JobLine]time.Time
		recent   []JobLine      // the last recentJobs finished, oldest first
		tally    map[string]int // finished jobs by "op result" (once's summary)
		staged   []model.SegmentID
	}
}

// staged records a merge output's identity before it is published; the loop
// adopts it before its next scan (takeStaged), so that the output never counts
// as bytes appended to the stream, whenever the scan sees it.
func (x *executor) staged(id model.SegmentID) {
	x.mu.Lock()
	x.mu.staged = append(x.mu.staged, id)
	x.mu.Unlock()
}

// takeStaged returns and clears the staged outputs.
func (x *executor) takeStaged() []model.SegmentID {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := x.mu.staged
	x.mu.staged = nil
	return out
}

// recentJobs is how many finished jobs status lists.
const recentJobs = 20

// begin records a job as running (status).
func (x *executor) begin(j JobLine) *JobLine {
	now := time.Now()
	j.Started = now.UTC().Format(time.RFC3339Nano)
	x.mu.Lock()
	x.mu.running[&j] = now
	x.mu.Unlock()
	return &j
}

// end records how a job begun ended.
func (x *executor) end(j *JobLine, result string, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	j.Seconds = time.Since(x.mu.running[j]).Seconds()
	delete(x.mu.running, j)
	j.Result = result
	x.mu.tally[j.Op+" "+result]++
	if err != nil {
		j.Error = err.Error()
	}
	x.mu.recent = append(x.mu.recent, *j)
	if len(x.mu.recent) > recentJobs {
		x.mu.recent = slices.Delete(x.mu.recent, 0, len(x.mu.recent)-recentJobs)
	}
}

// tallies counts the finished jobs by "op result" ("archive ok", ...).
func (x *executor) tallies() map[string]int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return maps.Clone(x.mu.tally)
}

// jobs lists the running jobs (oldest first) and the recent finished ones.
func (x *executor) jobs() (running, recent []JobLine) {
	x.mu.Lock()
	defer x.mu.Unlock()
	js := make([]*JobLine, 0, len(x.mu.running))
	for j := range x.mu.running {
		js = append(js, j)
	}
	slices.SortFunc(js, func(a, b *JobLine) int { return x.mu.running[a].Compare(x.mu.running[b]) })
	running = make([]JobLine, 0, len(js))
	for _, j := range js {
		running = append(running, *j)
	}
	return running, append([]JobLine{}, x.mu.recent...)
}

func newExecutor(d *Daemon) *executor {
	ctx, cancel := context.WithCancel(context.Background())
	x := &executor{d: d, ctx: ctx, cancel: cancel, sem: make(chan struct{}, d.cfg.Compaction.Workers),
		ready: make(chan struct{}, 1)}
	x.mu.busy = map[string]map[fsx.FileID]bool{}
	x.mu.merges = map[string]*backoff{}
	x.mu.running = map[*JobLine]time.Time{}
	x.mu.tally = map[string]int{}
	return x
}

// resize sets the number of workers (compaction.workers on reload). Only while
// no job runs: the caller waited for them (wait).
func (x *executor) resize(workers int) {
	if cap(x.sem) != workers {
		x.sem = make(chan struct{}, workers)
	}
}

// mergeBackoff returns the stream's merge back-off (under x.mu).
func (x *executor) mergeBackoff(stream string) *backoff {
	b := x.mu.merges[stream]
	if b == nil {
		b = &backoff{}
		x.mu.merges[stream] = b
	}
	return b
}

// transient reports whether a job failed on a race it is expected to lose now
// and then (a writer renamed, reopened or changed an input; a name was taken):
// the next pass simply plans again. Anything else (ENOSPC, EIO, EACCES, mixed
// encodings, ...) would fail the same way at every pass: it backs off.
func transient(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, fsx.ErrLeaseBroken) || errors.Is(err, fsx.ErrWriting) ||
		errors.Is(err, fsx.ErrInputChanged) || errors.Is(err, fsx.ErrExists)
}

// report queues a job's outcome for the loop.
func (x *executor) report(o outcome) {
	x.mu.Lock()
	x.mu.outcomes = append(x.mu.outcomes, o)
	x.mu.Unlock()
	select {
	case x.ready <- struct{}{}:
	default:
	}
}

// take returns and clears the queued outcomes.
func (x *executor) take() []outcome {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := x.mu.outcomes
	x.mu.outcomes = nil
	return out
}

// busy returns the inputs of running jobs of a stream.
func (x *executor) busy(stream string) map[fsx.FileID]bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[fsx.FileID]bool{}
	for k := range x.mu.busy[stream] {
		out[k] = true
	}
	return out
}

// openDir opens a stream's dir for a job: its own handle, refused unless it is
// the directory the scanner read (the plan is about that one).
func (x *executor) openDir(path string) (*fsx.Dir, error) {
	seen, err := x.d.scanner.Dir(path)
	if err != nil {
		return nil, err
	}
	d, err := fsx.OpenDir(path)
	if err != nil {
		return nil, err
	}
	if d.Dev() != seen.Dev() || d.Ino() != seen.Ino() {
		d.Close()
		return nil, fmt.Errorf("%s is no longer the directory that was scanned", path)
	}
	return d, nil
}

// submit starts a merge unless one of its inputs is busy. It must be called from
// the goroutine that owns the scanner.
func (x *executor) submit(pm plannedMerge) {
	x.mu.Lock()
	ready := x.mergeBackoff(pm.stream.Name).ready(x.d.opts.Now())
	x.mu.Unlock()
	if !ready {
		x.d.log.Debug("merge waits: earlier merges of this stream failed", zap.String("stream", pm.stream.Name))
		return
	}
	jobDir, err := x.openDir(pm.stream.Dir)
	if err != nil {
		x.d.log.Error("cannot start merge", zap.String("stream", pm.stream.Name), zap.Error(err))
		return
	}
	if !x.start(pm.stream.Name, pm.inputs, func() { defer jobDir.Close(); x.slot(func() bool { x.run(jobDir, pm); return true }) }) {
		jobDir.Close()
	}
}

// submitArchives starts one chain that moves a stream's planned segments in
// stream order and stops at the first failure, so that archival never leaves a
// gap in the hot stream (a later merge could join segments across it). It does
// nothing if any of them is busy.
func (x *executor) submitArchives(stream config.Stream, chain []plannedArchive, tier *coldTier) {
	if len(chain) == 0 {
		return
	}
	hot, err := x.openDir(stream.Dir)
	if err != nil {
		x.d.log.Error("cannot start archival", zap.String("stream", stream.Name), zap.Error(err))
		return
	}
	var cold *fsx.Dir
	store, err := tier.publisher(x.d.opts.Now(), stream.Name, hot)
	if err == nil && store == nil {
		cold, err = tier.stream(x.d.opts.Now(), stream.Name)
	}
	if err != nil {
		hot.Close()
		return // logged by the tier; the segments stay hot
	}
	var refs []fsx.FileRef
	for _, pa := range chain {
		refs = append(append(refs, pa.input), pa.more...)
	}
	closeCold := func() {
		if cold != nil {
			cold.Close()
		}
	}
	if !x.start(stream.Name, refs, func() {
		defer hot.Close()
		defer closeCold()
		for _, pa := range chain {
			// A worker per move, not per chain: a stream with a long chain (or
			// one huge segment) shares the workers with the other streams.
			if !x.slot(func() bool { return x.runArchive(hot, cold, store, tier, pa) }) {
				return
			}
		}
	}) {
		hot.Close()
		closeCold()
	}
}

// start marks the inputs busy and runs fn in a goroutine (fn takes a worker
// slot for each job it runs), or returns false if any input is busy.
func (x *executor) start(stream string, refs []fsx.FileRef, fn func()) bool {
	x.mu.Lock()
	if x.mu.busy[stream] == nil {
		x.mu.busy[stream] = map[fsx.FileID]bool{}
	}
	for _, r := range refs {
		if x.mu.busy[stream][fsx.FileID{Dev: r.Dev, Ino: r.Ino}] {
			x.mu.Unlock()
			return false
		}
	}
	for _, r := range refs {
		x.mu.busy[stream][fsx.FileID{Dev: r.Dev, Ino: r.Ino}] = true
	}
	x.mu.Unlock()
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		defer x.release(stream, refs)
		fn()
	}()
	return true
}

// slot runs fn on one of the compaction.workers slots, waiting for one (or
// returns false when the executor closes first). Waiters get a slot in the
// order they asked: a goroutine that gives its slot back and asks again goes
// behind the others.
func (x *executor) slot(fn func() bool) bool {
	select {
	case x.sem <- struct{}{}:
	case <-x.ctx.Done():
		return false
	}
	defer func() { <-x.sem }()
	return fn()
}

func (x *executor) release(stream string, refs []fsx.FileRef) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range refs {
		delete(x.mu.busy[stream], fsx.FileID{Dev: r.Dev, Ino: r.Ino})
	}
}

func (x *executor) run(dir *fsx.Dir, pm plannedMerge) {
	names := make([]string, len(pm.inputs))
	for i, in := range pm.inputs {
		names[i] = in.Name
	}
	c := pm.stream.Compaction
	start := time.Now()
	jl := x.begin(JobLine{Op: "compact", Stream: pm.stream.Name, Segments: names, Output: pm.job.Output})
	var stagedID model.SegmentID
	res, err := x.d.env.Merge(x.ctx, compactor.MergeJob{Stream: pm.stream.Name, Dir: dir, DirPath: pm.stream.Dir,
		Inputs: pm.inputs, Output: pm.job.Output, Compress: c.Compress, KeepInactive: c.KeepInactive,
		Staged: func(r fsx.FileRef) {
			stagedID = model.SegmentID{Dev: r.Dev, Ino: r.Ino, Gen: r.Gen}
			x.staged(stagedID)
		}})
	fields := []zap.Field{zap.String("stream", pm.stream.Name), zap.String("action", "compact"),
		zap.Strings("segments", names), zap.String("output", pm.job.Output), zap.Int64("bytes", res.Bytes),
		zap.Int64("written", res.Written), zap.Int("newlines_inserted", res.Newlines),
		zap.Int64("duration_ms", time.Since(start).Milliseconds()), zap.String("reason", pm.reason)}
	committed := res.Output.Name != ""
	result := "ok"
	switch {
	case err != nil && (committed || !transient(err)):
		result = "failed"
	case err != nil:
		result = "abandoned"
	}
	x.d.metrics.job("compact", pm.stream.Name, result, res.Bytes, time.Since(start))
	var discarded model.SegmentID
	if !committed {
		discarded = stagedID
	}
	x.end(jl, result, err)
	switch {
	case err != nil && committed:
		x.d.log.Error("merged, but its inputs are not all removed: the operation stays in the journal", append(fields, zap.Error(err))...)
	case err != nil:
		lvl := zap.WarnLevel
		if transient(err) {
			lvl = zap.InfoLevel
		} else {
			x.mu.Lock()
			b := x.mergeBackoff(pm.stream.Name)
			isNew, repeated := b.fail(x.d.opts.Now(), err)
			fields = append(fields, zap.Duration("retry_in", b.wait), zap.Int("previous_error_repeated", repeated))
			x.mu.Unlock()
			if !isNew {
				lvl = zap.DebugLevel // said once already; counted
			}
		}
		x.d.log.Check(lvl, "merge abandoned, inputs intact").Write(append(fields, zap.Error(err))...)
		x.report(outcome{stream: pm.stream.Name, discarded: discarded})
		return
	case res.Inactive:
		x.d.log.Info("merged; inputs inactive for keep_inactive", fields...)
		x.mergeSucceeded(pm.stream.Name)
	default:
		x.d.log.Info("merged", fields...)
		x.mergeSucceeded(pm.stream.Name)
	}
	x.report(outcome{stream: pm.stream.Name, ok: true,
		output: model.SegmentID{Dev: res.Output.Dev, Ino: res.Output.Ino, Gen: res.Output.Gen}})
}

func (x *executor) mergeSucceeded(stream string) {
	x.mu.Lock()
	was, repeated := x.mergeBackoff(stream).succeed()
	x.mu.Unlock()
	if was {
		x.d.log.Info("merges work again", zap.String("stream", stream), zap.Int("failures_since_logged", repeated))
	}
}

func (x *executor) runArchive(hot, cold *fsx.Dir, store fsx.Publisher, tier *coldTier, pa plannedArchive) bool {
	a := pa.stream.Archive
	start := time.Now()
	segs := []string{pa.job.Segment.Name}
	for _, m := range pa.more {
		segs = append(segs, m.Name)
	}
	jl := x.begin(JobLine{Op: "archive", Stream: pa.stream.Name, Segments: segs, Output: tier.path + "/" + pa.job.Output})
	res, err := x.d.arch.Move(x.ctx, archiver.MoveJob{Stream: pa.stream.Name, Hot: hot, HotPath: pa.stream.Dir,
		Cold: cold, ColdPath: filepath.Join(tier.path, pa.stream.Name), Store: store, Segment: pa.input, More: pa.more, Output: pa.job.Name,
		Compress: a.Compress, Urgent: pa.job.Urgent, Sparse: pa.job.Segment.Sparse, Encoding: pa.job.Encoding})
	fields := []zap.Field{zap.String("stream", pa.stream.Name), zap.String("action", "archive"),
		zap.String("segment", pa.job.Segment.Name), zap.Strings("segments", segs), zap.String("output", tier.path+"/"+pa.job.Output),
		zap.String("rule", string(pa.job.Kind)), zap.Bool("urgent", pa.job.Urgent), zap.Int64("bytes", res.Bytes),
		zap.Int64("written", res.Written), zap.Bool("renamed", res.Renamed),
		zap.Int64("duration_ms", time.Since(start).Milliseconds()), zap.String("reason", pa.job.Reason)}
	result := "ok"
	switch {
	case err != nil && (transient(err) || errors.Is(err, fsx.ErrInputMissing)):
		result = "abandoned"
	case err != nil:
		result = "failed"
	}
	x.d.metrics.job("archive", pa.stream.Name, result, res.Bytes, time.Since(start))
	x.end(jl, result, err)
	if err != nil {
		if result == "failed" {
			tier.fail(x.d.opts.Now(), err) // ENOSPC, EACCES, EROFS, EIO...: back off
		}
		x.d.log.Warn("archival not finished, segment stays hot unless the log says it was archived; later ones wait", append(fields, zap.Error(err))...)
		x.report(outcome{stream: pa.stream.Name})
		return false
	}
	tier.succeeded()
	x.d.log.Info("archived", fields...)
	x.report(outcome{stream: pa.stream.Name})
	return true
}

// wait blocks until every submitted job has finished.
func (x *executor) wait() { x.wg.Wait() }

// close cancels running jobs (they stop at a safe point) and waits for them.
func (x *executor) close() {
	x.once.Do(func() {
		x.cancel()
		x.wg.Wait()
	})
}
