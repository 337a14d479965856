package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/archiver"
	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/compactor"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/objstore"
)

// coldTier guards one configured cold dir. It remembers the directory (device
// and inode) it found the first time, and refuses to write when the path no
// longer leads there — an unmounted mount point shows the directory underneath,
// which must never receive archives. After a failure it backs off (1 s doubling
// to 5 min, reset only by an archival that succeeds), and says why in logs
// (once per distinct error, with how often the last one repeated) and STATUS=.
type coldTier struct {
	path    string
	store   *objstore.Store // an s3:// cold_dir; nil for a local one
	found   string          // what the start-up probe found (object stores)
	log     *zap.Logger
	mu      sync.Mutex
	dir     *fsx.Dir
	b       backoff
	streams map[string]*backoff // a stream whose subdir is unsafe stops alone
}

func newColdTier(path string, log *zap.Logger) *coldTier {
	return &coldTier{path: tierKey(path), log: log}
}

// tierKey is the key of a cold_dir among the tiers: a cleaned path, or the
// s3:// URL without a trailing slash.
func tierKey(coldDir string) string {
	if strings.HasPrefix(coldDir, "s3://") {
		return strings.TrimSuffix(coldDir, "/")
	}
	return filepath.Clean(coldDir)
}

// publisher returns where a stream's archives go when the tier is an object
// store (staging in hot), or nil with no error for a local tier.
func (c *coldTier) publisher(now time.Time, stream string, hot *fsx.Dir) (fsx.Publisher, error) {
	if c.store == nil {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.b.ready(now) {
		return nil, fmt.Errorf("cold tier %s: backing off until %s: %w", c.path, c.b.next.Format(time.TimeOnly), c.b.err)
	}
	return c.store.Publisher(stream, hot), nil
}

// open returns the cold dir if it may be used now.
func (c *coldTier) open(now time.Time) (*fsx.Dir, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.b.ready(now) {
		return nil, fmt.Errorf("cold dir %s: backing off until %s: %w", c.path, c.b.next.Format(time.TimeOnly), c.b.err)
	}
	fresh, err := fsx.OpenDir(c.path)
	if err != nil {
		return nil, c.failLocked(now, err)
	}
	if err := fresh.OnlyOurs(true); err != nil {
		fresh.Close()
		return nil, c.failLocked(now, err)
	}
	if c.dir == nil {
		c.dir = fresh
	} else {
		defer fresh.Close()
		if fresh.Dev() != c.dir.Dev() || fresh.Ino() != c.dir.Ino() {
			return nil, c.failLocked(now, fmt.Errorf("cold dir %s is no longer the directory it was at start (unmounted?): refusing to write there", c.path))
		}
	}
	return c.dir, nil
}

// stream opens (creating) the stream's subdirectory, owned by the caller. A
// subdirectory that is not a directory of the daemon's own that only it can
// write (another user created it first, or planted a symlink) stops archival
// of that stream alone, with the reason logged once; the other streams of the
// cold dir go on.
func (c *coldTier) stream(now time.Time, name string) (*fsx.Dir, error) {
	d, err := c.open(now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.streams == nil {
		c.streams = map[string]*backoff{}
	}
	b := c.streams[name]
	if b == nil {
		b = &backoff{}
		c.streams[name] = b
	}
	defer c.mu.Unlock()
	if !b.ready(now) {
		return nil, fmt.Errorf("cold dir %s/%s: backing off: %w", c.path, name, b.err)
	}
	sub, err := d.Sub(name, 0o750)
	if err == nil {
		if err = sub.OnlyOurs(false); err != nil {
			sub.Close()
		}
	}
	if err != nil {
		if isNew, repeated := b.fail(now, err); isNew {
			c.log.Error("stream's cold subdir unusable: archival of this stream stops; nothing is deleted from hot",
				zap.String("cold_dir", c.path), zap.String("stream", name), zap.Duration("retry_in", b.wait),
				zap.Int("previous_error_repeated", repeated), zap.Error(err))
		}
		return nil, err
	}
	if was, _ := b.succeed(); was {
		c.log.Info("stream's cold subdir usable again", zap.String("cold_dir", c.path), zap.String("stream", name))
	}
	return sub, nil
}

func (c *coldTier) fail(now time.Time, err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failLocked(now, err)
}

func (c *coldTier) failLocked(now time.Time, err error) error {
	if isNew, repeated := c.b.fail(now, err); isNew {
		c.log.Warn("cold dir unusable: archival backs off; nothing is deleted from hot", zap.String("cold_dir", c.path),
			zap.Duration("retry_in", c.b.wait), zap.Int("previous_error_repeated", repeated), zap.Error(err))
	}
	return err
}

// succeeded records an archival that worked: the back-off starts over.
func (c *coldTier) succeeded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if was, repeated := c.b.succeed(); was {
		c.log.Info("cold dir usable again", zap.String("cold_dir", c.path), zap.Int("failures_since_logged", repeated))
	}
}

// status is "" when the tier is fine.
func (c *coldTier) status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.b.err == nil {
		return ""
	}
	return fmt.Sprintf("cold %s unusable (%v)", c.path, c.b.err)
}

func (c *coldTier) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != nil {
		c.dir.Close()
		c.dir = nil
	}
}

// coldNamer names the archives a pass plans (archiver.Input.ColdName): in an
// mtime-ordered stream the writer's trailing number becomes the segment's mtime
// (archiver.TimeName); the segment's encoding comes from its magic bytes (read through the scanner's
// directory, by identity), and a name already in the stream's cold subdir, or
// given to another archive of this pass, gets the next ".N". plan prints these
// names and the jobs use them as they are: a name taken meanwhile makes the job
// fail (it never replaces), and the next pass picks again.
type coldNamer struct {
	d     *Daemon
	taken map[string]map[string]bool // per stream: names in the cold subdir and given this pass
}

