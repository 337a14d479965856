// Package scanner turns configured stream directories into observations: the
// segments of each stream in stream order, with identity, size, mtime and whether
// some process holds them open for writing. It reads through directory fds
// (package fsx) and never follows a symlink, never opens a FIFO or device, and
// never blocks on one. It changes nothing on disk.
//
// fsnotify (watch.go) only says "look again at this directory soon"; sizes always
// come from statx.
package scanner

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
)

// Options tune the scanner. The zero value works.
type Options struct {
	Logger *zap.Logger
	// LeaseRecheck is how long an "is it open for writing?" answer for an unchanged
	// file is reused; default 10m. Jobs take their own lease before acting, so this
	// only bounds how stale plan's "open for writing" may be (re-taking 100,000
	// leases costs ~1.5 s of CPU).
	LeaseRecheck time.Duration
	// ProcRoot is where the /proc fallback for filesystems without leases looks;
	// default "/proc".
	ProcRoot string
	// StatWorkers bounds the statx calls in flight; default 2×GOMAXPROCS.
	StatWorkers int
}

// Entry is one segment found by a scan.
type Entry struct {
	Name    string
	Stat    fsx.Stat
	Writing bool // some process holds it open for writing (or we could not tell: fail closed)
}

// ID is the segment's identity.
func (e Entry) ID() model.SegmentID {
	return model.SegmentID{Dev: e.Stat.Dev, Ino: e.Stat.Ino, Gen: e.Stat.Btime}
}

// Result is the scan of one stream.
type Result struct {
	Stream  config.Stream
	At      time.Time
	Entries []Entry  // in stream order, oldest first
	Foreign []string // names matching the pattern that are not single-link regular files on the dir's device
	FS      model.FSInfo
	Err     error // the directory could not be opened or listed; Entries is empty
}

type leaseKey = fsx.FileID

type leaseAnswer struct {
	size    int64
	mtime   time.Time
	ctime   time.Time
	writing bool
	until   time.Time
}

// Scanner scans a fixed set of streams. It is safe for use by one goroutine at a time.
type Scanner struct {
	opts    Options
	log     *zap.Logger
	streams []config.Stream
	dirs    map[string]*fsx.Dir // by cleaned path; nil value until it opens
	leases  map[leaseKey]leaseAnswer
	warned  map[string]string // dir/name -> what was logged, so each is logged once
}

