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
// checksums are taken by reading back what the kernel wrote — each input's
// range of the output and its inserted newline, if any — which also verifies
// the copy: the CRC of each input's range and of the whole output. The
// read-back of an input's range runs (readBack) while the next input is
// copied: the read is CPU and page cache, the copy mostly waits on the disk.
func (e *Env) copyRaw(ctx context.Context, out *fsx.Output, ins []*fsx.Input) (c fsx.Commit, err error) {
	chunk := int64(e.ChunkSize)
	if chunk <= 0 {
		chunk = 16 << 20
	}
	var target codec.Encoding
	rb := startReadBack(out, len(ins))
	defer func() {
		crcs, outCRC, rerr := rb.wait()
		if err == nil && rerr != nil {
			err = fmt.Errorf("verify output: %w", rerr)
		}
		if err == nil {
			c.InputCRCs, c.OutSize, c.OutCRC = crcs, out.Size(), outCRC
		}
	}()
	for i, in := range ins {
		enc := sniff(in)
		if i == 0 {
			target = enc
		} else if enc != target {
			return c, fmt.Errorf("%w: %q is %s after %s", ErrMixedEncoding, in.Name, enc, target)
		}
		size := in.Ref.Size
		start := out.Size()
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
		rb.spans <- span{start: start, end: start + size, next: out.Size()}
	}
	// The disk writes what is left (Flush) while the last range is read back.
	out.Flush()
	return c, nil
}

// span is one input's range of a merge's output, [start, end), and where the
// next one starts: end, or end+1 after an inserted newline.
type span struct{ start, end, next int64 }

// readBack checksums a merge's output span by span, in order, in its own
// goroutine, as copyRaw hands them over.
type readBack struct {
	spans  chan span
	done   chan struct{}
	crcs   []uint32
	outCRC uint32
	err    error
}

func startReadBack(out *fsx.Output, n int) *readBack {
	rb := &readBack{spans: make(chan span, n), done: make(chan struct{})}
	go func() {
		defer close(rb.done)
		buf := make([]byte, 1<<20)
		for sp := range rb.spans {
			if rb.err != nil {
				continue // drain: copyRaw stops at its next span
			}
			var inCRC uint32
			for at := sp.start; at < sp.end; {
				k, err := out.ReadAt(buf[:min(int64(len(buf)), sp.end-at)], at)
				if k > 0 {
					inCRC = fsx.UpdateChecksum(inCRC, buf[:k])
					rb.outCRC = fsx.UpdateChecksum(rb.outCRC, buf[:k])
					at += int64(k)
				} else if errors.Is(err, io.EOF) {
					// A hole the input ends in, skipped: nothing is written past
					// it yet (the next input, or the final truncate, extends the
					// output). It reads as zeros.
					inCRC = fsx.ChecksumZeros(inCRC, sp.end-at)
					rb.outCRC = fsx.ChecksumZeros(rb.outCRC, sp.end-at)
					at = sp.end
				} else if err != nil {
					rb.err = err
					break
				}
			}
			if rb.err != nil {
				continue
			}
			rb.crcs = append(rb.crcs, inCRC)
			if sp.next > sp.end {
				nl := make([]byte, 1)
				if _, err := out.ReadAt(nl, sp.end); err != nil || nl[0] != '\n' {
					rb.err = fmt.Errorf("inserted newline missing (%v)", err)
					continue
				}
				rb.outCRC = fsx.UpdateChecksum(rb.outCRC, nl)
			}
		}
	}()
	return rb
}

// wait ends the read-back (no more spans) and gives its checksums.
func (rb *readBack) wait() ([]uint32, uint32, error) {
	close(rb.spans)
	<-rb.done
	return rb.crcs, rb.outCRC, rb.err
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
