package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// Pacer is what the move job needs of the shared token bucket.
type Pacer interface {
	Wait(ctx context.Context, n int) error
}

// Env is what move jobs and their recovery share.
type Env struct {
	Journal   *fsx.Journal
	Leases    *fsx.Leases
	Pacer     Pacer // nil: unpaced
	Log       *zap.Logger
	fsx.Hooks // clock and named-step hook ("merge:created", "archive:committed", ...)
}

// MoveJob moves one closed segment from its hot dir into the stream's cold subdir.
type MoveJob struct {
	Stream   string
	Hot      *fsx.Dir
	HotPath  string // as configured; journaled
	Cold     *fsx.Dir
	ColdPath string // the stream's cold subdir; journaled
	Name     string
	Segment  fsx.Stat
	Compress string // none|gzip|zstd
	Urgent   bool   // not paced: a breach is near
}

// MoveResult describes a finished move.
type MoveResult struct {
	Output  string // name in the cold subdir
	Renamed bool   // same filesystem, uncompressed: moved by rename
	Bytes   int64  // source bytes
	Written int64  // bytes in the cold dir
}

// ErrSourceChanged means the segment changed while it was being archived.
var ErrSourceChanged = errors.New("archiver: the segment changed during the move")

func extension(compress string) string {
	switch compress {
	case "zstd":
		return ".zst"
	case "gzip":
		return ".gz"
	}
	return ""
}

// outputName picks a free name in the cold subdir: <segment><ext>, or
// <segment>.<N><ext> when an earlier archive of the same name is there.
func outputName(cold *fsx.Dir, name, compress string) (string, error) {
	ext := extension(compress)
	for n := 0; n < 10000; n++ {
		cand := name + ext
		if n > 0 {
			cand = name + "." + strconv.Itoa(n) + ext
		}
		ok, err := cold.Exists(cand)
		if err != nil {
			return "", err
		}
		if !ok {
			return cand, nil
		}
	}
	return "", fmt.Errorf("no free name for %q in %s", name, cold.Path())
}

// Move archives one segment, crash-safely:
//
//   - same filesystem, compress none: journal Begin, rename the segment into the
//     cold subdir (never replacing), fsync both dirs, journal Done;
//   - otherwise (another filesystem, or compressing): journal Begin; create a
//     temp in the cold subdir (owner and mode of the segment), journal Created;
//     copy it through the compressor, paced; fsync; verify by reading it back
//     (decompressing) and comparing length and CRC-32C with the source; re-check
//     the source; rename the temp to the final name without replacing; fsync the
//     cold dir; journal Commit ("archived"); unlink the source if it is still the
//     same file; fsync the hot dir; journal Done.
//
// A failure before Commit removes what the job created; the segment stays hot.
func (e *Env) Move(ctx context.Context, j MoveJob) (MoveResult, error) {
	e.Step("archive:start")
	lease, err := e.Leases.Take(j.Hot, j.Name, j.Segment)
	if err != nil {
		return MoveResult{}, fmt.Errorf("open segment %q: %w", j.Name, err)
	}
	defer lease.Release()
	ref := fsx.RefOf(j.Name, j.Segment)
	if !ref.Matches(lease.Stat) {
		return MoveResult{}, fmt.Errorf("segment %q: %w (since the scan)", j.Name, ErrSourceChanged)
	}
	out, err := outputName(j.Cold, j.Name, j.Compress)
	if err != nil {
		return MoveResult{}, err
	}
	if j.Compress != "none" || j.Hot.Dev() != j.Cold.Dev() {
		return e.moveByCopy(ctx, j, lease, ref, out, fsx.RandomTempName())
	}
	// Same filesystem, uncompressed: a rename. No temp; the output is the segment's inode.
	id, err := e.Journal.Begin(fsx.Op{Kind: "archive", Stream: j.Stream, Dir: j.HotPath, Dest: j.ColdPath, Output: out, Inputs: []fsx.FileRef{ref}})
	if err != nil {
		return MoveResult{}, err
	}
	e.Step("archive:begun")
	err = j.Hot.MoveTo(j.Name, j.Cold, out)
	if errors.Is(err, unix.EXDEV) { // a bind mount: same device number, another mount
		if err := e.Journal.Done(id); err != nil {
			return MoveResult{}, err
		}
		return e.moveByCopy(ctx, j, lease, ref, out, fsx.RandomTempName())
	}
	if err != nil {
		return MoveResult{}, errors.Join(err, e.Journal.Done(id))
	}
	e.Step("archive:renamed")
	if err := errors.Join(j.Cold.Sync(), j.Hot.Sync()); err != nil {
		return MoveResult{}, err // recovery sees the rename done and finishes
	}
	e.Step("archive:synced")
	if err := e.Journal.Done(id); err != nil {
		return MoveResult{}, err
	}
	e.Step("archive:done")
	return MoveResult{Output: out, Renamed: true, Bytes: ref.Size, Written: ref.Size}, nil
}

