// Package codec knows the encodings a segment can have (text, gzip, zstd): how
// to recognise them by their magic bytes, their file extensions, and the
// compressors and decompressors logcompactd uses, with the options it uses
// them with. It touches no file.
package codec

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Encoding is what a segment's bytes are.
type Encoding int

const (
	Text Encoding = iota // anything that is not gzip or zstd
	Gzip
	Zstd
)

func (e Encoding) String() string { return [...]string{"text", "gzip", "zstd"}[e] }

// Parse maps a compress setting (none|gzip|zstd) to the encoding it produces.
func Parse(compress string) Encoding {
	switch compress {
	case "gzip":
		return Gzip
	case "zstd":
		return Zstd
	}
	return Text
}

// Sniff tells a segment's encoding from its first bytes (4 are enough).
func Sniff(head []byte) Encoding {
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return Gzip
	case len(head) >= 4 && bytes.Equal(head[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	}
	return Text
}

// Ext is the file extension of an encoding ("" for text).
func (e Encoding) Ext() string { return [...]string{"", ".gz", ".zst"}[e] }

// WithExt returns name with e's extension, added only if name does not end with
// it already: an archive has one suffix, never ".zst.zst".
func WithExt(name string, e Encoding) string {
	if strings.HasSuffix(name, e.Ext()) {
		return name
	}
	return name + e.Ext()
}

// NewWriter returns a compressor for e writing to w. zstd uses a 1 MiB window
// (log lines repeat within far less; buffers drop from ~20 MiB to ~4). With
// one encoder it is one zstd stream; with more, the input is cut into frames
// of FrameSize compressed side by side by that many encoders (see
// frameWriter).
func NewWriter(e Encoding, w io.Writer, encoders int) (io.WriteCloser, error) {
	switch e {
	case Zstd:
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(max(encoders, 1)),
			zstd.WithWindowSize(1<<20))
		if err != nil {
			return nil, err
		}
		if encoders <= 1 {
			enc.Reset(w)
			return enc, nil
		}
		return newFrameWriter(w, enc, encoders, FrameSize), nil
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	}
	return nil, fmt.Errorf("codec: no compressor for %s", e)
}

// NewReader returns a decompressor for e reading r (one goroutine, low memory);
// for text, r itself.
func NewReader(e Encoding, r io.Reader) (io.ReadCloser, error) {
	switch e {
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	case Gzip:
		return gzip.NewReader(r)
	}
	return io.NopCloser(r), nil
}

// FrameSize is the input of one zstd frame when several encoders share a
// stream. Frames are independent (every decoder reads them one after another,
// as `zstd -d` does), so they compress in parallel: one encoder's stream mode
// only overlaps a block's compression with filling the next, and ran at 0.55×
// the `zstd -3` command. With a 1 MiB window a frame boundary every 4 MiB costs
// almost no ratio (4.36 either way on the bench's log lines); smaller frames
// were slower (each EncodeAll resets its tables).
const FrameSize = 4 << 20

// frameWriter is an io.WriteCloser that compresses its input in independent
// zstd frames of size bytes, up to `workers` at a time, and writes them to w
// in input order. Memory: workers+1 input buffers of size bytes and their
// outputs. Every goroutine it starts has ended when Close returns.
type frameWriter struct {
	w       io.Writer
	enc     *zstd.Encoder
	workers int
	size    int
	buf     []byte      // the frame being filled
	flight  []*frameJob // started, in input order
	free    [][]byte    // input buffers to reuse
	outs    [][]byte    // output buffers to reuse
	frames  int         // frames started
	err     error       // the first error writing to w; sticky
	closed  bool
}

type frameJob struct {
	in, out []byte
	done    sync.WaitGroup
}

func newFrameWriter(w io.Writer, enc *zstd.Encoder, workers, size int) *frameWriter {
	return &frameWriter{w: w, enc: enc, workers: workers, size: size}
}

func (f *frameWriter) Write(p []byte) (int, error) {
	if f.closed {
		return 0, fmt.Errorf("codec: write after close")
	}
	n := 0
	for len(p) > 0 {
		if f.err != nil {
			return n, f.err
		}
		if f.buf == nil {
			if k := len(f.free); k > 0 {
				f.buf, f.free = f.free[k-1][:0], f.free[:k-1]
			} else {
				f.buf = make([]byte, 0, f.size)
			}
		}
		k := copy(f.buf[len(f.buf):f.size], p)
		f.buf = f.buf[:len(f.buf)+k]
		p, n = p[k:], n+k
		if len(f.buf) == f.size {
			f.start()
		}
	}
	return n, f.err
}

// start compresses the filled buffer on its own goroutine, first writing out
// the oldest frame if as many as workers are in flight.
func (f *frameWriter) start() {
	if len(f.flight) == f.workers {
		f.finishOldest()
	}
	j := &frameJob{in: f.buf}
	if k := len(f.outs); k > 0 {
		j.out, f.outs = f.outs[k-1][:0], f.outs[:k-1]
	}
	f.buf = nil
	f.frames++
	j.done.Add(1)
	go func() {
		defer j.done.Done()
		j.out = f.enc.EncodeAll(j.in, j.out)
	}()
	f.flight = append(f.flight, j)
}

// finishOldest waits for the oldest frame in flight and writes it (unless a
// write failed before).
func (f *frameWriter) finishOldest() {
	j := f.flight[0]
	f.flight = f.flight[1:]
	j.done.Wait()
	if f.err == nil {
		if _, err := f.w.Write(j.out); err != nil {
			f.err = err
		}
	}
	f.free, f.outs = append(f.free, j.in), append(f.outs, j.out)
}

// Close compresses what is left (an empty input is one empty frame, as the
// stream encoder writes), writes every frame in order and waits for all.
func (f *frameWriter) Close() error {
	if f.closed {
		return f.err
	}
	f.closed = true
	if f.err == nil && (len(f.buf) > 0 || f.frames == 0) {
		if f.buf == nil {
			f.buf = []byte{}
		}
		f.start()
	}
	for len(f.flight) > 0 {
		f.finishOldest()
	}
	f.buf, f.free, f.outs = nil, nil, nil
	return f.err
}
