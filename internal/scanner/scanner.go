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
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

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
	// StatWorkers bounds the directories scanned at once, and the statx calls
	// in flight within one large directory (so at most StatWorkers² in all);
	// default 2×GOMAXPROCS.
	StatWorkers int
}

// segmentOf is what a scan keeps of a segment's stat: the rest (kind, links,
// mount, flags) only decides whether it is a segment at all.
func segmentOf(name string, st fsx.Stat) model.Segment {
	return model.Segment{Name: name, ID: model.SegmentID{Dev: st.Dev, Ino: st.Ino, Gen: st.Btime},
		Size: st.Size, MtimeNs: st.MtimeNs, CtimeNs: st.CtimeNs,
		Access: model.Access{UID: st.UID, GID: st.GID, Mode: st.Mode}, Sparse: fsx.Sparse(st.Size, st.Blocks)}
}

// Result is the scan of one stream.
type Result struct {
	Stream config.Stream
	At     time.Time
	// Segments in stream order, oldest first, as the scan saw them. Writing is
	// set from the answers the scanner has: a scan asks none; CheckWriters asks
	// (a lease per file) for the segments a decision would touch. The list is
	// the scanner's: a reused result shares it, and the daemon's snapshot
	// classifies it in place (a large host holds each segment once).
	Segments []model.Segment
	Foreign  []string // names matching the pattern that are not single-link regular files on the dir's device
	FS       model.FSInfo
	Err      error // the directory could not be opened or listed; Segments is empty
	// Reused: the directory was not re-read (the caller vouched it unchanged);
	// Segments are the previous scan's, as of At.
	Reused bool
	// Verified: the directory was re-read and held the same files under the
	// same names as the previous scan, so the previous list was kept and its
	// sizes and times refreshed in place (no new list: a safety-net re-read
	// of 100,000 unchanged segments made 29 MB of garbage).
	Verified bool
	// NoTemps: this scan listed the whole directory and it held no temporary
	// name (fsx.IsTemp): the start-up sweep for orphaned temporary files need
	// not list it again. False for a result reused, verified or failed.
	NoTemps bool
	marked  bool            // some segment is marked writing (see Scanner.marked)
	kept    []model.Segment // while a re-read runs: the previous scan's list, to verify
}

type leaseKey = fsx.FileID

// leaseAnswer is a cached open-for-writing answer, valid while the file's size,
// mtime and ctime are unchanged and until expires (ns since the epoch). 40 bytes,
// no pointers: the cache holds one per closed segment.
type leaseAnswer struct {
	size, mtime, ctime, until int64
	writing                   bool
}

// holds says whether the answer is still good for seg at at (ns since the epoch).
func (a leaseAnswer) holds(seg *model.Segment, at int64) bool {
	return at < a.until && a.size == seg.Size && a.mtime == seg.MtimeNs && a.ctime == seg.CtimeNs
}

// Scanner scans a fixed set of streams. It is safe for use by one goroutine at a time.
type Scanner struct {
	opts    Options
	log     *zap.Logger
	streams []config.Stream
	dirs    map[string]*fsx.Dir // by cleaned path; nil value until it opens
	leases  map[leaseKey]leaseAnswer
	// marked: a kept list may hold a segment marked writing. An answer
	// expires before it is pruned, but a list no scan looked at in between
	// (a long scan_interval, rescans of other dirs) keeps its mark: only a
	// scan of every stream that left none clears this. While it is clear, a
	// quiet tick does not walk the lists (100,000 segments) for marks.
	marked bool
	mu     sync.Mutex         // guards warned while directories are scanned in parallel
	warned map[warnKey]string // what was logged per file (the reason), so each file is logged once whatever its name
	last   map[string]Result  // latest good scan per stream name, for reuse
	// listed, when set (tests), runs between a listing and its stats: the
	// window in which a writer's renames make a scan miss a file.
	listed func(dir string)
	// listing, when set (tests), runs at every listing of a directory.
	listing func(dir string)
	// wallNow is the clock a directory's ctime is held against (a seam for
	// tests: time.Now).
	wallNow func() time.Time
	globs   map[string]model.Glob // each stream's pattern, compiled, by pattern
	// statfs asks a directory's filesystem for its space (a seam for tests).
	statfs func(d *fsx.Dir) (total, avail uint64, err error)
}

