package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/logcompactd/logcompactd/internal/archiver"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/loadprobe"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/scanner"
)

// Once recovers unfinished operations, makes one pass, runs the merges it
// decides, logs everything and saves the growth history.
func (d *Daemon) Once() (*Report, error) {
	d.probeTiers()
	rerr := d.recover(true)
	d.probe.Sample()
	r := d.Pass(nil, nil)
	d.sweepAtStart()
	d.logReport(r)
	d.act()
	d.exec.wait()
	d.drain()
	// Its one pass is over: the scan and the snapshot (at 100,000 segments
	// two thirds of the heap) are collected before the history is encoded, so
	// that the encoding reuses their memory instead of faulting in ~12 MB
	// more (a tenth of a fresh once, and its peak).
	d.forgetPass()
	runtime.GC()
	err := errors.Join(rerr, d.journalFailure(), d.SaveHistory())
	d.onceSummary(r, err)
	return r, err
}

// onceSummary is the one line every `once` ends with: what it decided, did,
// held back and could not do, so that a timer's journal always tells.
func (d *Daemon) onceSummary(r *Report, err error) {
	decided, deferred, overCap, scanErr := 0, 0, 0, 0
	var why []string
	for _, s := range r.Streams {
		decided += len(s.Actions)
		deferred += len(s.Deferred)
		if s.OverCap {
			overCap++
		}
		if s.Error != "" {
			scanErr++
		}
		for _, a := range s.Deferred {
			why = append(why, s.Name+": "+a.Kind+" "+strings.Join(a.Segments, " ")+": "+a.Reason)
		}
	}
	t := d.exec.tallies()
	fields := []zap.Field{zap.Int("streams", len(r.Streams)), zap.Int("decided", decided),
		zap.Int("merged", t["compact ok"]), zap.Int("merges_abandoned", t["compact abandoned"]),
		zap.Int("merges_failed", t["compact failed"]), zap.Int("archived", t["archive ok"]),
		zap.Int("archivals_abandoned", t["archive abandoned"]), zap.Int("archivals_failed", t["archive failed"]),
		zap.Int("deferred", deferred), zap.Strings("deferred_because", why), zap.Int("streams_over_cap_unarchivable", overCap),
		zap.Int("streams_not_scanned", scanErr)}
	lvl := zap.InfoLevel
	if err != nil || overCap > 0 || scanErr > 0 || t["compact failed"]+t["archive failed"] > 0 {
		lvl = zap.WarnLevel
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
	}
	d.log.Check(lvl, "once done").Write(fields...)
}

// Recover runs recovery of the intent journal (before the first scan), then
// compacts the journal. Errors are logged loudly and returned.
func (d *Daemon) Recover() error {
	err := d.recover(true)
	d.sweep(nil)
	return err
}

// recover recovers the ops no running job owns. At start it also reminds of
// ops still blocked; run calls it again now and then (recoverLater), quietly
// for those, so that an op left pending (its cold dir was down, a crash hid a
// segment under a temporary name) does not wait for a restart. The temporary
// files no op explains are swept after the first pass (sweepAtStart).
func (d *Daemon) recover(atStart bool) error {
	if d.journal == nil || d.ops == nil || d.journalErr != nil {
		return nil
	}
	defer d.closeOpened()
	st, err := d.ops.Recover(d.resolver())
	if st.RolledBack+st.Finished+st.Inactive+st.Stuck > 0 {
		d.log.Info("recovered unfinished operations", zap.Int("rolled_back", st.RolledBack),
			zap.Int("finished", st.Finished), zap.Int("inactive", st.Inactive), zap.Int("stuck", st.Stuck))
	}
	for _, op := range st.Blocked {
		if !atStart {
			break
		}
		// Reported at error when it first happened; a reminder at each start.
		d.log.Warn("committed operation still blocked: its inputs are kept out of every run until resolved",
			zap.String("stream", op.Stream), zap.Uint64("op", op.ID), zap.String("kind", string(op.Kind)),
			zap.ByteString("output", []byte(op.Output)), zap.String("reason", op.Blocked))
	}
	if err != nil {
		d.log.Error("recovery left operations unfinished", zap.Error(err))
		return err
	}
	if err := d.journal.Compact(1 << 20); err != nil {
		d.log.Warn("cannot compact the intent journal", zap.Error(err))
	}
	return nil
}

