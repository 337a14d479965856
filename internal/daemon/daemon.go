// Package daemon wires the subsystems together. One pass is: scan -> growth
// tracker -> snapshot -> archiver.Plan and compactor.Plan -> report. `plan` prints
// a pass; `once` makes one pass and saves the growth history; `run` makes passes
// on a timer and on fsnotify triggers until stopped. Acting on the decisions
// arrives with the compaction and archival issues; here they are logged.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/archiver"
	"github.com/logcompactd/logcompactd/internal/compactor"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/growth"
	"github.com/logcompactd/logcompactd/internal/loadprobe"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/objstore"
	"github.com/logcompactd/logcompactd/internal/scanner"
)

// File names inside the state dir.
const (
	lockName    = "lock"
	historyName = "growth.history"
	journalName = "journal"
)

// Options configure a Daemon. The zero value opens it for writing with the real clock.
type Options struct {
	Logger *zap.Logger
	// ReadOnly opens without creating the state dir, taking the lock or saving
	// history: what `plan` needs to change nothing while a daemon runs.
	ReadOnly bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Notify sends an sd_notify state ("READY=1", "STATUS=..."); default: none.
	Notify func(state string)
	// Fault is passed to the jobs and recovery as their named-step hook (tests).
	Fault func(point string)
	// Watchdog is systemd's WatchdogSec; when set, the main loop itself sends
	// WATCHDOG=1 every half of it, so a stuck loop stops the pings.
	Watchdog time.Duration
	// Stall, when it fires, blocks the main loop forever (tests of the watchdog).
	Stall <-chan struct{}
	// Version is the build's, for status and logcompactd_build_info.
	Version string
}

// Daemon is the wired set of subsystems for one config.
type Daemon struct {
	cfg     *config.Config
	opts    Options
	log     *zap.Logger
	scanner *scanner.Scanner
	tracker *growth.Tracker // through rates(): the history is loaded while the first scan runs
	loaded  chan struct{}   // closed when the history Open began to load is in tracker
	probe   *loadprobe.Probe
	state   *fsx.Dir
	lock    *os.File
	last    map[string]scanner.Result // latest scan per stream
	saved   time.Time
	prev    map[string]string // last logged actions per stream, to log changes once

	planned     []plannedMerge   // merges decided by the last pass
	archives    []plannedArchive // archivals decided by the last pass
	arch        *archiver.Env
	tiers       map[string]*coldTier // by cleaned cold dir path
	journal     *fsx.Journal         // nil when ReadOnly or unusable
	journalErr  error                // why destructive actions are off, if they are
	detail      bool                 // reports carry a row per segment (plan)
	pending     []fsx.Op             // unfinished ops, as of the last pass
	leases      *fsx.Leases
	ops         *fsx.Runner      // the operation layer every job runs through
	recoverDirs []*fsx.Dir       // opened for recovery or FinishDue; closed after it
	shrunkBytes map[string]int64 // per stream: bytes that vanished from shrinking segments
	lastStreams []*model.Stream  // the last pass's snapshot (valid until the next pass)
	lastReport  *Report          // the last pass's decisions, as run acted on them
	lastPass    time.Duration    // how long it took
	overCap     map[string]bool  // streams over their cap with nothing archivable, as last logged
	deferring   map[string]bool  // streams with archival or compaction deferred, as last logged
	metrics     *metrics
	started     time.Time
	asks        chan func() // control socket requests, run on the loop's goroutine
	textfileAt  time.Time   // when metrics.textfile was last written
	textfileErr string      // its last error, logged once
	env         *compactor.Env
	exec        *executor
}

func growthOptions(c *config.Config) growth.Options {
	return growth.Options{Window: c.Growth.Window, Alpha: c.Growth.Alpha}
}

