package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/logcompactd/logcompactd/internal/archiver"
	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/objstore"
	"github.com/logcompactd/logcompactd/internal/scanner"
)

// piece is one file of a stream read back: an archive or a hot segment.
type piece struct {
	where string    // for messages: the archive's URL or path, or the hot path
	name  string    // the archive's name in cold, or the segment's name
	mtime time.Time // the segment's mtime (archives keep it)
	open  func(ctx context.Context) (io.ReadCloser, error)
	hot   bool
}

// Window selects pieces by their mtime (a segment's mtime is the time of its
// last line): Since keeps those modified at or after it, Until drops those
// that begin after it (the piece after one modified at or after Until).
type Window struct{ Since, Until time.Time }

// streamPieces lists a stream's archives in its order, then its hot segments
// in its order (README "Reading it back").
func streamPieces(ctx context.Context, s config.Stream) ([]piece, error) {
	var out []piece
	if strings.HasPrefix(s.Archive.ColdDir, "s3://") {
		st, err := objstore.New(ctx, s.Archive.ColdDir, s.Archive.S3)
		if err != nil {
			return nil, err
		}
		names, err := st.List(ctx, s.Name)
		if err != nil {
			return nil, fmt.Errorf("list %s/%s: %w", s.Archive.ColdDir, s.Name, err)
		}
		for _, n := range names {
			mt, err := st.Mtime(ctx, s.Name, n)
			if err != nil {
				return nil, fmt.Errorf("%s/%s/%s: %w", s.Archive.ColdDir, s.Name, n, err)
			}
			out = append(out, piece{where: s.Archive.ColdDir + "/" + s.Name + "/" + n, name: n, mtime: mt,
				open: func(ctx context.Context) (io.ReadCloser, error) { return st.Get(ctx, s.Name, n) }})
		}
	} else {
		sub := filepath.Join(s.Archive.ColdDir, s.Name)
		ents, err := os.ReadDir(sub)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || fsx.IsTemp(e.Name()) {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue
			}
			p := filepath.Join(sub, e.Name())
			out = append(out, piece{where: p, name: e.Name(), mtime: fi.ModTime(),
				open: func(context.Context) (io.ReadCloser, error) { return os.Open(p) }})
		}
	}
	// Archives keep their segment's mtime (a merge's is its last input's): in
	// time order — a name reused after rotation gets ".N" and would sort
	// wrongly by name alone — ties as archiver.ColdCompare breaks them.
	slices.SortStableFunc(out, func(a, b piece) int {
		return archiver.ColdCompare(archiver.ColdFile{Name: a.name, Mtime: a.mtime}, archiver.ColdFile{Name: b.name, Mtime: b.mtime}, s.Order == "mtime")
	})
	hot, err := fsx.OpenDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer hot.Close()
	names, err := hot.Names()
	if err != nil {
		return nil, err
	}
	var es []model.Segment
	for _, n := range names {
		if m, _ := filepath.Match(s.Pattern, n); !m || fsx.IsTemp(n) {
			continue
		}
		st, err := hot.Stat(n)
		if err != nil || st.Kind != fsx.Regular || st.Nlink != 1 {
			continue
		}
		es = append(es, model.Segment{Name: n, MtimeNs: st.MtimeNs, ID: model.SegmentID{Dev: st.Dev, Ino: st.Ino, Gen: st.Btime}})
	}
	scanner.Sort(es, s.Order)
	for _, e := range es {
		p := filepath.Join(s.Dir, e.Name)
		out = append(out, piece{where: p, name: e.Name, mtime: e.Mtime(), hot: true,
			open: func(context.Context) (io.ReadCloser, error) { return os.Open(p) }})
	}
	return out, nil
}

func (w Window) keep(ps []piece) []piece {
	var out []piece
	for i, p := range ps {
		if !w.Since.IsZero() && p.mtime.Before(w.Since) {
			continue
		}
		if !w.Until.IsZero() && i > 0 && !ps[i-1].mtime.Before(w.Until) {
			break
		}
		out = append(out, p)
	}
	return out
}

// decoded opens a piece decompressed (by its magic bytes).
func decoded(ctx context.Context, p piece) (io.ReadCloser, error) {
	rc, err := p.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.where, err)
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	head, _ := br.Peek(4)
	dr, err := codec.NewReader(codec.Sniff(head), br)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("%s: %w", p.where, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{dr, closers{dr, rc}}, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Cat writes a stream's bytes in its order — the cold tier (a directory or a
// bucket), then hot — decompressed, to w. It changes nothing.
func Cat(ctx context.Context, cfg *config.Config, stream string, win Window, w io.Writer) error {
	s, err := streamByName(cfg, stream)
	if err != nil {
		return err
	}
	ps, err := streamPieces(ctx, s)
	if err != nil {
		return err
	}
	for _, p := range win.keep(ps) {
		r, err := decoded(ctx, p)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, r)
		r.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p.where, err)
		}
	}
	return nil
}

// Restore writes the stream's archives (not its hot segments), decompressed,
// into dir under the names they had (the cold name without its compression
// extension), with their mtimes; it never replaces a file. It returns the
// names written.
func Restore(ctx context.Context, cfg *config.Config, stream, dir string, win Window) ([]string, error) {
	s, err := streamByName(cfg, stream)
	if err != nil {
		return nil, err
	}
	ps, err := streamPieces(ctx, s)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, p := range win.keep(ps) {
		if p.hot {
			continue
		}
		name := p.name
		for _, ext := range []string{".zst", ".gz"} {
			name = strings.TrimSuffix(name, ext)
		}
		dst := filepath.Join(dir, name)
		if err := restoreOne(ctx, p, dst); err != nil {
			return done, err
		}
		done = append(done, name)
	}
	return done, nil
}

func restoreOne(ctx context.Context, p piece, dst string) error {
	r, err := decoded(ctx, p)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("restore %s: %w", p.where, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(dst, p.mtime, p.mtime)
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("restore %s to %s: %w", p.where, dst, err)
	}
	return nil
}

func streamByName(cfg *config.Config, name string) (config.Stream, error) {
	var names []string
	for _, s := range cfg.Streams {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return config.Stream{}, fmt.Errorf("%s: no stream %q (streams: %s)", cfg.File, name, strings.Join(names, ", "))
}