// sweepAtStart removes the temporary files no op explains (sweep), after the
// first pass of a process and before it acts (the ops it starts make temporary
// files the sweep's journal did not know). A managed dir that pass listed
// whole without a temporary name in it is not listed again: at 1,000 dirs
// that second listing of every dir was a seventh of a fresh `once`. The
// files it removes are invisible to a scan (fsx.IsTemp), so the pass saw
// what it would have seen after the sweep.
func (d *Daemon) sweepAtStart() { d.sweep(listedWithoutTemps(d.last)) }

// listedWithoutTemps is the managed dirs the scans listed whole without a
// temporary name in them; of a dir two streams share, both must say so.
func listedWithoutTemps(scans map[string]scanner.Result) map[string]bool {
	clean := map[string]bool{}
	for _, r := range scans {
		if r.NoTemps {
			clean[filepath.Clean(r.Stream.Dir)] = true
		}
	}
	for _, r := range scans {
		if !r.NoTemps {
			delete(clean, filepath.Clean(r.Stream.Dir))
		}
	}
	return clean
}

// sweep removes the orphaned temporary files (removeOrphanTemps) when the
// journal is usable, in every managed dir but those in listed.
func (d *Daemon) sweep(listed map[string]bool) {
	if d.journal == nil || d.ops == nil || d.journalErr != nil {
		return
	}
	d.removeOrphanTemps(listed)
}

// removeOrphanTemps removes, at start and after recovery, the temporary files
// in the managed dirs (but those in listed: seen without one) and the
// streams' cold subdirs that no pending op explains (their journal was lost
// with a deleted state dir, say): staged outputs and files taken to be
// deleted go; a segment taken to be moved (the only copy of its bytes) is
// left and reported.
func (d *Daemon) removeOrphanTemps(listed map[string]bool) {
	explained := map[string]bool{} // dir path + "/" + temp name
	ids := map[fsx.FileID]bool{}
	for _, op := range d.journal.Pending() {
		for _, dir := range []string{op.Dir, op.Dest} {
			if dir != "" && op.Temp != "" {
				explained[filepath.Clean(dir)+"/"+op.Temp] = true
			}
		}
		for _, in := range op.Inputs {
			ids[fsx.FileID{Dev: in.Dev, Ino: in.Ino}] = true
		}
		if op.Created != nil {
			ids[fsx.FileID{Dev: op.Created.Dev, Ino: op.Created.Ino}] = true
		}
	}
	clean := func(stream string, dir *fsx.Dir) {
		removed, left, err := dir.RemoveOrphanTemps(func(name string, st fsx.Stat) bool {
			return explained[filepath.Clean(dir.Path())+"/"+name] || ids[fsx.FileID{Dev: st.Dev, Ino: st.Ino}]
		})
		for _, n := range removed {
			d.log.Warn("removed a temporary file no journaled operation explains", zap.String("stream", stream),
				zap.String("dir", dir.Path()), zap.ByteString("file", []byte(n)))
		}
		for _, n := range left {
			d.log.Error("a temporary file no journaled operation explains may hold a segment's only copy: left for the operator",
				zap.String("stream", stream), zap.String("dir", dir.Path()), zap.ByteString("file", []byte(n)))
		}
		if err != nil {
			d.log.Warn("cannot remove temporary files", zap.String("dir", dir.Path()), zap.Error(err))
		}
	}
	// The dirs are opened one after the other here (an Opener is not shared)
	// and listed by a few goroutines: at 1,000 dirs, listing them one at a
	// time was a tenth of a fresh `once`.
	var g errgroup.Group
	g.SetLimit(2 * runtime.GOMAXPROCS(0))
	sweep := func(stream string, dir *fsx.Dir) {
		g.Go(func() error {
			clean(stream, dir)
			return dir.Close()
		})
	}
	var opener fsx.Opener
	swept := map[string]bool{}     // streams may share a dir: it is swept once, not by two goroutines at once
	roots := map[string]*fsx.Dir{} // a cold dir, opened once for all its streams' subdirs
	for _, s := range d.cfg.Streams {
		if dir := filepath.Clean(s.Dir); !swept[dir] && !listed[dir] {
			swept[dir] = true
			if hot, err := opener.Open(dir); err == nil {
				sweep(s.Name, hot)
			}
		}
		root, ok := roots[s.Archive.ColdDir]
		if !ok {
			root, _ = opener.Open(s.Archive.ColdDir) // nil: not a local dir, or not there yet
			roots[s.Archive.ColdDir] = root
		}
		if root != nil {
			if sub, err := root.OpenSub(s.Name); err == nil {
				sweep(s.Name, sub)
			}
		}
	}
	opener.Close()
	_ = g.Wait()
	for _, root := range roots {
		if root != nil {
			root.Close()
		}
	}
}