// Open validates that the state dir is usable (creating it 0700 unless ReadOnly),
// takes the one-instance lock, and loads the growth history.
func Open(cfg *config.Config, o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Notify == nil {
		o.Notify = func(string) {}
	}
	d := &Daemon{cfg: cfg, opts: o, log: o.Logger, tracker: growth.NewTracker(growthOptions(cfg)),
		last: map[string]scanner.Result{}, prev: map[string]string{},
		overCap: map[string]bool{}, deferring: map[string]bool{}, metrics: newMetrics(o.Version), started: o.Now(),
		asks: make(chan func()), loaded: make(chan struct{})}
	d.metrics.configure(cfg)
	if err := d.openState(); err != nil {
		return nil, err
	}
	d.scanner = scanner.New(cfg.Streams, scanner.Options{Logger: d.log})
	d.probe = loadprobe.New(loadprobe.Options{Enabled: cfg.Load.Enabled, Interval: cfg.Load.Interval, Logger: d.log})
	if !o.ReadOnly {
		d.leases = fsx.NewLeases()
		d.ops = &fsx.Runner{Journal: d.journal, Leases: d.leases, Hooks: fsx.Hooks{Now: o.Now, Fault: o.Fault},
			Verify: map[fsx.OpKind]fsx.VerifyFunc{fsx.KindArchive: archiver.VerifyArchive}}
		d.env = &compactor.Env{Ops: d.ops, Pacer: compactor.NewPacer(float64(cfg.Compaction.MaxRate), 1<<20, nil)}
		d.arch = &archiver.Env{Ops: d.ops, Pacer: d.env.Pacer}
		d.exec = newExecutor(d)
	}
	d.setTiers(cfg)
	return d, nil
}

// setTiers keeps one guard per distinct cold dir (reusing existing ones, so the
// identity seen at start survives a reload).
func (d *Daemon) setTiers(cfg *config.Config) {
	old := d.tiers
	d.tiers = map[string]*coldTier{}
	for _, s := range cfg.Streams {
		p := tierKey(s.Archive.ColdDir)
		if t, ok := old[p]; ok {
			d.tiers[p] = t
			delete(old, p)
		} else if d.tiers[p] == nil {
			t := newColdTier(p, d.log)
			if strings.HasPrefix(p, "s3://") {
				st, err := objstore.New(context.Background(), p, s.Archive.S3)
				if st != nil {
					st.Fault = d.opts.Fault
				}
				if err != nil {
					t.fail(d.opts.Now(), err) // archival to it backs off, logged; hot stays
				}
				t.store = st
			}
			d.tiers[p] = t
		}
	}
	for _, t := range old {
		t.close()
	}
}

// coldStreamDir resolves a journaled cold subdir (<cold_dir>/<stream>) to an open
// directory, only under a configured cold dir.
func (d *Daemon) coldStreamDir(path string) (*fsx.Dir, error) {
	t := d.tiers[filepath.Dir(filepath.Clean(path))]
	if t == nil {
		return nil, fmt.Errorf("%s is not under a configured cold dir", path)
	}
	return t.stream(d.opts.Now(), filepath.Base(path))
}

// coldPublisher resolves a journaled destination: a local cold subdir, or
// s3://bucket[/prefix]/<stream> of a configured object-store tier (staging in
// the stream's hot dir, opened for this recovery).
func (d *Daemon) coldPublisher(path string) (fsx.Publisher, error) {
	if !strings.HasPrefix(path, "s3://") {
		return d.opened(d.coldStreamDir(path))
	}
	url, stream := objstore.StreamOf(path)
	t := d.tiers[url]
	if t == nil || t.store == nil {
		return nil, fmt.Errorf("%s is not under a configured cold tier", path)
	}
	for _, s := range d.cfg.Streams {
		if s.Name == stream && tierKey(s.Archive.ColdDir) == url {
			hot, err := d.opened(fsx.OpenDir(s.Dir))
			if err != nil {
				return nil, err
			}
			return t.publisher(d.opts.Now(), stream, hot)
		}
	}
	return nil, fmt.Errorf("%s: no configured stream %q archives there", path, stream)
}

func (d *Daemon) openState() error {
	dir := d.cfg.StateDir
	if d.opts.ReadOnly {
		sd, err := fsx.OpenDir(dir)
		if err != nil {
			d.log.Warn("no growth history: state dir not readable; rates start from this scan", zap.String("state_dir", dir), zap.Error(err))
			close(d.loaded)
			return nil
		}
		d.state = sd
	} else {
		if err := fsx.EnsureStateDir(dir); err != nil {
			return err
		}
		sd, err := fsx.OpenDir(dir)
		if err != nil {
			return err
		}
		lock, err := sd.Lock(lockName)
		if err != nil {
			sd.Close()
			return err
		}
		d.state, d.lock = sd, lock
		if err := sd.RemoveTemps(); err != nil {
			d.log.Warn("cannot remove temporary files from the state dir", zap.Error(err))
		}
		j, err := fsx.OpenJournal(sd, journalName)
		if err != nil {
			// Loud, and no destructive action until an operator looks: the journal
			// may hold the only record of a committed merge.
			d.journalErr = err
			d.log.Error("intent journal unusable: merging and deleting are OFF until it is repaired", zap.Error(err))
		}
		d.journal = j
	}
	// The history is read and decoded while the caller goes on to recover and
	// scan, which need none of it (at 100,000 segments it was a tenth of a
	// fresh plan, on one core); rates() waits for it.
	go func() {
		defer close(d.loaded)
		data, err := d.state.ReadFile(historyName)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			d.log.Warn("cannot read growth history; starting fresh", zap.Error(err))
		default:
			if err := d.tracker.Unmarshal(data); err != nil {
				d.log.Warn("growth history unusable; starting fresh", zap.String("file", filepath.Join(dir, historyName)), zap.Error(err))
			}
		}
	}()
	return nil
}