// space is the size and free space of each filesystem one scan saw, asked
// once per device: at 1,000 directories on one filesystem every tick made
// 1,000 fstatfs calls for one answer (a tenth of an idle tick's CPU). Safe
// for the parallel directory jobs; devices are asked in parallel (a slow
// network mount holds up only the directories on it).
type space struct {
	mu     sync.Mutex
	statfs func(d *fsx.Dir) (total, avail uint64, err error)
	byDev  map[uint64]*fsAnswer
}

type fsAnswer struct {
	once sync.Once
	fi   model.FSInfo
	ok   bool
}

// of is the filesystem holding d; false when it cannot be asked (the result
// keeps what it had).
func (sp *space) of(d *fsx.Dir) (model.FSInfo, bool) {
	sp.mu.Lock()
	a := sp.byDev[d.Dev()]
	if a == nil {
		a = &fsAnswer{}
		sp.byDev[d.Dev()] = a
	}
	sp.mu.Unlock()
	a.once.Do(func() {
		total, avail, err := sp.statfs(d)
		a.fi, a.ok = model.FSInfo{Dev: d.Dev(), Total: total, Avail: avail}, err == nil
	})
	return a.fi, a.ok
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
		dirs: map[string]*fsx.Dir{}, leases: map[leaseKey]leaseAnswer{}, warned: map[warnKey]string{},
		last: map[string]Result{}, statfs: (*fsx.Dir).Statfs, globs: map[string]model.Glob{}, wallNow: time.Now}
	for _, st := range streams {
		s.globs[st.Pattern] = model.CompileGlob(st.Pattern)
	}
	return s
}

// Inherit takes over old's cached open-for-writing answers and logged warnings
// (after a reload replaced the scanner). Answers are keyed by file identity and
// checked against size and times before use, so they stay valid for any config.
func (s *Scanner) Inherit(old *Scanner) {
	s.leases, s.warned = old.leases, old.warned
	old.leases, old.warned = map[leaseKey]leaseAnswer{}, map[warnKey]string{}
}

// Forget drops the scans kept for reuse: the next Scan re-reads every
// directory.
func (s *Scanner) Forget() { clear(s.last) }

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

// dir is the open directory at path, opened with o if it must be (re)opened.
func (s *Scanner) dir(path string, o *fsx.Opener) (*fsx.Dir, error) {
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
	d, err := o.Open(path)
	if err != nil {
		return nil, err
	}
	s.dirs[path] = d
	return d, nil
}

