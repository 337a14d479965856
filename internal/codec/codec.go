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
// (log lines repeat within far less; buffers drop from ~20 MiB to ~4) and
// `encoders` block encoders.
func NewWriter(e Encoding, w io.Writer, encoders int) (io.WriteCloser, error) {
	switch e {
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(max(encoders, 1)),
			zstd.WithWindowSize(1<<20))
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