// rates is the growth tracker, with the history Open loads.
func (d *Daemon) rates() *growth.Tracker {
	<-d.loaded
	return d.tracker
}

// Close releases everything Open took. Safe to call twice.
func (d *Daemon) Close() error {
	<-d.loaded // the history's reader uses the state dir
	var errs []error
	if d.exec != nil {
		d.exec.close()
	}
	for _, t := range d.tiers {
		t.close()
	}
	if d.leases != nil {
		d.leases.Close()
	}
	if d.journal != nil {
		errs = append(errs, d.journal.Close())
		d.journal = nil
	}
	if d.probe != nil {
		d.probe.Close()
	}
	if d.scanner != nil {
		errs = append(errs, d.scanner.Close())
	}
	if d.lock != nil {
		errs = append(errs, d.lock.Close())
		d.lock = nil
	}
	if d.state != nil {
		errs = append(errs, d.state.Close())
		d.state = nil
	}
	return errors.Join(errs...)
}

// SaveHistory persists the growth history atomically (0600). No-op when ReadOnly.
func (d *Daemon) SaveHistory() error {
	if d.opts.ReadOnly || d.state == nil {
		return nil
	}
	data, err := d.rates().Marshal()
	if err != nil {
		return err
	}
	if err := d.state.ReplaceFile(historyName, data, 0o600); err != nil {
		return fmt.Errorf("save growth history: %w", err)
	}
	d.saved = d.opts.Now()
	return nil
}

// Pass scans (every stream, or those whose dir is in only), updates growth, and
// plans. Dirs in unchanged are vouched for by the caller (see scanner.Scan) and
// not re-read. It returns the report, without per-segment rows unless the
// daemon was opened for Plan; it changes nothing on disk.
func (d *Daemon) Pass(only, unchanged map[string]bool) *Report {
	now := d.opts.Now()
	d.refreshPending()
	if d.exec != nil {
		d.adoptStaged() // before the scan that may see them
	}
	d.forgetScans(only)
	results := d.scanner.Scan(now, only, unchanged)
	fsSeen := map[uint64]bool{}
	var obs []growth.Obs // reused across the streams of this pass; not kept (3 MB at 100,000 idle segments)
	tr := d.rates()
	var reread, verified, reused int
	for _, r := range results {
		d.last[r.Stream.Name] = r
		if r.Err != nil {
			continue
		}
		if r.Reused {
			reused++
			tr.Touch(r.Stream.Name, r.At)
		} else {
			reread++
			if r.Verified {
				verified++
			}
			obs = slices.Grow(obs[:0], len(r.Segments))
			for _, seg := range r.Segments {
				obs = append(obs, growth.Obs{ID: seg.ID, Size: seg.Size})
			}
			for _, sh := range tr.Observe(r.Stream.Name, r.At, obs) {
				d.shrunk(r, sh)
			}
		}
		if r.FS.Total > 0 && !fsSeen[r.FS.Dev] {
			fsSeen[r.FS.Dev] = true
			tr.ObserveFS(r.FS.Dev, r.At, int64(r.FS.Total-r.FS.Avail))
		}
	}
	rep := d.plan(now)
	// Whether a segment is open for writing is asked only of the inputs of
	// what was decided (a lease each); one found open is active, and the
	// decisions are made again without it.
	for i := 0; i < maxWriterReplans && d.checkWriters(); i++ {
		rep = d.plan(now)
	}
	rep.reread, rep.verified, rep.reused = reread, verified, reused
	rep.Source = "local"
	d.lastPass = d.opts.Now().Sub(now)
	d.lastReport = rep
	d.metrics.observePass(d, d.lastStreams, rep, d.lastPass, now)
	return rep
}