// New returns a scanner for the given streams. Directories are opened lazily, and
// reopened when they were missing, so a dir created after start is picked up.
func New(streams []config.Stream, opts Options) *Scanner {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.LeaseRecheck <= 0 {
		opts.LeaseRecheck = 10 * time.Minute
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.StatWorkers <= 0 {
		opts.StatWorkers = 2 * runtime.GOMAXPROCS(0)
	}
	s := &Scanner{opts: opts, log: opts.Logger, streams: streams,
		dirs: map[string]*fsx.Dir{}, leases: map[leaseKey]leaseAnswer{}, warned: map[string]string{}}
	return s
}

// Close releases the directory fds. It is safe to call twice.
func (s *Scanner) Close() error {
	var errs []error
	for p, d := range s.dirs {
		if d != nil {
			errs = append(errs, d.Close())
		}
		delete(s.dirs, p)
	}
	return errors.Join(errs...)
}

// Dirs lists the distinct directories of the configured streams.
func (s *Scanner) Dirs() []string {
	seen := map[string]bool{}
	var out []string
	for _, st := range s.streams {
		d := filepath.Clean(st.Dir)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

func (s *Scanner) dir(path string) (*fsx.Dir, error) {
	if d := s.dirs[path]; d != nil {
		// A directory deleted (and perhaps recreated) under us has no links left:
		// reopen by path, still refusing a symlink.
		var st fsx.Stat
		st, err := d.Stat(".")
		if err == nil && st.Nlink > 0 {
			return d, nil
		}
		d.Close()
		delete(s.dirs, path)
	}
	d, err := fsx.OpenDir(path)
	if err != nil {
		return nil, err
	}
	s.dirs[path] = d
	return d, nil
}

// Scan scans the streams whose directory is in only (all streams when only is nil),
// as of now (used for the quiesce shortcut of the lease check).
func (s *Scanner) Scan(now time.Time, only map[string]bool) []Result {
	var out []Result
	listed := map[string][]string{}
	listErr := map[string]error{}
	for _, st := range s.streams {
		path := filepath.Clean(st.Dir)
		if only != nil && !only[path] {
			continue
		}
		res := Result{Stream: st, At: now}
		d, err := s.dir(path)
		if err != nil {
			res.Err = err
			out = append(out, res)
			continue
		}
		names, ok := listed[path]
		if !ok {
			names, err = d.Names()
			listed[path], listErr[path] = names, err
		}
		if err := listErr[path]; err != nil {
			res.Err = err
			out = append(out, res)
			continue
		}
		total, avail, err := d.Statfs()
		if err == nil {
			res.FS = model.FSInfo{Dev: d.Dev(), Total: total, Avail: avail}
		}
		s.scanStream(d, names, &res)
		out = append(out, res)
	}
	s.pruneLeases(now)
	return out
}

func (s *Scanner) scanStream(d *fsx.Dir, names []string, res *Result) {
	var matched []string
	for _, n := range names {
		if fsx.IsTemp(n) {
			continue
		}
		if m, _ := filepath.Match(res.Stream.Pattern, n); m {
			matched = append(matched, n)
		}
	}
	stats := make([]fsx.Stat, len(matched))
	errs := make([]error, len(matched))
	s.statAll(d, matched, stats, errs)

	seenHere := map[string]bool{}
	for i, n := range matched {
		key := d.Path() + "/" + n
		seenHere[key] = true
		if errs[i] != nil {
			continue // vanished between listing and stat: it is simply gone
		}
		st := stats[i]
		var why string
		switch {
		case st.Kind != fsx.Regular:
			why = st.Kind.String()
		case st.Nlink != 1:
			why = "hard link"
		case !d.OnSameMount(st):
			why = "another mount"
		}
		if why != "" {
			res.Foreign = append(res.Foreign, n)
			if s.warned[key] != why {
				s.warned[key] = why
				s.log.Warn("skipping a file named like a segment", zap.String("stream", res.Stream.Name),
					zap.String("dir", d.Path()), zap.ByteString("segment", []byte(n)), zap.String("reason", why))
			}
			continue
		}
		delete(s.warned, key)
		res.Entries = append(res.Entries, Entry{Name: n, Stat: st})
	}
	for k := range s.warned {
		if filepath.Dir(k) == d.Path() && !seenHere[k] {
			delete(s.warned, k)
		}
	}
	Sort(res.Entries, res.Stream.Order)
	s.checkWriters(d, res)
}

// statAll stats names with a bounded pool of workers (a huge directory is split).
func (s *Scanner) statAll(d *fsx.Dir, names []string, stats []fsx.Stat, errs []error) {
	const chunk = 1024
	if len(names) <= chunk {
		for i, n := range names {
			stats[i], errs[i] = d.Stat(n)
		}
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.opts.StatWorkers)
	for lo := 0; lo < len(names); lo += chunk {
		hi := min(lo+chunk, len(names))
		sem <- struct{}{}
		wg.Add(1)
		go func(lo, hi int) {
			defer func() { <-sem; wg.Done() }()
			for i := lo; i < hi; i++ {
				stats[i], errs[i] = d.Stat(names[i])
			}
		}(lo, hi)
	}
	wg.Wait()
}

// Sort puts entries in stream order: natural name order, or mtime (then name).
// Names in a directory are unique, so the order is total and an unstable sort
// gives the same result as a stable one, with O(n log n) moves instead of
// O(n log² n) (it matters at 100,000 entries).
func Sort(es []Entry, order string) {
	if order == "mtime" {
		slices.SortFunc(es, func(a, b Entry) int {
			if c := a.Stat.Mtime.Compare(b.Stat.Mtime); c != 0 {
				return c
			}
			return model.NaturalCompare(a.Name, b.Name)
		})
		return
	}
	slices.SortFunc(es, func(a, b Entry) int { return model.NaturalCompare(a.Name, b.Name) })
}

// checkWriters marks entries some process holds open for writing. The newest
// segment and segments modified within quiesce are active anyway and not checked.
// Answers for unchanged files are reused for LeaseRecheck. When leases are not
// available it falls back to /proc; when that fails too it fails closed.
func (s *Scanner) checkWriters(d *fsx.Dir, res *Result) {
	var procWriters map[fsx.FileID]bool
	procTried := false
	quiesce := res.Stream.Compaction.Quiesce
	for i := range res.Entries {
		e := &res.Entries[i]
		if i == len(res.Entries)-1 || res.At.Sub(e.Stat.Mtime) < quiesce {
			continue
		}
		key := leaseKey{Dev: e.Stat.Dev, Ino: e.Stat.Ino}
		if a, ok := s.leases[key]; ok && res.At.Before(a.until) && a.size == e.Stat.Size &&
			a.mtime.Equal(e.Stat.Mtime) && a.ctime.Equal(e.Stat.Ctime) {
			e.Writing = a.writing
			continue
		}
		writing, err := d.HeldForWrite(e.Name, e.Stat)
		if errors.Is(err, fsx.ErrLeaseUnsupported) {
			if !procTried {
				procTried = true
				procWriters, err = fsx.ProcWriters(s.opts.ProcRoot)
				if err != nil {
					s.log.Warn("cannot tell open-for-writing files: treating them as active", zap.Error(err))
				}
			}
			writing = procWriters == nil || procWriters[key]
		} else if err != nil {
			writing = true // fail closed: what we cannot check, we do not touch
		}
		e.Writing = writing
		jitter := time.Duration(e.Stat.Ino%16) * s.opts.LeaseRecheck / 16
		s.leases[key] = leaseAnswer{size: e.Stat.Size, mtime: e.Stat.Mtime, ctime: e.Stat.Ctime,
			writing: writing, until: res.At.Add(s.opts.LeaseRecheck + jitter)}
	}
}

func (s *Scanner) pruneLeases(now time.Time) {
	for k, a := range s.leases {
		if now.After(a.until.Add(s.opts.LeaseRecheck)) {
			delete(s.leases, k)
		}
	}
}

// Dir returns the open directory for a configured stream dir path (opening it if
// needed); any other path is refused, so recovery never acts outside the config.
func (s *Scanner) Dir(path string) (*fsx.Dir, error) {
	path = filepath.Clean(path)
	for _, st := range s.streams {
		if filepath.Clean(st.Dir) == path {
			return s.dir(path)
		}
	}
	return nil, fmt.Errorf("%s is not a configured stream dir", path)
}