func (d *Daemon) keepInactive(stream string) time.Duration {
	for _, s := range d.cfg.Streams {
		if s.Name == stream {
			return s.Compaction.KeepInactive
		}
	}
	return 0
}

// resolver gives the operation layer the directories an op journaled — only
// configured ones, each opened anew (the scanner's handles are only read).
func (d *Daemon) resolver() fsx.Resolver {
	return fsx.Resolver{
		Src: func(path string) (*fsx.Dir, error) {
			if _, err := d.scanner.Dir(path); err != nil { // refuses a dir the config does not name
				return nil, err
			}
			return d.opened(fsx.OpenDir(path))
		},
		Dst: d.coldPublisher,
		KeepUntil: func(op fsx.Op) int64 {
			if op.Commit == nil || op.Kind != fsx.KindMerge {
				return 0
			}
			return op.Commit.AtNs + int64(d.keepInactive(op.Stream))
		},
	}
}

// opened keeps a directory a recovery opened until the pass that opened it is
// over (closeOpened).
func (d *Daemon) opened(dir *fsx.Dir, err error) (*fsx.Dir, error) {
	if err == nil {
		d.recoverDirs = append(d.recoverDirs, dir)
	}
	return dir, err
}

func (d *Daemon) closeOpened() {
	for _, dir := range d.recoverDirs {
		dir.Close()
	}
	d.recoverDirs = nil
}

// journalFailure is non-nil once a journal append has failed, or once the state
// dir is no longer the directory the daemon opened (deleted, or replaced): from
// then on no destructive step is taken until a restart has recovered (the
// journal of a deleted state dir would vanish with the process, and with it
// the record of what is half done).
func (d *Daemon) journalFailure() error {
	if d.journal == nil {
		return nil
	}
	err := d.journal.Err()
	if err == nil && d.state != nil {
		err = d.state.StillAt(d.cfg.StateDir)
		if err != nil && d.journalErr == nil {
			if rerr := d.recreateState(); rerr == nil {
				d.log.Warn("the state dir was deleted under the daemon: recreated it and wrote the intent journal anew from memory",
					zap.String("state_dir", d.cfg.StateDir), zap.NamedError("was", err))
				err = nil
			} else {
				err = errors.Join(err, rerr)
			}
		}
		if err != nil {
			err = fmt.Errorf("state dir: %w", err)
		}
	}
	if err != nil && d.journalErr == nil {
		d.journalErr = err
		d.log.Error("intent journal unusable: merging and archival are OFF until a restart recovers", zap.Error(err))
	}
	return err
}

// recreateState makes a state dir anew where the old one was deleted (not
// where another directory now stands), takes the lock there and writes the
// journal's pending ops into it: a committed merge whose inputs wait for
// keep_inactive, or a job in flight, is then still known after a restart.
func (d *Daemon) recreateState() error {
	if _, err := os.Lstat(d.cfg.StateDir); err == nil {
		return fmt.Errorf("%s is another directory now: refusing to use it", d.cfg.StateDir)
	}
	if err := fsx.EnsureStateDir(d.cfg.StateDir); err != nil {
		return err
	}
	sd, err := fsx.OpenDir(d.cfg.StateDir)
	if err != nil {
		return err
	}
	lock, err := sd.Lock(lockName)
	if err != nil {
		sd.Close()
		return err
	}
	if err := d.journal.MoveTo(sd); err != nil {
		lock.Close()
		sd.Close()
		return err
	}
	d.lock.Close()
	d.state.Close()
	d.state, d.lock = sd, lock
	return nil
}