// forgetScans drops the previous scan of every stream the next scan returns
// (all, or those in only's directories), and the last snapshot, made over
// those scans' lists. Held here while the scanner re-read them, the old
// segments (12 MB at 100,000) stayed alive next to the new ones: the peak of
// every full re-read. A stream vouched unchanged gets its previous scan back
// from the scanner, which keeps its own.
func (d *Daemon) forgetScans(only map[string]bool) {
	d.lastStreams = nil // the pass makes the next one
	if only == nil {
		clear(d.last)
		return
	}
	for _, st := range d.cfg.Streams {
		if only[filepath.Clean(st.Dir)] {
			delete(d.last, st.Name)
		}
	}
}

// forgetPass drops what the last pass read and built (the scans, the
// snapshot) and what the scanner keeps for reuse: the next pass reads every
// directory again.
func (d *Daemon) forgetPass() {
	d.forgetScans(nil)
	d.scanner.Forget()
}

// maxWriterReplans bounds the plans made again because an input was found open
// for writing; each one marks at least one more segment active. After it, a job
// whose input is still open is refused by the operation layer's own lease.
const maxWriterReplans = 8

// checkWriters asks whether the inputs of the planned merges and archivals are
// open for writing, and reports whether one was (its entry is then marked).
func (d *Daemon) checkWriters() bool {
	inputs := map[string]map[model.SegmentID]bool{}
	add := func(stream string, r fsx.FileRef) {
		if inputs[stream] == nil {
			inputs[stream] = map[model.SegmentID]bool{}
		}
		inputs[stream][model.SegmentID{Dev: r.Dev, Ino: r.Ino, Gen: r.Gen}] = true
	}
	for _, pm := range d.planned {
		for _, in := range pm.inputs {
			add(pm.stream.Name, in)
		}
	}
	for _, pa := range d.archives {
		add(pa.stream.Name, pa.input)
		for _, m := range pa.more {
			add(pa.stream.Name, m)
		}
	}
	found := false
	for stream, ids := range inputs {
		if r, ok := d.last[stream]; ok && d.scanner.CheckWriters(r, func(id model.SegmentID) bool { return ids[id] }) {
			found = true
		}
	}
	return found
}

// shrunk reports a segment that got smaller since the last scan, at warn, and
// counts the vanished bytes per stream (ShrunkBytes).
func (d *Daemon) shrunk(r scanner.Result, sh growth.Shrink) {
	name := ""
	for _, seg := range r.Segments {
		if seg.ID == sh.ID {
			name = seg.Name
			break
		}
	}
	if d.shrunkBytes == nil {
		d.shrunkBytes = map[string]int64{}
	}
	d.shrunkBytes[r.Stream.Name] += sh.From - sh.To
	d.metrics.shrank(r.Stream.Name, sh.From-sh.To)
	d.log.Warn("a segment shrank: its writer truncated or replaced it, and these bytes vanished (copytruncate loses lines)",
		zap.String("stream", r.Stream.Name), zap.ByteString("segment", []byte(name)), zap.Int64("from", sh.From),
		zap.Int64("to", sh.To), zap.Int64("bytes", sh.From-sh.To), zap.Int64("stream_total_bytes", d.shrunkBytes[r.Stream.Name]))
}

// ShrunkBytes is how many bytes vanished from shrinking segments, per stream,
// since the daemon started.
func (d *Daemon) ShrunkBytes() map[string]int64 { return maps.Clone(d.shrunkBytes) }

// refreshPending reloads the unfinished ops (read-only for plan).
func (d *Daemon) refreshPending() {
	switch {
	case d.journal != nil:
		d.pending = d.journal.Pending()
	case d.opts.ReadOnly && d.state != nil:
		ops, err := fsx.ReadJournal(d.state, journalName)
		if err != nil {
			d.log.Warn("cannot read the intent journal", zap.Error(err))
			if errors.Is(err, fsx.ErrJournalCorrupt) {
				d.journalErr = err // plan shows what run would do: nothing destructive
			}
		}
		d.pending = ops
	}
}

