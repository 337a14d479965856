package scanner

import (
	"errors"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// Watcher turns fsnotify events into "rescan these directories" triggers. A burst
// of events (an actively written log produces one per append) is coalesced: the
// first event arms a timer of Debounce, and every event until it fires joins the
// same rescan. A queue overflow asks for a full rescan.
type Watcher struct {
	w        *fsnotify.Watcher
	log      *zap.Logger
	debounce time.Duration
	trigger  chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.Once

	mu struct {
		sync.Mutex
		dirty   map[string]bool
		full    bool
		armed   bool
		watched map[string]bool
		warned  map[string]bool
		timer   *time.Timer
	}
}

// NewWatcher starts watching dirs (missing ones are retried by Ensure).
func NewWatcher(dirs []string, debounce time.Duration, log *zap.Logger) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	w := &Watcher{w: fw, log: log, debounce: debounce, trigger: make(chan struct{}, 1), done: make(chan struct{})}
	w.mu.dirty = map[string]bool{}
	w.mu.watched = map[string]bool{}
	w.mu.warned = map[string]bool{}
	w.Ensure(dirs)
	w.wg.Add(1)
	go w.loop()
	return w, nil
}

// Ensure adds watches for dirs not watched yet (a dir created after start). A dir
// whose watch is new is marked dirty: whatever changed in it before the watch
// existed is seen by the rescan that follows.
func (w *Watcher) Ensure(dirs []string) {
	var added []string
	w.mu.Lock()
	for _, d := range dirs {
		if w.mu.watched[d] {
			continue
		}
		if err := w.w.Add(d); err != nil {
			// Missing for now (the periodic scan reports it), or the watch limit
			// (fs.inotify.max_user_watches) is reached: the dir is then re-read
			// every tick, which costs CPU at scale, so say so once.
			if !errors.Is(err, fs.ErrNotExist) && !w.mu.warned[d] {
				w.mu.warned[d] = true
				w.log.Warn("cannot watch directory: re-reading it every scan_interval", zap.String("dir", d), zap.Error(err))
			}
			continue
		}
		delete(w.mu.warned, d)
		w.mu.watched[d] = true
		added = append(added, d)
	}
	w.mu.Unlock()
	for _, d := range added {
		w.mark(d, false)
	}
}

// Tick is Take for a periodic pass: it resets what is pending and returns the
// watched directories that had no event since the previous Take or Tick — nothing
// in them changed, as far as inotify can tell — or nil when everything must be
// re-read (a queue overflow or watch error). inotify does not see writes through
// a shared mmap, nor changes made on another host's view of a network
// filesystem, so callers still re-read everything now and then.
func (w *Watcher) Tick() (quiet map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	dirty, full := w.takeLocked()
	if full {
		return nil
	}
	quiet = map[string]bool{}
	for d := range w.mu.watched {
		if !dirty[d] {
			quiet[d] = true
		}
	}
	return quiet
}

// C fires (coalesced) when some directory needs a rescan; call Take to learn which.
func (w *Watcher) C() <-chan struct{} { return w.trigger }

// Take returns the directories to rescan, or full=true for all of them, and resets.
func (w *Watcher) Take() (dirs map[string]bool, full bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.takeLocked()
}

func (w *Watcher) takeLocked() (dirs map[string]bool, full bool) {
	dirs, full = w.mu.dirty, w.mu.full
	w.mu.dirty, w.mu.full = map[string]bool{}, false
	return dirs, full
}

func (w *Watcher) fire() {
	w.mu.Lock()
	w.mu.armed = false
	w.mu.Unlock()
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

func (w *Watcher) mark(dir string, full bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if full {
		w.mu.full = true
	} else {
		w.mu.dirty[dir] = true
	}
	if !w.mu.armed {
		w.mu.armed = true
		if w.mu.timer == nil {
			w.mu.timer = time.AfterFunc(w.debounce, w.fire)
		} else {
			w.mu.timer.Reset(w.debounce)
		}
	}
}

func (w *Watcher) loop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			if fsx.IsTemp(filepath.Base(ev.Name)) {
				continue
			}
			dir := filepath.Dir(ev.Name)
			if ev.Has(fsnotify.Remove) && w.isWatched(ev.Name) {
				// The watched directory itself went away: forget it so Ensure re-adds it.
				w.mu.Lock()
				delete(w.mu.watched, ev.Name)
				w.mu.Unlock()
				dir = ev.Name
			}
			w.mark(dir, false)
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("inotify queue overflowed: rescanning every directory")
			} else {
				w.log.Warn("fsnotify error: rescanning every directory", zap.Error(err))
			}
			w.mark("", true)
		}
	}
}

func (w *Watcher) isWatched(d string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.watched[d]
}

// Close stops the watcher and waits for its goroutine. It is safe to call twice.
func (w *Watcher) Close() error {
	var err error
	w.closeMu.Do(func() {
		close(w.done)
		err = w.w.Close()
		w.wg.Wait()
		w.mu.Lock()
		if w.mu.timer != nil {
			w.mu.timer.Stop()
		}
		w.mu.Unlock()
	})
	return err
}