// act submits the merges the last pass decided, and finishes committed merges
// whose keep_inactive has passed.
func (d *Daemon) act() {
	if d.exec == nil || d.journal == nil || d.journalFailure() != nil || d.journalErr != nil {
		return
	}
	d.env.Pacer.SetLoad(d.probe.Load())
	chains := map[string][]plannedArchive{}
	for _, pa := range d.archives { // in stream order, per stream
		chains[pa.stream.Name] = append(chains[pa.stream.Name], pa)
	}
	for _, s := range d.cfg.Streams {
		d.exec.submitArchives(s, chains[s.Name], d.tiers[tierKey(s.Archive.ColdDir)])
	}
	for _, pm := range d.planned {
		d.exec.submit(pm)
	}
	d.retainCold()
	if d.anyKeepInactive() {
		kept := func(op fsx.Op) bool { return op.InputsInactive() && d.keepInactive(op.Stream) > 0 }
		if _, err := d.ops.FinishDue(d.resolver(), kept); err != nil {
			d.log.Error("cannot finish inactive merge inputs", zap.Error(err))
		}
		d.closeOpened()
	}
}

// retainCold applies cold_max_age and cold_max_bytes to each stream's cold subdir.
func (d *Daemon) retainCold() {
	now := d.opts.Now()
	for _, s := range d.cfg.Streams {
		a := s.Archive
		if a.ColdMaxAge <= 0 && a.ColdMaxBytes <= 0 {
			continue
		}
		sub, err := d.tiers[tierKey(a.ColdDir)].stream(now, s.Name)
		if err != nil {
			continue
		}
		gone, err := archiver.Retain(sub, now, a.ColdMaxAge, int64(a.ColdMaxBytes), s.Order == "mtime")
		sub.Close()
		for _, f := range gone {
			d.log.Info("deleted from cold by retention", zap.String("stream", s.Name), zap.String("action", "retain"),
				zap.ByteString("segment", []byte(f.Name)), zap.Int64("bytes", f.Size), zap.Time("mtime", f.Mtime))
		}
		if err != nil {
			d.log.Warn("cold retention incomplete", zap.String("stream", s.Name), zap.Error(err))
		}
	}
}

func (d *Daemon) anyKeepInactive() bool {
	for _, s := range d.cfg.Streams {
		if s.Compaction.KeepInactive > 0 {
			return true
		}
	}
	return false
}

// drain applies finished jobs' outcomes: a merge output is the daemon's own, so
// its bytes are not growth.
func (d *Daemon) drain() {
	if d.exec == nil {
		return
	}
	outs := d.exec.take()
	d.adoptStaged() // after take: a job stages its output before it reports
	for _, o := range outs {
		if o.ok {
			d.rates().Adopt(o.output)
		}
		if o.discarded != (model.SegmentID{}) {
			d.rates().Unadopt(o.discarded)
		}
	}
}

// adoptStaged adopts the merge outputs staged since the last call: whenever a
// scan sees one, it is not bytes appended to the stream.
func (d *Daemon) adoptStaged() {
	for _, id := range d.exec.takeStaged() {
		d.rates().Adopt(id)
	}
}

// Plan makes one pass and returns it, with a row per segment, without saving
// anything. The rows are the pass's segment lists themselves (a copy was 12 MB
// at 100,000 segments), so the daemon lets go of its scans after it: a later
// pass, whichever dirs it re-reads, makes lists of its own and classifies
// none of the rows again.
func (d *Daemon) Plan() *Report {
	d.probe.Sample()
	d.detail = true
	rep := d.Pass(nil, nil)
	d.forgetPass()
	return rep
}

// debounce is how long fsnotify events are gathered into one rescan.
func debounce(c *config.Config) time.Duration {
	return min(max(c.ScanInterval/10, 10*time.Millisecond), time.Second)
}