func (d *Daemon) coldNamer() *coldNamer {
	return &coldNamer{d: d, taken: map[string]map[string]bool{}}
}

func (n *coldNamer) name(s *model.Stream, seg model.Segment) (string, codec.Encoding) {
	enc := n.encoding(s.Config, seg)
	compress := s.Config.Archive.Compress
	if seg.Sparse {
		compress = "none" // archived as it is, holes kept
	}
	return n.take(s.Config, baseName(s.Config, seg), enc, compress), enc
}

// baseName is what a segment's archive is named after: its name, or in an
// mtime-ordered stream its time (a renumbering writer's name says nothing in
// cold).
func baseName(sc config.Stream, seg model.Segment) string {
	if sc.Order == "mtime" {
		return archiver.TimeName(seg.Name, seg.Mtime())
	}
	return seg.Name
}

// take reserves the first free cold name made from base: not in the stream's
// cold subdir (listed once a pass) nor given to another archive of this pass.
func (n *coldNamer) take(sc config.Stream, base string, enc codec.Encoding, compress string) string {
	taken := n.taken[sc.Name]
	if taken == nil {
		taken = n.list(sc)
		n.taken[sc.Name] = taken
	}
	for i := 0; ; i++ {
		cand := archiver.ColdName(base, enc, compress, i)
		if !taken[cand] {
			taken[cand] = true
			return cand
		}
	}
}

// list reads the names in the stream's cold subdir (none if it does not exist
// or cannot be read: the job will find out and say so).
func (n *coldNamer) list(sc config.Stream) map[string]bool {
	out := map[string]bool{}
	t := n.d.tiers[tierKey(sc.Archive.ColdDir)]
	if t == nil {
		return out
	}
	if t.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		names, _ := t.store.List(ctx, sc.Name) // unreachable: the job finds out, and says so
		for _, name := range names {
			out[name] = true
		}
		return out
	}
	root, err := fsx.OpenDir(t.path)
	if err != nil {
		return out
	}
	defer root.Close()
	sub, err := root.OpenSub(sc.Name)
	if err != nil {
		return out
	}
	defer sub.Close()
	names, _ := sub.Names()
	for _, name := range names {
		out[name] = true
	}
	return out
}

func (n *coldNamer) encoding(sc config.Stream, seg model.Segment) codec.Encoding {
	dir, err := n.d.scanner.Dir(sc.Dir)
	if err != nil {
		return codec.Text
	}
	want := fsx.Stat{Kind: fsx.Regular, Dev: seg.ID.Dev, Ino: seg.ID.Ino, Btime: seg.ID.Gen}
	f, err := dir.OpenRead(seg.Name, want)
	if err != nil {
		return codec.Text
	}
	defer f.Close()
	b := make([]byte, 4)
	k, _ := f.ReadAt(b, 0)
	return codec.Sniff(b[:k])
}

// probeTiers probes every object-store tier (HeadBucket, a probe object
// written twice) and says what it found; a tier that fails backs off, so that
// nothing leaves hot for it until it works.
func (d *Daemon) probeTiers() {
	for _, p := range sortedTiers(d.tiers) {
		t := d.tiers[p]
		if t.store == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		what, err := t.store.Probe(ctx)
		cancel()
		if err != nil {
			t.fail(d.opts.Now(), err)
			continue
		}
		t.mu.Lock()
		t.found = what
		t.mu.Unlock()
		lvl := zap.InfoLevel
		if t.store.IgnoresIfNoneMatch() {
			lvl = zap.WarnLevel
		}
		d.log.Check(lvl, "cold tier probed").Write(zap.String("cold_dir", p), zap.String("found", what))
	}
}

// batches groups a stream's archival jobs into archives of several segments
// (archiver.Batch, up to compaction.target_size of input); the first job of a
// batch is renamed after what the archive holds. An object store charges per
// request and suffers from many small objects; a local tier pays a journaled
// job with its fsyncs per archive (1,000 tiny segments one by one: 31 s), so
// it batches too whenever the bytes are copied anyway (compress gzip or zstd;
// with none, a segment on the same filesystem is moved by a rename).
// Streams whose writers rename (order: mtime) batch too: a batch around a
// segment the scan missed would hold the stream out of order for good, and the
// scanner does not miss one (it lists again after its stats and scans until
// nothing changed in between: scanner.ErrUnsettled).
func (d *Daemon) batches(s *model.Stream, jobs []archiver.Job, names *coldNamer) [][]archiver.Job {
	t := d.tiers[tierKey(s.Config.Archive.ColdDir)]
	if t == nil || len(jobs) < 2 || (t.store == nil && s.Config.Archive.Compress == "none") {
		out := make([][]archiver.Job, len(jobs))
		for i, j := range jobs {
			out[i] = []archiver.Job{j}
		}
		return out
	}
	bs := archiver.Batch(jobs, int64(s.Config.Compaction.TargetSize), compactor.MaxInputs)
	for _, b := range bs {
		if len(b) < 2 {
			continue
		}
		base := archiver.BatchBase(baseName(s.Config, b[0].Segment), baseName(s.Config, b[len(b)-1].Segment), len(b))
		b[0].Name = names.take(s.Config, base, codec.Text, s.Config.Archive.Compress)
		b[0].Output = s.Config.Name + "/" + b[0].Name
	}
	return bs
}