// snapshot builds the model from the latest scan of every stream.
func (d *Daemon) snapshot(now time.Time) []*model.Stream {
	var out []*model.Stream
	tr := d.rates()
	for _, sc := range d.cfg.Streams {
		r, ok := d.last[sc.Name]
		s := &model.Stream{Config: sc}
		out = append(out, s)
		if !ok {
			s.Err = "not scanned yet"
			continue
		}
		if r.Err != nil {
			s.Err = r.Err.Error()
			continue
		}
		s.Foreign = r.Foreign
		s.FS = r.FS
		s.FS.FillRate = tr.FSRate(r.FS.Dev)
		// The snapshot is made over the scan's own list, classified in place: a
		// copy was 112 bytes a segment kept between passes (11 MB at 100,000)
		// and rewritten at every tick. Nothing keeps a snapshot past its pass
		// (jobs copy their segments), but a report with detail (plan's) keeps
		// its segments as its rows: after such a pass the daemon and the
		// scanner let the lists go (see Plan), so no later pass classifies
		// them again.
		s.Segments = r.Segments
		model.Classify(s.Segments, now, sc.Compaction.Quiesce)
		d.markJournaled(s)
		for i := range s.Segments {
			seg := &s.Segments[i]
			s.HotBytes += seg.Size
			if seg.State == model.Active {
				// A closed segment is not written any more: its growth is 0 by definition.
				seg.GrowthRate = tr.SegmentRate(sc.Name, seg.ID)
			}
			seg.PredictedSize = growth.Predict(seg.Size, seg.GrowthRate, d.cfg.Growth.Horizon)
		}
		s.GrowthRate = tr.StreamRate(sc.Name)
		s.PredictedBytes = growth.Predict(s.HotBytes, s.GrowthRate, sc.Archive.TimeToArchive)
	}
	return out
}

// markJournaled overrides states from the journal and the running jobs: inputs of
// a committed merge are inactive; outputs of unfinished merges and inputs of
// running ones are active (nothing else may touch them until they finish).
func (d *Daemon) markJournaled(s *model.Stream) {
	type key struct{ dev, ino uint64 }
	inactive, busy := map[key]bool{}, map[key]string{}
	for _, op := range d.pending {
		if filepath.Clean(op.Dir) != filepath.Clean(s.Config.Dir) {
			continue
		}
		for _, in := range op.Inputs {
			if op.InputsInactive() {
				inactive[key{in.Dev, in.Ino}] = true
			} else {
				busy[key{in.Dev, in.Ino}] = "input of an unfinished " + string(op.Kind)
			}
		}
		if out := op.OutputInSource(); out != nil {
			busy[key{out.Dev, out.Ino}] = "output of an unfinished " + string(op.Kind)
		}
	}
	if d.exec != nil {
		for k := range d.exec.busy(s.Config.Name) {
			busy[key{k.Dev, k.Ino}] = "busy (a job is running)"
		}
	}
	for i := range s.Segments {
		seg := &s.Segments[i]
		k := key{seg.ID.Dev, seg.ID.Ino}
		switch {
		case inactive[k]:
			seg.State, seg.Why = model.Inactive, ""
		case busy[k] != "":
			seg.State, seg.Why = model.Active, busy[k]
		}
	}
}