// Scan scans the streams whose directory is in only (all streams when only is nil),
// as of now (used for the quiesce shortcut of the lease check).
//
// A stream whose directory is in unchanged — the caller vouches that nothing in it
// changed since its last scan, because a directory watch that was in place before
// that scan has reported no event since — and that has a previous good result is
// not re-read: the previous entries come back as of now with Reused set. Only the
// free space is asked again, and the open-for-writing answers still valid are
// applied. At 100,000 segments this turns a ~0.3 s pass of statx calls into a
// few milliseconds.
//
// A scan takes no lease: whether a segment is open for writing is asked by
// CheckWriters, for the segments a decision would touch.
func (s *Scanner) Scan(now time.Time, only, unchanged map[string]bool) []Result {
	out := make([]Result, 0, len(s.streams))
	fs := &space{statfs: s.statfs, byDev: map[uint64]*fsAnswer{}}
	// The streams to re-read, by directory: streams that share a directory share
	// its listings and are scanned one after the other.
	type dirJob struct {
		d       *fsx.Dir
		results []int // indexes into out
	}
	var jobs []*dirJob
	byPath := map[string]*dirJob{}
	var opener fsx.Opener // the dirs this scan (re)opens share the walk above them
	for _, st := range s.streams {
		path := filepath.Clean(st.Dir)
		if only != nil && !only[path] {
			continue
		}
		if prev, ok := s.last[st.Name]; ok && unchanged[path] {
			if d := s.dirs[path]; d != nil {
				res := Result{Stream: st, At: now, Segments: prev.Segments, Foreign: prev.Foreign, FS: prev.FS, Reused: true}
				if fi, ok := fs.of(d); ok {
					res.FS = fi
				}
				s.knownWriters(&res)
				s.last[st.Name] = res
				out = append(out, res)
				continue
			}
		}
		res := Result{Stream: st, At: now}
		if prev, ok := s.last[st.Name]; ok && prev.Err == nil && len(prev.Foreign) == 0 {
			res.kept = prev.Segments
		}
		delete(s.last, st.Name)
		// A directory is opened (or found replaced and reopened) once per
		// scan: a second s.dir for another stream in it could close the handle
		// the first stream's job already holds.
		j := byPath[path]
		if j == nil {
			d, err := s.dir(path, &opener)
			if err != nil {
				res.Err, res.kept = err, nil
				out = append(out, res)
				continue
			}
			j = &dirJob{d: d}
			byPath[path] = j
			jobs = append(jobs, j)
		}
		out = append(out, res)
		j.results = append(j.results, len(out)-1)
	}
	opener.Close() // the dirs above stay open no longer than the opening
	// Directories are re-read in parallel: at 1,000 directories of 100 segments
	// each is too small for statAll to split, and one after the other they left
	// all but one CPU idle. A result is written by its directory's job only.
	// The workers live for the whole scan: a goroutine per directory (an
	// errgroup's Go) grew a fresh stack for each of 1,000 and cost a fresh plan
	// ~10 ms.
	scanDir := func(j *dirJob) {
		var cache listing
		for _, i := range j.results {
			s.rescan(j.d, &out[i], &cache, fs)
		}
	}
	if len(jobs) == 1 {
		scanDir(jobs[0])
	} else {
		var wg sync.WaitGroup
		next := make(chan *dirJob)
		for range min(len(jobs), s.opts.StatWorkers) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range next {
					scanDir(j)
				}
			}()
		}
		for _, j := range jobs {
			next <- j
		}
		close(next)
		wg.Wait()
	}
	for _, j := range jobs {
		for _, i := range j.results {
			if out[i].Err == nil {
				s.last[out[i].Stream.Name] = out[i]
			}
		}
	}
	if only == nil {
		marked := false
		for _, r := range out {
			marked = marked || r.marked
		}
		s.marked = marked
	}
	s.pruneLeases(now)
	return out
}

// listing is a directory's latest listing, shared by the streams in it.
type listing struct {
	ents []dirent
	err  error
	ok   bool
	// since: the directory's ctime, read before it was listed, when it was
	// quiet then (settled).
	since   int64
	settled bool
}

// quietFor is how long before a listing a directory's ctime must lie for the
// ctime, read again after the stats, to vouch that nothing in the directory
// changed in between. Any change after the first read sets the ctime to the
// present as the kernel's clock has it: at worst one tick behind (coarse
// timestamps) and truncated to the filesystem's granularity (one second on
// ext4 with 128-byte inodes), so it cannot equal a ctime this far in the
// past — unless the clock was set back by more than this while the scan ran
// and the change fell on that very instant.
const quietFor = 2 * time.Second

// settled reads d's ctime and says whether it lies quietFor in the past: then
// an unchanged ctime later means an unchanged directory.
func (s *Scanner) settled(d *fsx.Dir) (since int64, ok bool) {
	now := s.wallNow()
	ct, ok := d.ChangeTime()
	return ct, ok && ct < now.Add(-quietFor).UnixNano()
}

// unchangedSince says whether d's ctime is still since, read when d was
// settled: no entry of d was added, removed or renamed in between.
func unchangedSince(d *fsx.Dir, since int64, settled bool) bool {
	if !settled {
		return false
	}
	ct, ok := d.ChangeTime()
	return ok && ct == since
}

