package compactor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// Env is what merge jobs and recovery share. The daemon builds one.
type Env struct {
	Journal   *fsx.Journal
	Leases    *fsx.Leases
	Pacer     *Pacer
	Log       *zap.Logger
	fsx.Hooks // clock and named-step hook ("merge:created", "archive:committed", ...)
	// ChunkSize is the copy unit between pacing and lease checks; default 1 MiB.
	ChunkSize int
}

// MergeJob concatenates Inputs (adjacent closed segments, in stream order) into Output.
type MergeJob struct {
	Stream       string
	Dir          *fsx.Dir
	DirPath      string     // as configured; journaled so recovery finds the dir
	Inputs       []fsx.Stat // as scanned; Names in InputNames
	InputNames   []string
	Output       string
	Compress     string // none|gzip|zstd
	KeepInactive time.Duration
}

// MergeResult describes a committed merge.
type MergeResult struct {
	Output   fsx.FileRef
	Bytes    int64 // bytes read from the inputs
	Written  int64 // bytes of the output
	Newlines int
	Inactive bool // inputs kept for keep_inactive
}

// Sentinel errors of a merge that was abandoned with its inputs intact.
var (
	ErrInputChanged  = errors.New("compactor: an input changed during the merge")
	ErrMixedEncoding = errors.New("compactor: inputs mix text, gzip and zstd")
	ErrFsync         = errors.New("compactor: fsync of the output failed")
)

type encoding int

const (
	encText encoding = iota
	encGzip
	encZstd
)

func (x encoding) String() string { return [...]string{"text", "gzip", "zstd"}[x] }

