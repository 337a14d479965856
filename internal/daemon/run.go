package daemon

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/loadprobe"
	"github.com/logcompactd/logcompactd/internal/scanner"
)

// Once makes one pass, logs its decisions and saves the growth history.
func (d *Daemon) Once() (*Report, error) {
	d.probe.Sample()
	r := d.Pass(nil)
	d.logReport(r)
	return r, d.SaveHistory()
}

// Plan makes one pass and returns it without saving anything.
func (d *Daemon) Plan() *Report {
	d.probe.Sample()
	return d.Pass(nil)
}

// debounce is how long fsnotify events are gathered into one rescan.
func debounce(c *config.Config) time.Duration {
	return min(max(c.ScanInterval/10, 10*time.Millisecond), time.Second)
}

// saveEvery bounds how often the growth history is written.
func saveEvery(c *config.Config) time.Duration {
	return min(max(c.ScanInterval, time.Second), 5*time.Minute)
}

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
	cycle := func(only map[string]bool) {
		r := d.Pass(only)
		d.logReport(r)
		d.opts.Notify(d.status(r))
		if d.opts.Now().Sub(d.saved) >= saveEvery(d.cfg) {
			if err := d.SaveHistory(); err != nil {
				d.log.Error("cannot save growth history", zap.Error(err))
			}
		}
		if w != nil {
			w.Ensure(d.scanner.Dirs())
		}
	}
	cycle(nil)
	d.opts.Notify("READY=1")
	d.log.Info("running", zap.Int("streams", len(d.cfg.Streams)), zap.Duration("scan_interval", d.cfg.ScanInterval),
		zap.String("state_dir", d.cfg.StateDir))

	tick := time.NewTicker(d.cfg.ScanInterval)
	defer tick.Stop()
	var events <-chan struct{}
	if w != nil {
		events = w.C()
	}
	for {
		select {
		case <-ctx.Done():
			d.opts.Notify("STOPPING=1")
			d.log.Info("stopping")
			return d.SaveHistory()
		case <-tick.C:
			if w != nil {
				w.Take() // a full pass covers whatever was pending
			}
			cycle(nil)
		case <-events:
			dirs, full := w.Take()
			if full {
				cycle(nil)
			} else if len(dirs) > 0 {
				d.log.Debug("rescan on fsnotify", zap.Strings("dirs", sortedDirs(dirs)))
				cycle(dirs)
			}
		case <-reload:
			d.opts.Notify("RELOADING=1")
			cfg, err := load()
			if err != nil {
				d.log.Error("reload: invalid config, keeping the old one", zap.Error(err))
			} else {
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
				cycle(nil)
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
	d.tracker.Retain(keep)
	d.tracker.SetOptions(growthOptions(cfg))
	d.scanner.Close()
	d.scanner = scanner.New(cfg.Streams, scanner.Options{Logger: d.log})
	d.probe.Close()
	d.probe = loadprobe.New(loadprobe.Options{Enabled: cfg.Load.Enabled, Interval: cfg.Load.Interval, Logger: d.log})
	d.probe.Start()
	d.last = map[string]scanner.Result{}
	d.prev = map[string]string{}
	d.cfg = cfg
}