// rescan fills res from a re-read of its stream's directory d. Safe to run for
// different directories at once.
func (s *Scanner) rescan(d *fsx.Dir, res *Result, cache *listing, fs *space) {
	if fi, ok := fs.of(d); ok {
		res.FS = fi
	}
	kept := res.kept
	res.kept = nil
	if len(kept) > 0 && s.verify(d, res, kept) {
		return
	}
	// A listing and the stats that follow it are not one snapshot: a writer
	// that renames while they run (logrotate's numbered scheme moves .3 to .4,
	// .2 to .3, ...) can move a file to a name already stat'ed, and the scan
	// misses it. A merge or a batch planned around the missing segment would
	// join segments that are not adjacent. So unless the directory's ctime
	// vouches that nothing in it changed from before the listing to after the
	// stats (almost every directory at almost every scan: its files grow, its
	// entries stay), the directory is listed again after the stats, and the
	// stream is scanned again until nothing it matches changed in between
	// (entries with their inode numbers).
	for try := 1; ; try++ {
		if !cache.ok {
			cache.since, cache.settled = s.settled(d)
			cache.ents, cache.err = s.list(d)
			cache.ok = true
		}
		if cache.err != nil {
			res.Err = cache.err
			break
		}
		before := s.scanStream(d, cache.ents, res)
		if unchangedSince(d, cache.since, cache.settled) {
			break
		}
		after, err := s.fingerprint(d, s.globs[res.Stream.Pattern])
		if err != nil {
			res.Err = err
			break
		}
		if after == before {
			break
		}
		cache.ok = false
		if try == maxTries {
			res.Err = fmt.Errorf("%s: %w (%d listings)", d.Path(), ErrUnsettled, maxTries)
			break
		}
		res.Segments, res.Foreign = nil, nil
	}
	if res.Err != nil {
		res.Segments, res.Foreign, res.marked, res.NoTemps = nil, nil, false, false
	}
}

// verify re-reads res's directory against kept, the stream's previous list:
// when the directory lists the same names with the same inode numbers before
// and after the stats, and a stat of each name shows the same file, still a
// segment, kept becomes res's list with its sizes and times refreshed in
// place. It says false, leaving kept's stat fields perhaps refreshed and
// nothing else changed, when anything differs: the caller then scans from
// scratch.
//
// The stats confirm every listed name: a rename onto or away from a name not
// yet stat'ed shows another file or none there. The listing after them is
// still needed, unless the directory's ctime vouches that nothing changed (as
// in rescan): a large directory is listed in several getdents calls, and a
// file renamed during the listing from a part not yet read to a part already
// read is in neither; the full scan's second listing catches that too.
//
// The lists are the scanner's and the daemon's snapshot classifies them in
// place between scans; nothing else holds them while a scan runs.
func (s *Scanner) verify(d *fsx.Dir, res *Result, kept []model.Segment) bool {
	var want print
	for i := range kept {
		want.add(kept[i].Name, kept[i].ID.Ino)
	}
	since, settled := s.settled(d)
	if before, err := s.fingerprint(d, s.globs[res.Stream.Pattern]); err != nil || before != want {
		return false
	}
	if s.listed != nil {
		s.listed(d.Path())
	}
	var changed atomic.Bool
	s.inChunks(len(kept), func(i int) {
		seg := &kept[i]
		st, err := d.Stat(seg.Name)
		if err != nil || st.Dev != seg.ID.Dev || st.Ino != seg.ID.Ino || st.Btime != seg.ID.Gen || foreignWhy(d, st) != "" {
			changed.Store(true) // gone, replaced, or no longer a segment: the full scan says which
			return
		}
		seg.Size, seg.MtimeNs, seg.CtimeNs, seg.Sparse = st.Size, st.MtimeNs, st.CtimeNs, fsx.Sparse(st.Size, st.Blocks)
		seg.Access = model.Access{UID: st.UID, GID: st.GID, Mode: st.Mode}
	})
	if changed.Load() {
		return false
	}
	if !unchangedSince(d, since, settled) {
		if after, err := s.fingerprint(d, s.globs[res.Stream.Pattern]); err != nil || after != want {
			return false
		}
	}
	if res.Stream.Order == "mtime" {
		Sort(kept, "mtime") // times may have moved; in name order nothing can
	}
	res.Segments, res.Verified = kept, true
	s.knownWriters(res)
	return true
}