func sniff(head []byte) encoding {
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return encGzip
	case len(head) >= 4 && bytes.Equal(head[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return encZstd
	}
	return encText
}

// Merge runs one merge job through the crash-safe protocol:
//
//  1. read-lease every input (refused if any process has it open for writing)
//     and check it is still the file that was planned;
//  2. journal Begin (inputs by identity, size, mtime; output and temp names);
//  3. create the temp output (O_EXCL, owner and mode of the first input), journal Created;
//  4. copy each input in chunks, paced, stopping if a lease breaks or ctx ends;
//     insert a newline after a text input that lacks one;
//  5. fsync the output (a failed fsync discards it), check its size;
//  6. re-check every input (identity, size, mtime, lease);
//  7. rename the temp to the output name without replacing anything, fsync the dir;
//  8. journal Commit (output size and CRC-32C, input CRCs, inserted newlines);
//  9. unlink the inputs (each only if it is still the same file), fsync the dir,
//     journal Done — or, with keep_inactive, leave them inactive for later.
//
// Any failure before step 8 removes what the job created and journals Done: the
// inputs are intact and no output is visible. After step 8 the op is committed
// and recovery (or the next finisher) completes step 9.
func (e *Env) Merge(ctx context.Context, j MergeJob) (res MergeResult, err error) {
	e.Step("merge:start")
	leases := make([]*fsx.Lease, 0, len(j.Inputs))
	defer func() {
		for _, l := range leases {
			_ = l.Release()
		}
	}()
	refs := make([]fsx.FileRef, len(j.Inputs))
	for i, st := range j.Inputs {
		refs[i] = fsx.RefOf(j.InputNames[i], st)
		e.Step(fmt.Sprintf("merge:before-open:%d", i))
		l, err := e.Leases.Take(j.Dir, j.InputNames[i], st)
		if err != nil {
			return res, fmt.Errorf("open input %q: %w", j.InputNames[i], err)
		}
		leases = append(leases, l)
		if !refs[i].Matches(l.Stat) {
			return res, fmt.Errorf("input %q: %w (since the scan)", j.InputNames[i], ErrInputChanged)
		}
	}
	op := fsx.Op{Kind: "merge", Stream: j.Stream, Dir: j.DirPath, Output: j.Output, Temp: fsx.RandomTempName(), Inputs: refs}
	id, err := e.Journal.Begin(op)
	if err != nil {
		return res, err
	}
	e.Step("merge:begun")

	var created *fsx.FileRef
	renamed := false
	abort := func(cause error) (MergeResult, error) {
		var errs []error
		if created != nil {
			errs = append(errs, j.Dir.Unlink(op.Temp, created.Stat()))
			if renamed {
				errs = append(errs, j.Dir.Unlink(op.Output, created.Stat()))
			}
		} else {
			errs = append(errs, j.Dir.Unlink(op.Temp, fsx.Stat{}))
		}
		errs = append(errs, j.Dir.Sync())
		if cerr := errors.Join(errs...); cerr != nil {
			// Leave the op pending: recovery will finish the clean-up.
			return MergeResult{}, errors.Join(cause, fmt.Errorf("clean up abandoned merge: %w", cerr))
		}
		return MergeResult{}, errors.Join(cause, e.Journal.Done(id))
	}

	out, st, err := j.Dir.CreateOutput(op.Temp, j.Inputs[0])
	if err != nil {
		return abort(err)
	}
	ref := fsx.RefOf(op.Temp, st)
	created = &ref
	closeOut := func() { _ = out.Close() }
	if err := e.Journal.Created(id, ref); err != nil {
		closeOut()
		return abort(err)
	}
	e.Step("merge:created")

	var commit fsx.Commit
	var read int64
	if j.Compress == "none" {
		commit, read, err = e.copyRaw(ctx, j, leases, out, fsx.NewWriteBehind(out, 0))
	} else {
		commit, read, err = e.copyInputs(ctx, j, leases, fsx.NewWriteBehind(out, 0))
	}
	if err != nil {
		closeOut()
		return abort(err)
	}
	last := j.Inputs[len(j.Inputs)-1].Mtime()
	if err := unix.Futimes(int(out.Fd()), []unix.Timeval{unix.NsecToTimeval(last.UnixNano()), unix.NsecToTimeval(last.UnixNano())}); err != nil {
		closeOut()
		return abort(fmt.Errorf("set output mtime: %w", err))
	}
	if err := out.Sync(); err != nil {
		closeOut()
		return abort(fmt.Errorf("%w: %v", ErrFsync, err))
	}
	if fst, err := fsx.Fstat(out); err != nil || fst.Size != commit.OutSize {
		closeOut()
		return abort(fmt.Errorf("output size %d after fsync, wrote %d: %w", fst.Size, commit.OutSize, err))
	}
	closeOut()
	e.Step("merge:synced")

	for i, l := range leases {
		cur, err := j.Dir.Stat(j.InputNames[i])
		if l.Broken() {
			return abort(fmt.Errorf("input %q: %w", j.InputNames[i], fsx.ErrLeaseBroken))
		}
		if err != nil || !refs[i].Matches(cur) {
			return abort(fmt.Errorf("input %q: %w", j.InputNames[i], ErrInputChanged))
		}
	}
	e.Step("merge:rechecked")
	if err := ctx.Err(); err != nil {
		return abort(err)
	}
	if err := j.Dir.RenameNoReplace(op.Temp, op.Output); err != nil {
		return abort(err)
	}
	renamed = true
	e.Step("merge:renamed")
	if err := j.Dir.Sync(); err != nil {
		return abort(err)
	}
	e.Step("merge:dirsynced")
	commit.AtNs = e.Clock().UnixNano()
	if err := e.Journal.Commit(id, commit); err != nil {
		// Not committed as far as recovery knows: roll back.
		return abort(err)
	}
	e.Step("merge:committed")
	for _, l := range leases {
		_ = l.Release()
	}
	leases = nil
	res = MergeResult{Output: fsx.RefOf(op.Output, st), Bytes: read, Written: commit.OutSize, Newlines: len(commit.Newlines)}
	res.Output.Size, res.Output.MtimeNs = commit.OutSize, last.UnixNano()
	if j.KeepInactive > 0 {
		res.Inactive = true
		return res, nil
	}
	op.ID, op.Created = id, created
	return res, e.finish(j.Dir, op)
}

// finish removes the inputs of a committed op (each only if still the same file),
// fsyncs the dir and journals Done. It is idempotent: recovery calls it too.
func (e *Env) finish(d *fsx.Dir, op fsx.Op) error {
	for i, in := range op.Inputs {
		if err := d.Unlink(in.Name, in.Stat()); err != nil && !errors.Is(err, fsx.ErrChanged) {
			return fmt.Errorf("remove merged input %q: %w", in.Name, err)
		}
		e.Step(fmt.Sprintf("merge:unlinked:%d", i))
	}
	if err := d.Sync(); err != nil {
		return err
	}
	e.Step("merge:inputs-synced")
	if err := e.Journal.Done(op.ID); err != nil {
		return err
	}
	e.Step("merge:done")
	return nil
}

// copyRaw concatenates the inputs as they are (compress: none) with in-kernel
// copies (copy_file_range, as cat does: no user-space copy, a reflink where the
// filesystem can), chunk by chunk, pacing and checking the leases between
// chunks. The checksums are then taken in one read-back pass over the output,
// which also verifies what the kernel wrote: the CRC of each input's range and
// the CRC of the whole output.
func (e *Env) copyRaw(ctx context.Context, j MergeJob, leases []*fsx.Lease, out *os.File, wb *fsx.WriteBehind) (fsx.Commit, int64, error) {
	const pace = 1 << 20 // the pacer's unit
	chunk := int64(e.ChunkSize)
	if chunk <= 0 {
		chunk = 16 << 20
	}
	var c fsx.Commit
	var pos int64
	var target encoding
	starts := make([]int64, len(leases))
	for i, l := range leases {
		head := make([]byte, 4)
		n, _ := l.File.ReadAt(head, 0)
		enc := sniff(head[:n])
		if i == 0 {
			target = enc
		} else if enc != target {
			return c, 0, fmt.Errorf("%w: %q is %s after %s", ErrMixedEncoding, j.InputNames[i], enc, target)
		}
		size := j.Inputs[i].Size
		starts[i] = pos
		for off := int64(0); off < size; {
			if l.Broken() {
				return c, 0, fmt.Errorf("input %q: %w", j.InputNames[i], fsx.ErrLeaseBroken)
			}
			want := min(chunk, size-off)
			if e.Pacer.Limited() {
				want = min(want, pace) // small steps keep a paced copy smooth
			}
			if err := e.Pacer.Wait(ctx, int(want)); err != nil {
				return c, 0, err
			}
			k, err := copyChunk(l.File, &off, out, int(want))
			if err != nil {
				return c, 0, fmt.Errorf("copy %q: %w", j.InputNames[i], err)
			}
			if k == 0 {
				return c, 0, fmt.Errorf("input %q ended at %d of %d bytes: %w", j.InputNames[i], off, size, ErrInputChanged)
			}
			wb.Advance(pos + off)
		}
		pos += size
		if enc == encText && size > 0 {
			last := make([]byte, 1)
			if _, err := l.File.ReadAt(last, size-1); err != nil {
				return c, 0, fmt.Errorf("read %q: %w", j.InputNames[i], err)
			}
			if last[0] != '\n' {
				if _, err := out.Write([]byte{'\n'}); err != nil {
					return c, 0, fmt.Errorf("write output: %w", err)
				}
				pos++
				c.Newlines = append(c.Newlines, uint32(i))
			}
		}
		e.Step(fmt.Sprintf("merge:copied:%d", i))
	}
	// Read back what the kernel wrote: each input's range, then its newline if any.
	buf := make([]byte, 1<<20)
	var outCRC uint32
	for i := range leases {
		end := starts[i] + j.Inputs[i].Size
		var inCRC uint32
		for at := starts[i]; at < end; {
			k, err := out.ReadAt(buf[:min(int64(len(buf)), end-at)], at)
			if k > 0 {
				inCRC = fsx.UpdateChecksum(inCRC, buf[:k])
				outCRC = fsx.UpdateChecksum(outCRC, buf[:k])
				at += int64(k)
			} else if err != nil {
				return c, 0, fmt.Errorf("verify output: %w", err)
			}
		}
		c.InputCRCs = append(c.InputCRCs, inCRC)
		next := pos
		if i+1 < len(starts) {
			next = starts[i+1]
		}
		if next > end {
			nl := make([]byte, 1)
			if _, err := out.ReadAt(nl, end); err != nil || nl[0] != '\n' {
				return c, 0, fmt.Errorf("verify output: inserted newline missing (%v)", err)
			}
			outCRC = fsx.UpdateChecksum(outCRC, nl)
		}
	}
	c.OutSize, c.OutCRC = pos, outCRC
	return c, pos - int64(len(c.Newlines)), nil
}

// copyChunk copies up to n bytes from in at *off to out's current offset, in
// the kernel where it can, else through a buffer; it advances *off.
func copyChunk(in *os.File, off *int64, out *os.File, n int) (int, error) {
	k, err := unix.CopyFileRange(int(in.Fd()), off, int(out.Fd()), nil, n, 0)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) {
		return 0, err
	}
	buf := make([]byte, min(n, 1<<20))
	k, err = in.ReadAt(buf, *off)
	if k > 0 {
		if _, werr := out.Write(buf[:k]); werr != nil {
			return 0, werr
		}
		*off += int64(k)
	}
	if err == io.EOF {
		err = nil
	}
	return k, err
}

