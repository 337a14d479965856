package compactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/fsx"
)

// Env is what merge jobs share. The daemon builds one.
type Env struct {
	Ops   *fsx.Runner // the operation layer: journal, leases, protocol
	Pacer *Pacer
	// ChunkSize is the copy unit between pacing and lease checks; default 16 MiB
	// for in-kernel copies, 1 MiB when compressing.
	ChunkSize int
}

// MergeJob concatenates Inputs (adjacent closed segments, in stream order) into Output.
type MergeJob struct {
	Stream       string
	Dir          *fsx.Dir
	DirPath      string        // as configured; journaled so recovery finds the dir
	Inputs       []fsx.FileRef // as scanned: identity, size, mtime, and the name seen
	Output       string
	Compress     string // none|gzip|zstd
	KeepInactive time.Duration
	// Staged, if set, learns the output's identity before any scan can see it
	// (fsx.Spec.Staged): the daemon's growth tracker must not count it as appended.
	Staged func(fsx.FileRef)
}

// MergeResult describes a committed merge.
type MergeResult struct {
	Output   fsx.FileRef
	Bytes    int64 // bytes read from the inputs
	Written  int64 // bytes of the output
	Newlines int
	Inactive bool // inputs kept for keep_inactive
}

// ErrMixedEncoding means the inputs mix text, gzip and zstd in a way one output cannot hold.
var ErrMixedEncoding = errors.New("compactor: inputs mix text, gzip and zstd")

// Merge runs one merge through the operation layer (fsx.Runner.Run: inputs
// leased by identity, journaled, staged, fsynced, re-checked, published without
// replacing, committed, inputs removed wherever they now are). What is the
// merge's own is only how the output's bytes are made: the inputs concatenated
// in order, with a newline inserted after a text input that lacks one (recorded
// in the commit), compressed when compress is gzip or zstd.
//
// A nil error means merged (inputs removed, or kept for keep_inactive). An
// error with a non-empty res.Output.Name means merged but not finished (see
// fsx.ErrInputMissing); any other error means abandoned with the inputs intact.
func (e *Env) Merge(ctx context.Context, j MergeJob) (MergeResult, error) {
	produce := func(ctx context.Context, out *fsx.Output, ins []*fsx.Input) (fsx.Commit, error) {
		if j.Compress == "none" {
			return e.copyRaw(ctx, out, ins)
		}
		return e.copyCompressed(ctx, codec.Parse(j.Compress), out, ins)
	}
	r, err := e.Ops.Run(ctx, fsx.Spec{Kind: fsx.KindMerge, Stream: j.Stream, Src: j.Dir, SrcPath: j.DirPath, Dst: j.Dir,
		Inputs: j.Inputs, Output: j.Output, Produce: produce, Keep: j.KeepInactive > 0, Staged: j.Staged})
	return MergeResult{Output: r.Output, Bytes: r.Read, Written: r.Commit.OutSize, Newlines: len(r.Commit.Newlines), Inactive: r.Kept}, err
}

func sniff(in *fsx.Input) codec.Encoding {
	head := make([]byte, 4)
	n, _ := in.File.ReadAt(head, 0)
	return codec.Sniff(head[:n])
}

// pacedStep is a paced in-kernel copy's unit: the pacer is asked for it, the
// input read ahead by it (fsx.Input.ReadAhead). Small steps keep what the
// disk sees of a paced copy as even as its pace: in fgbench (a writer's
// write+fdatasync every 2 ms during a 1 GiB merge at 64 MiB/s, as the unit
// runs), 1 MiB steps read 2.2 ms at p99, 256 KiB steps 1.0-1.1 ms.
const pacedStep = 256 << 10

