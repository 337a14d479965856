package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

// logLines is n bytes of varied log lines (deterministic).
func logLines(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "2026-12-02T10:%02d:%02dZ level=info req=%08x path=/api/items/%d status=200\n",
			r.IntN(60), r.IntN(60), r.Uint32(), r.IntN(100000))
	}
	return b.Bytes()[:n]
}

// splitFrames cuts a zstd stream into its frames (each must decode alone).
func splitFrames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var frames [][]byte
	for len(b) > 0 {
		var h zstd.Header
		if err := h.Decode(b); err != nil {
			t.Fatalf("frame %d: %v", len(frames), err)
		}
		// The frame ends where the next magic number starts (none of the
		// test's compressed bytes repeat it by chance: checked by decoding).
		end := bytes.Index(b[4:], []byte{0x28, 0xb5, 0x2f, 0xfd})
		if end < 0 {
			end = len(b)
		} else {
			end += 4
		}
		frames = append(frames, b[:end])
		b = b[end:]
	}
	return frames
}

// With several encoders, zstd output is independent frames of FrameSize input
// bytes each — what lets them compress side by side — and it decodes, with our
// reader and with the zstd command, to exactly the input, whatever the sizes
// of the writes and of the input (empty, one byte, around a frame boundary).
func TestSeveralEncodersWriteIndependentFrames(t *testing.T) {
	defer goleak.VerifyNone(t)
	zstdCmd := testutil.RequireTool(t, "zstd")
	for _, n := range []int{0, 1, FrameSize - 1, FrameSize, FrameSize + 1, 3*FrameSize + 17} {
		for _, workers := range []int{2, 3} {
			t.Run(fmt.Sprintf("%d-bytes-%d-encoders", n, workers), func(t *testing.T) {
				in := logLines(n)
				var out bytes.Buffer
				w, err := NewWriter(Zstd, &out, workers)
				if err != nil {
					t.Fatal(err)
				}
				for rest := in; len(rest) > 0; {
					k := min(len(rest), 1+rand.IntN(1<<20)) // writes of any size
					if _, err := w.Write(rest[:k]); err != nil {
						t.Fatal(err)
					}
					rest = rest[k:]
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				r, err := NewReader(Zstd, bytes.NewReader(out.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(got, in) {
					t.Fatalf("read back %d bytes (err %v), wrote %d", len(got), err, len(in))
				}
				cmd := exec.Command(zstdCmd, "-d", "-c")
				cmd.Stdin = bytes.NewReader(out.Bytes())
				if got, err := cmd.Output(); err != nil || !bytes.Equal(got, in) {
					t.Fatalf("zstd -d: %d bytes (err %v), wrote %d", len(got), err, len(in))
				}
				frames := splitFrames(t, out.Bytes())
				if want := max(1, (n+FrameSize-1)/FrameSize); len(frames) != want {
					t.Fatalf("%d frames, want %d (one per %d input bytes)", len(frames), want, FrameSize)
				}
				var joined []byte
				for i, f := range frames {
					d, err := zstd.NewReader(nil)
					if err != nil {
						t.Fatal(err)
					}
					part, err := d.DecodeAll(f, nil)
					d.Close()
					if err != nil {
						t.Fatalf("frame %d does not decode alone: %v", i, err)
					}
					joined = append(joined, part...)
				}
				if !bytes.Equal(joined, in) {
					t.Fatalf("frames decoded one by one: %d bytes, wrote %d", len(joined), len(in))
				}
			})
		}
	}
}

// One encoder is still one zstd stream (a merge's compressor: merges of
// different streams already run side by side).
func TestOneEncoderIsOneFrame(t *testing.T) {
	in := logLines(2*FrameSize + 5)
	var out bytes.Buffer
	w, err := NewWriter(Zstd, &out, 1)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(in)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if frames := splitFrames(t, out.Bytes()); len(frames) != 1 {
		t.Fatalf("%d frames from one encoder, want 1", len(frames))
	}
}

type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		return 0, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

// A failed write of a frame is returned (by a later Write or by Close), and
// Close still waits for every frame in flight: no goroutine outlives it.
func TestAFailedFrameWriteIsReturnedAndNothingLeaks(t *testing.T) {
	defer goleak.VerifyNone(t)
	w, err := NewWriter(Zstd, &failAfter{n: 100}, 2)
	if err != nil {
		t.Fatal(err)
	}
	in := logLines(5 * FrameSize)
	var werr error
	for rest := in; len(rest) > 0 && werr == nil; {
		k := min(len(rest), 1<<20)
		_, werr = w.Write(rest[:k])
		rest = rest[k:]
	}
	cerr := w.Close()
	if werr == nil || cerr == nil || cerr.Error() != "disk full" {
		t.Fatalf("write error %v, close error %v; want disk full from both", werr, cerr)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("write after close succeeded")
	}
}
