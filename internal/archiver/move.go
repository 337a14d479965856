package archiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/fsx"
)

// Pacer is what the move job needs of the shared token bucket.
type Pacer interface {
	Wait(ctx context.Context, n int) error
	Limited() bool // a max_rate applies
}

// Env is what move jobs share.
type Env struct {
	Ops   *fsx.Runner // the operation layer: journal, leases, protocol
	Pacer Pacer       // nil: unpaced
}

// MoveJob moves one closed segment from its hot dir into the stream's cold subdir.
type MoveJob struct {
	Stream   string
	Hot      *fsx.Dir
	HotPath  string // as configured; journaled
	Cold     *fsx.Dir
	ColdPath string // the stream's cold subdir; journaled
	// Store, when set, is where the archive goes instead of Cold: an object
	// store (always a journaled copy, staged in Hot).
	Store   fsx.Publisher
	Segment fsx.FileRef // as scanned: identity, size, mtime, the name seen
	// More are the segments that follow Segment in the same archive (Batch),
	// in stream order; all text. A batch is always copied, never renamed.
	More     []fsx.FileRef
	Output   string // the cold name, as planned (see ColdName); never replaces
	Compress string // none|gzip|zstd
	Urgent   bool   // not paced: a breach is near
	// Sparse: the segment is mostly holes (fsx.Sparse); it is archived as it
	// is, holes kept, whatever Compress says — compressing would read every
	// byte of its holes.
	Sparse bool
	// Encoding is the segment's own (magic bytes), as planned: a gzip or zstd
	// segment is archived as it is (Output carries one suffix, see ColdName).
	Encoding codec.Encoding
}

// MoveResult describes a finished move.
type MoveResult struct {
	Output  string // name in the cold subdir
	Renamed bool   // moved by rename: same filesystem, bytes as they are
	Bytes   int64  // source bytes
	Written int64  // bytes in the cold dir
}

// Move archives one segment through the operation layer. On the same
// filesystem, when the bytes go as they are (compress none, or a segment that
// is already gzip or zstd), it is a journaled rename (fsx.Runner.Move);
// otherwise a journaled copy (fsx.Runner.Run) whose bytes are the segment
// compressed — or as it is, when it is compressed already — verified by
// reading the archive back (VerifyArchive) before the segment is removed by
// identity.
func (e *Env) Move(ctx context.Context, j MoveJob) (MoveResult, error) {
	asIs := j.Compress == "none" || j.Sparse || j.Encoding != codec.Text
	dst := fsx.Publisher(j.Cold)
	if j.Store != nil {
		dst = j.Store
	} else if asIs && len(j.More) == 0 && j.Hot.Dev() == j.Cold.Dev() {
		err := e.Ops.Move(ctx, fsx.MoveSpec{Stream: j.Stream, Src: j.Hot, SrcPath: j.HotPath, Dst: j.Cold, DstPath: j.ColdPath,
			Input: j.Segment, Output: j.Output})
		if !errors.Is(err, fsx.ErrCrossDevice) { // a bind mount: same device number, another mount
			return MoveResult{Output: j.Output, Renamed: true, Bytes: j.Segment.Size, Written: j.Segment.Size}, err
		}
	}
	produce := func(ctx context.Context, out *fsx.Output, ins []*fsx.Input) (fsx.Commit, error) {
		if j.Sparse {
			return e.copySparse(ctx, j, out, ins[0])
		}
		return e.copy(ctx, j, out, ins)
	}
	r, err := e.Ops.Run(ctx, fsx.Spec{Kind: fsx.KindArchive, Stream: j.Stream, Src: j.Hot, SrcPath: j.HotPath, Dst: dst,
		Inputs: append([]fsx.FileRef{j.Segment}, j.More...), Output: j.Output, Produce: produce})
	return MoveResult{Output: j.Output, Bytes: r.Read, Written: r.Commit.OutSize}, err
}

// copy streams the segments, in order, into out: through the compressor when
// they are text and compress is gzip or zstd, else as they are (one segment).
func (e *Env) copy(ctx context.Context, j MoveJob, out *fsx.Output, ins []*fsx.Input) (fsx.Commit, error) {
	var c fsx.Commit
	var dst io.WriteCloser = nopCloser{out}
	if j.Encoding == codec.Text && j.Compress != "none" {
		// Two block encoders: a stream's archivals run one after another, so this
		// is where one stream's archival gets a second core.
		var err error
		if dst, err = codec.NewWriter(codec.Parse(j.Compress), out, 2); err != nil {
			return c, err
		}
	}
	buf := make([]byte, 1<<20)
	for _, in := range ins {
		crc, err := e.copyOne(ctx, j, dst, in, buf)
		if err != nil {
			return c, err
		}
		c.InputCRCs = append(c.InputCRCs, crc)
	}
	if err := dst.Close(); err != nil {
		return c, fmt.Errorf("write archive: %w", err)
	}
	c.OutSize = out.Size()
	c.OutCRC, _ = out.Sum()
	return c, nil
}