// plan decides on the snapshot: archival first (a segment leaving the hot tier is
// not merged), then compaction of what remains.
func (d *Daemon) plan(now time.Time) *Report {
	load := d.probe.Load()
	streams := d.snapshot(now)
	rep := &Report{Time: now.UTC().Format(time.RFC3339), Load: load, Streams: make([]StreamReport, 0, len(streams))}
	d.planned = d.planned[:0]
	d.archives = d.archives[:0]
	defer func() {
		if d.journalErr != nil {
			d.planned, d.archives = nil, nil
		}
	}()
	names := d.coldNamer()
	arch := archiver.Plan(streams, archiver.Input{Now: now, Load: load, PauseAbove: d.cfg.Load.PauseAbove, ColdName: names.name})
	for _, s := range streams {
		exclude := map[string]bool{}
		var actions []Action
		for _, batch := range d.batches(s, arch.Jobs[s.Config.Name], names) {
			j := batch[0]
			pa := plannedArchive{stream: s.Config, job: j, input: refOf(j.Segment)}
			a := Action{Kind: "archive", Segments: []string{j.Segment.Name}, Output: j.Output, Reason: j.Reason}
			exclude[j.Segment.Name] = true
			for _, more := range batch[1:] {
				exclude[more.Segment.Name] = true
				a.Segments = append(a.Segments, more.Segment.Name)
				pa.more = append(pa.more, refOf(more.Segment))
			}
			if len(batch) > 1 {
				a.Reason += fmt.Sprintf("; %d segments in one archive (one job, one verification, one set of fsyncs)", len(batch))
			}
			actions = append(actions, a)
			d.archives = append(d.archives, pa)
		}
		var why []string
		var deferred []Action
		overCap := false
		priority := 0.0
		if s.Err == "" {
			var names map[string]bool // built on the first question: most passes ask none
			taken := func(n string) bool {
				if names == nil {
					names = make(map[string]bool, len(s.Segments)+len(s.Foreign))
					for _, seg := range s.Segments {
						names[seg.Name] = true
					}
					for _, f := range s.Foreign {
						names[f] = true
					}
				}
				return names[n]
			}
			cd := compactor.Plan(s, compactor.Input{Load: load, PauseAbove: d.cfg.Load.PauseAbove, Exclude: exclude,
				Taken: taken})
			priority = cd.Priority.Value
			for _, j := range cd.Jobs {
				a := Action{Kind: "compact", Output: j.Output, Reason: j.Reason}
				pm := plannedMerge{stream: s.Config, job: j, reason: j.Reason}
				for _, in := range j.Inputs {
					a.Segments = append(a.Segments, in.Name)
					pm.inputs = append(pm.inputs, refOf(in))
				}
				actions = append(actions, a)
				d.planned = append(d.planned, pm)
			}

			if cd.Why != "" {
				why = append(why, "compaction: "+cd.Why)
			}
			for _, j := range arch.Deferred[s.Config.Name] {
				deferred = append(deferred, Action{Kind: "archive", Segments: []string{j.Segment.Name}, Output: j.Output, Reason: j.Reason})
			}
			if cd.Deferred {
				deferred = append(deferred, Action{Kind: "compact", Segments: []string{}, Reason: cd.Why})
			}
			if len(arch.Jobs[s.Config.Name]) == 0 && len(arch.Deferred[s.Config.Name]) == 0 {
				note, over := archivalNote(s)
				why = append(why, note)
				overCap = over
			}
		}
		if d.journalErr != nil && len(actions) > 0 {
			why = append(why, fmt.Sprintf("%d actions held back: merging and archival are off until the intent journal is repaired: %v",
				len(actions), d.journalErr))
			actions = nil
		}
		sr := newStreamReport(s, d.detail)
		sr.Priority = priority
		sr.Actions = append(sr.Actions, actions...)
		sr.Notes = append(sr.Notes, why...)
		sr.Deferred = append(sr.Deferred, deferred...)
		sr.OverCap = overCap
		rep.Streams = append(rep.Streams, sr)
	}
	d.lastStreams = streams
	return rep
}

// archivalNote says why a stream archives nothing this pass; over is set when
// its hot bytes are already over max_hot_bytes (and nothing can be archived).
func archivalNote(s *model.Stream) (note string, over bool) {
	a := s.Config.Archive
	capB := float64(a.MaxHotBytes)
	blocked := "no segment"
	for _, seg := range s.Segments {
		if seg.State != model.Closed && seg.State != model.Consolidated {
			blocked = fmt.Sprintf("the oldest segment %s is %s", quoteName(seg.Name), seg.State)
			if seg.Why != "" {
				blocked += " (" + seg.Why + ")"
			}
			break
		}
	}
	switch {
	case float64(s.HotBytes) > capB:
		return fmt.Sprintf("archival: hot %s over max_hot_bytes %s and nothing can be archived: %s",
			Bytes(float64(s.HotBytes)), Bytes(capB), blocked), true
	case s.PredictedBytes > capB:
		return fmt.Sprintf("archival: predicted %s at +%s over max_hot_bytes %s, but nothing can be archived: %s",
			Bytes(s.PredictedBytes), a.TimeToArchive, Bytes(capB), blocked), false
	}
	return fmt.Sprintf("archival: predicted %s at +%s within max_hot_bytes %s",
		Bytes(s.PredictedBytes), a.TimeToArchive, Bytes(capB)), false
}

// statLookup finds entries' stats by name, building the index on the first
// question only (most passes plan no job).
// refOf is how a job finds a planned input again: its identity, and its size
// and mtime as the scan saw them (a changed file is not acted on).
func refOf(seg model.Segment) fsx.FileRef {
	return fsx.FileRef{Name: seg.Name, Dev: seg.ID.Dev, Ino: seg.ID.Ino, Gen: seg.ID.Gen, Size: seg.Size, MtimeNs: seg.MtimeNs}
}