func (e *Env) moveByCopy(ctx context.Context, j MoveJob, lease *fsx.Lease, ref fsx.FileRef, out, temp string) (MoveResult, error) {
	op := fsx.Op{Kind: "archive", Stream: j.Stream, Dir: j.HotPath, Dest: j.ColdPath, Output: out, Temp: temp, Inputs: []fsx.FileRef{ref}}
	id, err := e.Journal.Begin(op)
	if err != nil {
		return MoveResult{}, err
	}
	e.Step("archive:begun")
	var created *fsx.FileRef
	renamed := false
	abort := func(cause error) (MoveResult, error) {
		var errs []error
		want := fsx.Stat{}
		if created != nil {
			want = created.Stat()
		}
		errs = append(errs, j.Cold.Unlink(temp, want))
		if renamed {
			errs = append(errs, j.Cold.Unlink(out, want))
		}
		errs = append(errs, j.Cold.Sync())
		if cerr := errors.Join(errs...); cerr != nil {
			return MoveResult{}, errors.Join(cause, fmt.Errorf("clean up abandoned archive: %w", cerr))
		}
		return MoveResult{}, errors.Join(cause, e.Journal.Done(id))
	}
	f, st, err := j.Cold.CreateOutput(temp, j.Segment)
	if err != nil {
		return abort(err)
	}
	defer f.Close()
	cr := fsx.RefOf(temp, st)
	created = &cr
	if err := e.Journal.Created(id, cr); err != nil {
		return abort(err)
	}
	e.Step("archive:created")
	srcCRC, written, outCRC, err := e.copyCompressed(ctx, j, lease, fsx.NewWriteBehind(f, 0))
	if err != nil {
		return abort(err)
	}
	if err := unix.Futimes(int(f.Fd()), []unix.Timeval{unix.NsecToTimeval(ref.MtimeNs), unix.NsecToTimeval(ref.MtimeNs)}); err != nil {
		return abort(fmt.Errorf("set archive mtime: %w", err))
	}
	if err := f.Sync(); err != nil {
		return abort(fmt.Errorf("fsync archive: %w", err)) // a failed fsync is final for this output
	}
	e.Step("archive:synced")
	if err := verify(f, j.Compress, ref.Size, srcCRC); err != nil {
		return abort(err)
	}
	e.Step("archive:verified")
	if lease.Broken() {
		return abort(fmt.Errorf("segment %q: %w", j.Name, fsx.ErrLeaseBroken))
	}
	if cur, err := j.Hot.Stat(j.Name); err != nil || !ref.Matches(cur) {
		return abort(fmt.Errorf("segment %q: %w", j.Name, ErrSourceChanged))
	}
	if err := ctx.Err(); err != nil {
		return abort(err)
	}
	if err := j.Cold.RenameNoReplace(temp, out); err != nil {
		return abort(err)
	}
	renamed = true
	e.Step("archive:renamed")
	if err := j.Cold.Sync(); err != nil {
		return abort(err)
	}
	e.Step("archive:cold-synced")
	if err := e.Journal.Commit(id, fsx.Commit{OutSize: written, OutCRC: outCRC, InputCRCs: []uint32{srcCRC}, AtNs: e.Clock().UnixNano()}); err != nil {
		return abort(err)
	}
	e.Step("archive:committed")
	_ = lease.Release()
	op.ID, op.Created = id, created
	if err := e.finish(j.Hot, op); err != nil {
		return MoveResult{}, err
	}
	return MoveResult{Output: out, Bytes: ref.Size, Written: written}, nil
}