// saveEvery bounds how often the growth history is written: every 10 scan
// intervals, 1 s to 5 min (it is also written on exit). Writing it costs ~0.1 s
// of CPU at 100,000 segments; a kill -9 loses at most this much history.
func saveEvery(c *config.Config) time.Duration {
	return min(max(10*c.ScanInterval, time.Second), 5*time.Minute)
}

// fullScanEvery is how often a tick re-reads every directory even when inotify
// reported nothing (a safety net for what inotify cannot see: writes through a
// shared mmap, a lost watch): 10 scan intervals, at most 10 minutes, never less
// than one interval (5 minutes at the default 30 s).
func fullScanEvery(c *config.Config) time.Duration {
	return min(10*c.ScanInterval, max(c.ScanInterval, 10*time.Minute))
}

// releaseMemory gives the heap a cycle grew back to the kernel: a re-read of
// every directory that built new lists (the first pass; later ones keep the
// lists of directories that hold the same files) or a history save makes
// about as much garbage as the daemon keeps (~25 MB at 100,000 segments), and
// the runtime keeps such pages resident up to its heap goal for a daemon that
// then sits idle. A forced collection and scavenge cost ~25 ms of CPU at
// 100,000 segments in 1,000 dirs (scratch benchmark). A variable: tests count
// the calls.
var releaseMemory = debug.FreeOSMemory

// Run makes passes every scan_interval and whenever fsnotify reports a change,
// until ctx ends; then it saves the history and returns nil. On a value from
// reload it calls load for a new config: an invalid one is logged and the old one
// kept. It notifies READY=1 after the first pass, STATUS= each cycle,
// RELOADING=1/READY=1 around reloads, and STOPPING=1.
func (d *Daemon) Run(ctx context.Context, reload <-chan struct{}, load func() (*config.Config, error)) error {
	d.probe.Start()
	w, err := scanner.NewWatcher(d.scanner.Dirs(), debounce(d.cfg), d.log)
	if err != nil {
		d.log.Warn("fsnotify unavailable; relying on the periodic scan", zap.Error(err))
	}
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	d.probeTiers()
	if err := d.recover(true); err != nil {
		d.log.Error("continuing with unfinished operations left as they are", zap.Error(err))
	}
	swept := false
	stopControl := d.serveControl(ctx)
	defer stopControl()
	var results <-chan struct{}
	if d.exec != nil {
		results = d.exec.ready
		defer d.exec.close()
	}
	lastFull := time.Time{}
	cycle := func(only, unchanged map[string]bool) {
		d.drain()
		if only == nil && unchanged == nil {
			lastFull = d.opts.Now()
		}
		r := d.Pass(only, unchanged)
		if !swept {
			d.sweepAtStart()
			swept = true
		}
		d.logReport(r)
		if only == nil && unchanged == nil && d.ops != nil && d.ops.Idle() > 0 {
			_ = d.recover(false) // logged inside
		}
		d.act()
		d.opts.Notify(d.status(r))
		d.writeTextfile(false)
		saved := false
		if d.opts.Now().Sub(d.saved) >= saveEvery(d.cfg) {
			if err := d.SaveHistory(); err != nil {
				d.log.Error("cannot save growth history", zap.Error(err)) // tried again next cycle
			} else {
				saved = true
			}
		}
		if w != nil {
			w.Ensure(d.scanner.Dirs())
		}
		if only == nil && unchanged == nil && r.reread > r.verified || saved {
			releaseMemory()
		}
	}
	if w != nil {
		w.Take() // the first pass is a full one, after the watches exist
	}
	cycle(nil, nil)
	d.opts.Notify("READY=1")
	d.log.Info("running", zap.Int("streams", len(d.cfg.Streams)), zap.Duration("scan_interval", d.cfg.ScanInterval),
		zap.String("state_dir", d.cfg.StateDir))

	tick := time.NewTicker(d.cfg.ScanInterval)
	defer tick.Stop()
	var watchdog <-chan time.Time
	if d.opts.Watchdog > 0 {
		wt := time.NewTicker(d.opts.Watchdog / 2)
		defer wt.Stop()
		watchdog = wt.C
		d.opts.Notify("WATCHDOG=1")
	}
	var events <-chan struct{}
	if w != nil {
		events = w.C()
	}
	for {
		select {
		case <-watchdog:
			d.opts.Notify("WATCHDOG=1")
		case <-d.opts.Stall:
			d.log.Warn("main loop stalled by the test hook")
			for { // stuck for good: only the watchdog (or SIGKILL) ends this
				time.Sleep(time.Hour)
			}
		case <-ctx.Done():
			d.opts.Notify("STOPPING=1")
			d.log.Info("stopping")
			if d.exec != nil {
				d.exec.close() // running merges stop at a safe point
				d.drain()
			}
			d.writeTextfile(true)
			return d.SaveHistory()
		case <-results:
			d.drain()
		case fn := <-d.asks:
			fn()
		case <-tick.C:
			// Every dir with no event since the last pass is known unchanged and not
			// re-read; the others, and every dir every fullScanEvery, are.
			var unchanged map[string]bool
			if w != nil {
				if quiet := w.Tick(); d.opts.Now().Sub(lastFull) < fullScanEvery(d.cfg) {
					unchanged = quiet
				}
			}
			cycle(nil, unchanged)
		case <-events:
			dirs, full := w.Take()
			if full {
				cycle(nil, nil)
			} else if len(dirs) > 0 {
				d.log.Debug("rescan on fsnotify", zap.Strings("dirs", sortedDirs(dirs)))
				cycle(dirs, nil)
			}
		case <-reload:
			d.opts.Notify("RELOADING=1")
			cfg, err := load()
			if err != nil {
				d.log.Error("reload: invalid config, keeping the old one", zap.Error(err))
			} else {
				if d.exec != nil {
					d.exec.wait() // jobs hold cloned dir fds; let them finish under the old config
					d.drain()
				}
				if cfg.Metrics.Listen != d.cfg.Metrics.Listen {
					d.log.Warn("reload: metrics.listen changes need a restart; keeping the old one", zap.String("listen", d.cfg.Metrics.Listen))
					cfg.Metrics.Listen = d.cfg.Metrics.Listen
				}
				d.apply(cfg)
				if w != nil {
					w.Close()
				}
				if w, err = scanner.NewWatcher(d.scanner.Dirs(), debounce(d.cfg), d.log); err != nil {
					d.log.Warn("fsnotify unavailable; relying on the periodic scan", zap.Error(err))
					events = nil
				} else {
					events = w.C()
				}
				tick.Reset(d.cfg.ScanInterval)
				d.log.Info("reloaded", zap.Int("streams", len(cfg.Streams)))
				if w != nil {
					w.Take()
				}
				cycle(nil, nil)
			}
			d.opts.Notify("READY=1")
		}
	}
}