// maxTries bounds the listings of a directory that keeps changing while it is
// scanned; then the stream sits this pass out (ErrUnsettled).
const maxTries = 4

// ErrUnsettled: every listing of a stream's directory differed from the one
// before its stats. The stream is not acted on this pass.
var ErrUnsettled = errors.New("the segments were renamed or replaced while every scan ran; not acted on this pass")

// warnKey is a file a stream warned about: the stream and the file's identity.
// Per stream, not per directory: two streams in one directory each forgot the
// other's warnings and said them again at every scan.
type warnKey struct {
	stream   string
	dev, ino uint64
}

// skip is a file a scan set aside as foreign: which, where it was seen, why.
type skip struct {
	key       warnKey
	name, why string
}

// warn logs the files of a stream skipped as foreign, each once while it stays
// foreign, and forgets the stream's other warnings (files gone or fixed).
func (s *Scanner) warn(stream, dir string, skipped []skip) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(skipped) == 0 && len(s.warned) == 0 {
		return
	}
	seen := make(map[warnKey]bool, len(skipped))
	for _, f := range skipped {
		seen[f.key] = true
		if s.warned[f.key] != f.why {
			s.warned[f.key] = f.why
			s.log.Warn("skipping a file named like a segment", zap.String("stream", stream),
				zap.String("dir", dir), zap.ByteString("segment", []byte(f.name)), zap.String("reason", f.why))
		}
	}
	for k := range s.warned {
		if k.stream == stream && !seen[k] {
			delete(s.warned, k)
		}
	}
}

// dirent is a directory entry as getdents gives it.
type dirent struct {
	name string
	ino  uint64
}

func (s *Scanner) list(d *fsx.Dir) ([]dirent, error) {
	if s.listing != nil {
		s.listing(d.Path())
	}
	var out []dirent
	err := d.EachEntry(func(name []byte, ino uint64) {
		out = append(out, dirent{string(name), ino})
	})
	return out, err
}

// matches says whether a directory entry belongs to a stream with pattern g.
func matches(g model.Glob, name string) bool {
	return !fsx.IsTemp(name) && g.Match(name)
}

// print is an order-independent digest of a stream's entries (names and inode
// numbers) in one listing.
type print struct {
	n   int
	sum uint64
}

func (p *print) add(name string, ino uint64) {
	x := uint64(14695981039346656037) // FNV-1a of the name, without an allocation
	for i := 0; i < len(name); i++ {
		x = (x ^ uint64(name[i])) * 1099511628211
	}
	x ^= ino * 0x9e3779b97f4a7c15
	// splitmix64's finalizer: sums of mixed values do not cancel by accident.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	p.n++
	p.sum += x
}

// fingerprint lists d again and digests the entries matching g.
func (s *Scanner) fingerprint(d *fsx.Dir, g model.Glob) (print, error) {
	if s.listing != nil {
		s.listing(d.Path())
	}
	var p print
	err := d.EachEntry(func(name []byte, ino uint64) {
		if n := string(name); matches(g, n) {
			p.add(n, ino)
		}
	})
	return p, err
}

// scanStream fills res from a listing of the stream's directory and returns the
// digest of the entries it used.
func (s *Scanner) scanStream(d *fsx.Dir, ents []dirent, res *Result) print {
	var fp print
	matched := make([]string, 0, len(ents))
	g := s.globs[res.Stream.Pattern]
	res.NoTemps = true
	for _, e := range ents {
		if fsx.IsTemp(e.name) {
			res.NoTemps = false
			continue
		}
		if g.Match(e.name) {
			matched = append(matched, e.name)
			fp.add(e.name, e.ino)
		}
	}
	// In name order the names are sorted before the stats: 16-byte strings move
	// where 120-byte segments did (at 100,000 segments a fifth of a full re-read).
	byName := res.Stream.Order != "mtime"
	if byName {
		slices.SortFunc(matched, model.NaturalCompare)
	}
	// Stat straight into the segments, then keep the good ones in place.
	all := make([]model.Segment, len(matched))
	for i, n := range matched {
		all[i].Name = n
	}
	failed := make([]bool, len(matched))
	if s.listed != nil {
		s.listed(d.Path())
	}
	foreign := s.statAll(d, all, failed)

	res.Segments = all[:0]
	var skipped []skip
	for i, seg := range all {
		if failed[i] {
			continue // vanished between listing and stat: it is simply gone
		}
		if why, ok := foreign[i]; ok {
			res.Foreign = append(res.Foreign, seg.Name)
			// Warnings are remembered per file (identity), not per name: a writer
			// that renames a hard link at each rotation (rotatelogs -L) is said once.
			skipped = append(skipped, skip{warnKey{res.Stream.Name, seg.ID.Dev, seg.ID.Ino}, seg.Name, why})
			continue
		}
		res.Segments = append(res.Segments, seg)
	}
	s.warn(res.Stream.Name, d.Path(), skipped)
	res.Segments = dedupe(res.Segments)
	if !byName {
		Sort(res.Segments, res.Stream.Order)
	}
	s.knownWriters(res)
	return fp
}