// copyInputs streams every input into out, in order, through the pacer,
// compressing text inputs (compress: gzip|zstd).
func (e *Env) copyInputs(ctx context.Context, j MergeJob, leases []*fsx.Lease, out io.Writer) (fsx.Commit, int64, error) {
	chunk := e.ChunkSize
	if chunk <= 0 {
		chunk = 1 << 20
	}
	cw := &fsx.ChecksumWriter{W: out}
	var c fsx.Commit
	var total int64
	// comp is the open compressor for a run of text inputs (compress != none).
	var comp io.WriteCloser
	closeComp := func() error {
		if comp == nil {
			return nil
		}
		err := comp.Close()
		comp = nil
		return err
	}
	buf := make([]byte, chunk)
	var target encoding
	for i, l := range leases {
		head := make([]byte, 4)
		n, _ := l.File.ReadAt(head, 0)
		enc := sniff(head[:n])
		dst := io.Writer(cw)
		switch {
		case j.Compress == "none":
			if i == 0 {
				target = enc
			} else if enc != target {
				return c, 0, fmt.Errorf("%w: %q is %s after %s", ErrMixedEncoding, j.InputNames[i], enc, target)
			}
		case enc == encText:
			if comp == nil {
				var err error
				if j.Compress == "gzip" {
					comp, err = gzip.NewWriterLevel(cw, gzip.DefaultCompression)
				} else {
					// As archival's (internal/archiver/move.go): a 1 MiB window; one
					// goroutine, since merges of different streams run side by side.
					comp, err = zstd.NewWriter(cw, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
				}
				if err != nil {
					return c, 0, err
				}
			}
			dst = comp
		case (enc == encGzip) == (j.Compress == "gzip") && (enc == encZstd) == (j.Compress == "zstd"):
			if err := closeComp(); err != nil { // already compressed the same way: copy as is
				return c, 0, err
			}
		default:
			return c, 0, fmt.Errorf("%w: %q is %s, output is %s", ErrMixedEncoding, j.InputNames[i], enc, j.Compress)
		}
		var crc uint32
		var n64 int64
		var lastByte byte
		for {
			if l.Broken() {
				return c, 0, fmt.Errorf("input %q: %w", j.InputNames[i], fsx.ErrLeaseBroken)
			}
			if err := e.Pacer.Wait(ctx, chunk); err != nil {
				return c, 0, err
			}
			k, rerr := l.File.Read(buf)
			if k > 0 {
				if _, err := dst.Write(buf[:k]); err != nil {
					return c, 0, fmt.Errorf("write output: %w", err)
				}
				crc = fsx.UpdateChecksum(crc, buf[:k])
				n64 += int64(k)
				lastByte = buf[k-1]
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return c, 0, fmt.Errorf("read input %q: %w", j.InputNames[i], rerr)
			}
		}
		if n64 != j.Inputs[i].Size {
			return c, 0, fmt.Errorf("input %q: read %d bytes, planned %d: %w", j.InputNames[i], n64, j.Inputs[i].Size, ErrInputChanged)
		}
		if enc == encText && n64 > 0 && lastByte != '\n' {
			if _, err := dst.Write([]byte{'\n'}); err != nil {
				return c, 0, fmt.Errorf("write output: %w", err)
			}
			c.Newlines = append(c.Newlines, uint32(i))
		}
		c.InputCRCs = append(c.InputCRCs, crc)
		total += n64
		e.Step(fmt.Sprintf("merge:copied:%d", i))
	}
	if err := closeComp(); err != nil {
		return c, 0, err
	}
	c.OutSize, c.OutCRC = cw.N, cw.Sum
	return c, total, nil
}