// Summary is the one-line state for sd_notify STATUS= and the cycle log.
func Summary(r *Report) (streams, segments int, hot int64, actions int) {
	for _, s := range r.Streams {
		streams++
		segments += s.SegmentCount
		hot += s.HotBytes
		actions += len(s.Actions)
	}
	return
}

// logReport logs one line per cycle and one line per action, at info when the
// decision is new and at debug when it repeats the previous cycle's.
func (d *Daemon) logReport(r *Report) {
	streams, segs, hot, actions := Summary(r)
	d.log.Debug("pass", zap.Int("streams", streams), zap.Int("segments", segs), zap.Int64("hot_bytes", hot),
		zap.Float64("load", r.Load), zap.Int("actions", actions), zap.Int("streams_reread", r.reread),
		zap.Int("streams_verified", r.verified), zap.Int("streams_reused", r.reused))
	for _, s := range r.Streams {
		if s.Error != "" {
			if d.prev[s.Name] != "err:"+s.Error {
				d.log.Warn("cannot scan stream", zap.String("stream", s.Name), zap.String("dir", s.Dir), zap.String("error", s.Error))
			}
			d.prev[s.Name] = "err:" + s.Error
			continue
		}
		d.logTransitions(s)
		var b strings.Builder
		for _, a := range s.Actions {
			fmt.Fprintf(&b, "%s %q %q;", a.Kind, a.Segments, a.Output)
		}
		key := b.String()
		lvl := zap.InfoLevel
		if d.prev[s.Name] == key {
			lvl = zap.DebugLevel
		}
		d.prev[s.Name] = key
		for _, a := range s.Actions {
			d.log.Check(lvl, "decided "+a.Kind).Write(zap.String("stream", s.Name), zap.String("action", a.Kind),
				zap.Strings("segments", a.Segments), zap.String("output", a.Output), zap.String("reason", a.Reason),
				zap.Float64("growth_rate", s.GrowthRate), zap.Float64("predicted_bytes", s.PredictedBytes),
				zap.Float64("priority", s.Priority), zap.Float64("load", r.Load))
		}
	}
}

// logTransitions logs, once when it starts and once when it ends, a stream
// over its cap with nothing archivable (warn) and a deferral (info).
func (d *Daemon) logTransitions(s StreamReport) {
	if s.OverCap != d.overCap[s.Name] {
		d.overCap[s.Name] = s.OverCap
		if s.OverCap {
			d.log.Warn("over max_hot_bytes and nothing can be archived", zap.String("stream", s.Name),
				zap.Int64("hot_bytes", s.HotBytes), zap.Int64("cap_bytes", s.CapBytes), zap.Strings("why", s.Notes))
		} else {
			d.log.Info("no longer over max_hot_bytes with nothing archivable", zap.String("stream", s.Name),
				zap.Int64("hot_bytes", s.HotBytes), zap.Int64("cap_bytes", s.CapBytes))
		}
	}
	if deferring := len(s.Deferred) > 0; deferring != d.deferring[s.Name] {
		d.deferring[s.Name] = deferring
		if deferring {
			reasons := make([]string, 0, len(s.Deferred))
			for _, a := range s.Deferred {
				reasons = append(reasons, a.Kind+" "+strings.Join(a.Segments, " ")+": "+a.Reason)
			}
			d.log.Info("actions deferred (logged again when they run)", zap.String("stream", s.Name),
				zap.Int("deferred", len(s.Deferred)), zap.Strings("reasons", reasons))
		} else {
			d.log.Info("no action deferred any more", zap.String("stream", s.Name))
		}
	}
}

func (d *Daemon) status(r *Report) string {
	streams, segs, hot, actions := Summary(r)
	st := fmt.Sprintf("STATUS=%d streams, %d segments, %s hot, load %.2f, %d actions planned",
		streams, segs, Bytes(float64(hot)), r.Load, actions)
	for _, p := range sortedTiers(d.tiers) {
		if msg := d.tiers[p].status(); msg != "" {
			st += "; " + msg
		}
	}
	if d.journalErr != nil {
		st += "; merging and archival OFF: intent journal unusable"
	}
	return st
}

func sortedTiers(m map[string]*coldTier) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sortedDirs is for stable logs.
func sortedDirs(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