// copyRaw concatenates the inputs as they are (compress: none) with in-kernel
// copies, chunk by chunk, pacing and checking the leases between chunks. The
// checksums are then taken in one read-back pass over the output, which also
// verifies what the kernel wrote: the CRC of each input's range and of the
// whole output.
func (e *Env) copyRaw(ctx context.Context, out *fsx.Output, ins []*fsx.Input) (fsx.Commit, error) {
	chunk := int64(e.ChunkSize)
	if chunk <= 0 {
		chunk = 16 << 20
	}
	var c fsx.Commit
	var target codec.Encoding
	starts := make([]int64, len(ins))
	for i, in := range ins {
		enc := sniff(in)
		if i == 0 {
			target = enc
		} else if enc != target {
			return c, fmt.Errorf("%w: %q is %s after %s", ErrMixedEncoding, in.Name, enc, target)
		}
		size := in.Ref.Size
		starts[i] = out.Size()
		for off := int64(0); off < size; {
			if in.Broken() {
				return c, fmt.Errorf("input %q: %w", in.Name, fsx.ErrLeaseBroken)
			}
			want := min(chunk, size-off)
			if e.Pacer.Limited() {
				want = min(want, pacedStep)
				in.ReadAhead(off, pacedStep) // this step and the next, read while the pacer waits
			}
			if err := e.Pacer.Wait(ctx, int(want)); err != nil {
				return c, err
			}
			k, err := out.CopyFrom(in, &off, int(want))
			if err != nil {
				return c, fmt.Errorf("copy %q: %w", in.Name, err)
			}
			if k == 0 {
				return c, fmt.Errorf("input %q ended at %d of %d bytes: %w", in.Name, off, size, fsx.ErrInputChanged)
			}
		}
		if enc == codec.Text && size > 0 {
			last := make([]byte, 1)
			if _, err := in.File.ReadAt(last, size-1); err != nil {
				return c, fmt.Errorf("read %q: %w", in.Name, err)
			}
			if last[0] != '\n' {
				if _, err := out.Write([]byte{'\n'}); err != nil {
					return c, fmt.Errorf("write output: %w", err)
				}
				c.Newlines = append(c.Newlines, uint32(i))
			}
		}
	}
	// Read back what the kernel wrote: each input's range, then its newline if
	// any — while the disk writes it (Flush): the read is CPU, the fsync disk.
	out.Flush()
	buf := make([]byte, 1<<20)
	var outCRC uint32
	total := out.Size()
	for i, in := range ins {
		end := starts[i] + in.Ref.Size
		var inCRC uint32
		for at := starts[i]; at < end; {
			k, err := out.ReadAt(buf[:min(int64(len(buf)), end-at)], at)
			if k > 0 {
				inCRC = fsx.UpdateChecksum(inCRC, buf[:k])
				outCRC = fsx.UpdateChecksum(outCRC, buf[:k])
				at += int64(k)
			} else if err != nil {
				return c, fmt.Errorf("verify output: %w", err)
			}
		}
		c.InputCRCs = append(c.InputCRCs, inCRC)
		next := total
		if i+1 < len(starts) {
			next = starts[i+1]
		}
		if next > end {
			nl := make([]byte, 1)
			if _, err := out.ReadAt(nl, end); err != nil || nl[0] != '\n' {
				return c, fmt.Errorf("verify output: inserted newline missing (%v)", err)
			}
			outCRC = fsx.UpdateChecksum(outCRC, nl)
		}
	}
	c.OutSize, c.OutCRC = total, outCRC
	return c, nil
}

// copyCompressed streams every input into out, in order, through the pacer,
// compressing runs of text inputs; inputs already compressed the same way are
// copied as they are (gzip members and zstd frames concatenate).
func (e *Env) copyCompressed(ctx context.Context, to codec.Encoding, out *fsx.Output, ins []*fsx.Input) (fsx.Commit, error) {
	chunk := e.ChunkSize
	if chunk <= 0 {
		chunk = 1 << 20
	}
	var c fsx.Commit
	// comp is the open compressor for a run of text inputs. One zstd encoder:
	// merges of different streams run side by side.
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
	for i, in := range ins {
		enc := sniff(in)
		dst := io.Writer(out)
		switch enc {
		case codec.Text:
			if comp == nil {
				var err error
				if comp, err = codec.NewWriter(to, out, 1); err != nil {
					return c, err
				}
			}
			dst = comp
		case to: // already compressed the same way: copy as is
			if err := closeComp(); err != nil {
				return c, err
			}
		default:
			return c, fmt.Errorf("%w: %q is %s, output is %s", ErrMixedEncoding, in.Name, enc, to)
		}
		var crc uint32
		var n64 int64
		var lastByte byte
		for {
			if in.Broken() {
				return c, fmt.Errorf("input %q: %w", in.Name, fsx.ErrLeaseBroken)
			}
			// Charged for what this read can bring, not the buffer (see copyOne).
			if n := min(int64(chunk), in.Ref.Size-n64); n > 0 {
				if e.Pacer.Limited() {
					in.ReadAhead(n64, int64(chunk)) // see copyRaw
				}
				if err := e.Pacer.Wait(ctx, int(n)); err != nil {
					return c, err
				}
			} else if err := ctx.Err(); err != nil {
				return c, err
			}
			k, rerr := in.File.Read(buf)
			if k > 0 {
				if _, err := dst.Write(buf[:k]); err != nil {
					return c, fmt.Errorf("write output: %w", err)
				}
				crc = fsx.UpdateChecksum(crc, buf[:k])
				n64 += int64(k)
				lastByte = buf[k-1]
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return c, fmt.Errorf("read input %q: %w", in.Name, rerr)
			}
		}
		if n64 != in.Ref.Size {
			return c, fmt.Errorf("input %q: read %d bytes, planned %d: %w", in.Name, n64, in.Ref.Size, fsx.ErrInputChanged)
		}
		if enc == codec.Text && n64 > 0 && lastByte != '\n' {
			if _, err := dst.Write([]byte{'\n'}); err != nil {
				return c, fmt.Errorf("write output: %w", err)
			}
			c.Newlines = append(c.Newlines, uint32(i))
		}
		c.InputCRCs = append(c.InputCRCs, crc)
	}
	if err := closeComp(); err != nil {
		return c, err
	}
	c.OutSize = out.Size()
	c.OutCRC, _ = out.Sum()
	return c, nil
}