// apply switches to a new, validated config, keeping growth history of streams
// that remain. The state dir is not changed by a reload (it holds the lock).
func (d *Daemon) apply(cfg *config.Config) {
	if cfg.StateDir != d.cfg.StateDir {
		d.log.Warn("reload: state_dir changes need a restart; keeping the old one", zap.String("state_dir", d.cfg.StateDir))
		cfg.StateDir = d.cfg.StateDir
	}
	keep := map[string]bool{}
	for _, s := range cfg.Streams {
		keep[s.Name] = true
	}
	d.rates().Retain(keep)
	d.rates().SetOptions(growthOptions(cfg))
	old := d.scanner
	d.scanner = scanner.New(cfg.Streams, scanner.Options{Logger: d.log})
	d.scanner.Inherit(old) // open-for-writing answers stay valid: re-taking 100,000 leases costs seconds
	old.Close()
	d.probe.Close()
	d.probe = loadprobe.New(loadprobe.Options{Enabled: cfg.Load.Enabled, Interval: cfg.Load.Interval, Logger: d.log})
	d.probe.Start()
	d.last = map[string]scanner.Result{}
	d.prev = map[string]string{}
	d.setTiers(cfg)
	d.cfg = cfg
	if d.env != nil {
		d.env.Pacer.SetMax(float64(cfg.Compaction.MaxRate), d.probe.Load())
	}
	if d.exec != nil {
		d.exec.resize(cfg.Compaction.Workers) // Run waited for every job before apply
	}
	d.metrics.configure(cfg) // streams and cold dirs may be gone; the next pass sets what is
}