// foreignWhy says why a file named like a segment is not one ("" when it is).
func foreignWhy(d *fsx.Dir, st fsx.Stat) string {
	switch {
	case st.Kind != fsx.Regular:
		return st.Kind.String()
	case st.Nlink != 1:
		return "hard link"
	case !d.OnSameMount(st):
		return "another mount"
	case st.Sealed:
		return "immutable or append-only (chattr): it could be merged or archived but never removed"
	}
	return ""
}

// dedupe keeps one entry per file: a writer that renames while the directory
// is listed and stat'ed (logrotate's numbered scheme: .3 -> .4 between the
// listing and the stats) shows one file under two names. Which name is current
// cannot be told; jobs find files by identity, so the first is kept.
func dedupe(es []model.Segment) []model.Segment {
	if len(es) < 2 {
		return es
	}
	// Almost always there is no duplicate: find out with a sorted slice of
	// inode numbers (8 bytes a segment, once) rather than a map (~40).
	inos := make([]uint64, len(es))
	for i := range es {
		inos[i] = es[i].ID.Ino
	}
	slices.Sort(inos)
	dup := false
	for i := 1; i < len(inos) && !dup; i++ {
		dup = inos[i] == inos[i-1]
	}
	if !dup {
		return es
	}
	var seen map[fsx.FileID]bool
	out := es[:0]
	for _, e := range es {
		if len(es) > 1 {
			if seen == nil {
				seen = make(map[fsx.FileID]bool, len(es))
			}
			id := fsx.FileID{Dev: e.ID.Dev, Ino: e.ID.Ino}
			if seen[id] {
				continue
			}
			seen[id] = true
		}
		out = append(out, e)
	}
	return out
}

// statAll fills in the segments from their stats (failed[i] when segment i
// could not be stat'ed) with a bounded pool of workers (a huge directory is
// split). It returns why, by index, the files that are not segments are not.
func (s *Scanner) statAll(d *fsx.Dir, es []model.Segment, failed []bool) map[int]string {
	var mu sync.Mutex
	var foreign map[int]string // rare: one lock per foreign file
	s.inChunks(len(es), func(i int) {
		st, err := d.Stat(es[i].Name)
		if failed[i] = err != nil; err != nil {
			return
		}
		es[i] = segmentOf(es[i].Name, st)
		if why := foreignWhy(d, st); why != "" {
			mu.Lock()
			if foreign == nil {
				foreign = map[int]string{}
			}
			foreign[i] = why
			mu.Unlock()
		}
	})
	return foreign
}