// finish removes the archived source (only if it is still the journaled file),
// fsyncs the hot dir and journals Done. Idempotent.
func (e *Env) finish(hot *fsx.Dir, op fsx.Op) error {
	in := op.Inputs[0]
	if err := hot.Unlink(in.Name, in.Stat()); err != nil && !errors.Is(err, fsx.ErrChanged) {
		return fmt.Errorf("remove archived segment %q: %w", in.Name, err)
	}
	e.Step("archive:unlinked")
	if err := hot.Sync(); err != nil {
		return err
	}
	e.Step("archive:hot-synced")
	if err := e.Journal.Done(op.ID); err != nil {
		return err
	}
	e.Step("archive:done")
	return nil
}

// copyCompressed streams the source through the compressor into out.
func (e *Env) copyCompressed(ctx context.Context, j MoveJob, lease *fsx.Lease, out io.Writer) (srcCRC uint32, written int64, outCRC uint32, err error) {
	cw := &fsx.ChecksumWriter{W: out}
	var dst io.WriteCloser
	switch j.Compress {
	case "zstd":
		// A 1 MiB window: log lines repeat within far less (the output is even a
		// little smaller than with the default 8 MiB here), and the job's buffers
		// drop from ~20 MiB to ~4. Two block encoders: a stream's archivals run one
		// after another, so this is where one stream's archival gets a second core.
		dst, err = zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2),
			zstd.WithWindowSize(1<<20))
	case "gzip":
		dst, err = gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	default:
		dst = nopCloser{cw}
	}
	if err != nil {
		return 0, 0, 0, err
	}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if lease.Broken() {
			return 0, 0, 0, fmt.Errorf("segment %q: %w", j.Name, fsx.ErrLeaseBroken)
		}
		if e.Pacer != nil && !j.Urgent {
			if err := e.Pacer.Wait(ctx, len(buf)); err != nil {
				return 0, 0, 0, err
			}
		} else if err := ctx.Err(); err != nil {
			return 0, 0, 0, err
		}
		k, rerr := lease.File.Read(buf)
		if k > 0 {
			if _, err := dst.Write(buf[:k]); err != nil {
				return 0, 0, 0, fmt.Errorf("write archive: %w", err)
			}
			srcCRC = fsx.UpdateChecksum(srcCRC, buf[:k])
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, 0, 0, fmt.Errorf("read %q: %w", j.Name, rerr)
		}
	}
	if n != j.Segment.Size {
		return 0, 0, 0, fmt.Errorf("segment %q: read %d bytes, planned %d: %w", j.Name, n, j.Segment.Size, ErrSourceChanged)
	}
	if err := dst.Close(); err != nil {
		return 0, 0, 0, fmt.Errorf("write archive: %w", err)
	}
	return srcCRC, cw.N, cw.Sum, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// verify reads the archive back from the start, decompressing, and compares
// length and CRC with the source's.
func verify(f *os.File, compress string, size int64, crc uint32) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	var r io.Reader = f
	switch compress {
	case "zstd":
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return fmt.Errorf("verify archive: %w", err)
		}
		defer zr.Close()
		r = zr
	case "gzip":
		gr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("verify archive: %w", err)
		}
		r = gr
	}
	h := &fsx.ChecksumWriter{W: io.Discard}
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("verify archive: %w", err)
	}
	if h.N != size || h.Sum != crc {
		return fmt.Errorf("verify archive: read back %d bytes (CRC %08x), source %d bytes (CRC %08x)", h.N, h.Sum, size, crc)
	}
	return nil
}