// copyOne streams one segment into dst, paced, and returns its CRC-32C.
func (e *Env) copyOne(ctx context.Context, j MoveJob, dst io.Writer, in *fsx.Input, buf []byte) (uint32, error) {
	var srcCRC uint32
	var read int64
	for {
		if in.Broken() {
			return 0, fmt.Errorf("segment %q: %w", in.Name, fsx.ErrLeaseBroken)
		}
		// Charge the pacer for the bytes this read can bring, not the buffer:
		// a 2 KB segment charged 1 MiB twice (data, then EOF) slept 31 ms at
		// 64 MiB/s, and 1,000 tiny segments took 31 s.
		if n := min(int64(len(buf)), in.Ref.Size-read); e.Pacer != nil && !j.Urgent && n > 0 {
			if e.Pacer.Limited() {
				// This read and the next, from the disk while the pacer waits,
				// in the job's steps (fsx.Input.ReadAhead).
				in.ReadAhead(read, int64(len(buf)))
			}
			if err := e.Pacer.Wait(ctx, int(n)); err != nil {
				return 0, err
			}
		} else if err := ctx.Err(); err != nil {
			return 0, err
		}
		k, rerr := in.File.Read(buf)
		if k > 0 {
			if _, err := dst.Write(buf[:k]); err != nil {
				return 0, fmt.Errorf("write archive: %w", err)
			}
			srcCRC = fsx.UpdateChecksum(srcCRC, buf[:k])
			read += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, fmt.Errorf("read %q: %w", in.Name, rerr)
		}
	}
	if read != in.Ref.Size {
		return 0, fmt.Errorf("segment %q: read %d bytes, planned %d: %w", in.Name, read, in.Ref.Size, fsx.ErrInputChanged)
	}
	return srcCRC, nil
}

// copySparse copies a mostly-hole segment as it is, in the kernel, keeping its
// holes (they are skipped, not read), then checksums the source and the copy
// reading only their data.
func (e *Env) copySparse(ctx context.Context, j MoveJob, out *fsx.Output, in *fsx.Input) (fsx.Commit, error) {
	var c fsx.Commit
	const chunk = 1 << 20
	for off := int64(0); off < in.Ref.Size; {
		if in.Broken() {
			return c, fmt.Errorf("segment %q: %w", in.Name, fsx.ErrLeaseBroken)
		}
		want := int(min(chunk, in.Ref.Size-off))
		if e.Pacer != nil && !j.Urgent {
			if e.Pacer.Limited() {
				in.ReadAhead(off, chunk) // see copyOne
			}
			if err := e.Pacer.Wait(ctx, want); err != nil {
				return c, err
			}
		} else if err := ctx.Err(); err != nil {
			return c, err
		}
		k, err := out.CopyFrom(in, &off, want)
		if err != nil {
			return c, fmt.Errorf("copy %q: %w", in.Name, err)
		}
		if k == 0 {
			return c, fmt.Errorf("segment %q ended at %d of %d bytes: %w", in.Name, off, in.Ref.Size, fsx.ErrInputChanged)
		}
	}
	src, err := fsx.ChecksumFile(in.File, in.Ref.Size)
	if err != nil {
		return c, err
	}
	if c.OutCRC, err = out.Checksum(); err != nil {
		return c, err
	}
	c.OutSize, c.InputCRCs = out.Size(), []uint32{src}
	return c, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// VerifyArchive is the archive kind's check (fsx.VerifyFunc): the archive,
// decompressed when it is the segment compressed (or read as it is when it is
// the segment's own bytes), has the segment's length and checksum.
func VerifyArchive(out io.Reader, ins []fsx.FileRef, c *fsx.Commit) error {
	if len(ins) == 0 || len(c.InputCRCs) != len(ins) {
		return fmt.Errorf("archive of %d inputs with %d checksums", len(ins), len(c.InputCRCs))
	}
	if len(ins) == 1 && c.OutSize == ins[0].Size && c.OutCRC == c.InputCRCs[0] {
		return nil // copied as it is; size and checksum of the file are checked by the layer
	}
	b := make([]byte, 4)
	n, _ := io.ReadFull(out, b)
	r, err := codec.NewReader(codec.Sniff(b[:n]), io.MultiReader(bytes.NewReader(b[:n]), out))
	if err != nil {
		return fmt.Errorf("verify archive: %w", err)
	}
	defer r.Close()
	// Each input's bytes in turn, then nothing more.
	for i, in := range ins {
		h := &fsx.ChecksumWriter{W: io.Discard}
		if _, err := io.CopyN(h, r, in.Size); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("verify archive: %w", err)
		}
		if h.N != in.Size || h.Sum != c.InputCRCs[i] {
			return fmt.Errorf("verify archive: input %d read back %d bytes (CRC %08x), source %d bytes (CRC %08x)", i, h.N, h.Sum, in.Size, c.InputCRCs[i])
		}
	}
	if n, _ := io.Copy(io.Discard, r); n != 0 {
		return fmt.Errorf("verify archive: %d bytes more than its inputs", n)
	}
	return nil
}