// inChunks calls fn for 0..n-1: in this goroutine for a small directory, in
// chunks on at most StatWorkers goroutines for a large one.
func (s *Scanner) inChunks(n int, fn func(i int)) {
	const chunk = 1024
	if n <= chunk {
		for i := range n {
			fn(i)
		}
		return
	}
	var g errgroup.Group
	g.SetLimit(s.opts.StatWorkers)
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		g.Go(func() error {
			for i := lo; i < hi; i++ {
				fn(i)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// Sort puts entries in stream order (Compare). Names in a directory are unique,
// so the order is total and an unstable sort gives the same result as a stable
// one, with O(n log n) moves instead of O(n log² n) (it matters at 100,000
// entries).
func Sort(es []model.Segment, order string) {
	slices.SortFunc(es, func(a, b model.Segment) int { return Compare(a, b, order) })
}

// Compare is the stream order: natural name order, or mtime, then birth time,
// then name.
//
// Two segments share an mtime when their last writes fell in one tick of the
// kernel's coarse clock (4 ms at HZ=250): a renumbering writer's last batch to
// app.log.1 just after the rename and its first to the new app.log. Their names
// then say the opposite of the truth (app.log < app.log.1), their births do
// not: a writer fills one file after another, each born before the next. (A
// consolidated segment's birth is its merge's, so the planner never ends a
// merge with a segment whose mtime the next one shares: compactor.Plan.)
func Compare(a, b model.Segment, order string) int {
	if order == "mtime" {
		if c := cmp.Compare(a.MtimeNs, b.MtimeNs); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ID.Gen, b.ID.Gen); c != 0 { // 0 where no birth time is kept: name decides
			return c
		}
	}
	return model.NaturalCompare(a.Name, b.Name)
}

// knownWriters applies the open-for-writing answers the scanner has (still
// valid: same size, mtime and ctime, younger than LeaseRecheck) and takes none:
// at 100,000 closed segments a lease each was most of a fresh process's scan
// (2.2 of 4 s), and almost none of them is ever a decision's input.
func (s *Scanner) knownWriters(res *Result) {
	res.marked = false
	if !s.marked && len(s.leases) == 0 {
		return // no answer to apply, and no mark to clear
	}
	at := res.At.UnixNano()
	for i := range res.Segments {
		e := &res.Segments[i]
		e.Writing = false
		if len(s.leases) == 0 {
			continue
		}
		if a, ok := s.leases[leaseKey{Dev: e.ID.Dev, Ino: e.ID.Ino}]; ok && a.holds(e, at) {
			e.Writing = a.writing
			res.marked = res.marked || a.writing
		}
	}
}

// CheckWriters asks whether the segments of res that want selects are held open
// for writing, and marks them (the newest segment and segments modified within
// quiesce are active anyway and not asked). It returns whether it found one
// that was not marked. Answers for unchanged files are kept for LeaseRecheck.
// When leases are not available it falls back to /proc; when that fails too it
// fails closed. res must be a result of this scanner's last Scan.
func (s *Scanner) CheckWriters(res Result, want func(model.SegmentID) bool) bool {
	d := s.dirs[filepath.Clean(res.Stream.Dir)]
	if d == nil || res.Err != nil {
		return false
	}
	var procWriters map[fsx.FileID]bool
	procTried := false
	quiesce := res.Stream.Compaction.Quiesce
	at := res.At.UnixNano()
	found := false
	for i := range res.Segments {
		e := &res.Segments[i]
		if i == len(res.Segments)-1 || res.At.Sub(e.Mtime()) < quiesce || e.Writing || !want(e.ID) {
			continue
		}
		key := leaseKey{Dev: e.ID.Dev, Ino: e.ID.Ino}
		if a, ok := s.leases[key]; ok && a.holds(e, at) {
			continue // known not to be written (knownWriters marked the others)
		}
		writing, err := d.HeldForWrite(e.Name, fsx.Stat{Dev: e.ID.Dev, Ino: e.ID.Ino})
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
		found = found || writing
		s.marked = s.marked || writing
		jitter := time.Duration(e.ID.Ino%16) * s.opts.LeaseRecheck / 16
		s.leases[key] = leaseAnswer{size: e.Size, mtime: e.MtimeNs, ctime: e.CtimeNs,
			writing: writing, until: at + int64(s.opts.LeaseRecheck+jitter)}
	}
	return found
}

func (s *Scanner) pruneLeases(now time.Time) {
	for k, a := range s.leases {
		if now.UnixNano() > a.until+int64(s.opts.LeaseRecheck) {
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
			return s.dir(path, nil)
		}
	}
	return nil, fmt.Errorf("%s is not a configured stream dir", path)
}
