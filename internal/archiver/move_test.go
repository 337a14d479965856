package archiver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"

	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/objstore"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("LCD_ACRASH_MODE"); mode != "" {
		os.Exit(crashChild(mode))
	}
	goleak.VerifyTestMain(m)
}

type rig struct {
	hotPath, coldPath string
	hot, cold, state  *fsx.Dir
	env               *Env
	leases            *fsx.Leases
}

func openRig(hotPath, coldPath, statePath string) (*rig, error) {
	for _, p := range []string{hotPath, coldPath, statePath} {
		if err := os.MkdirAll(p, 0o750); err != nil {
			return nil, err
		}
	}
	r := &rig{hotPath: hotPath, coldPath: coldPath}
	var err error
	if r.hot, err = fsx.OpenDir(hotPath); err != nil {
		return nil, err
	}
	if r.cold, err = fsx.OpenDir(coldPath); err != nil {
		return nil, err
	}
	if r.state, err = fsx.OpenDir(statePath); err != nil {
		return nil, err
	}
	j, err := fsx.OpenJournal(r.state, "journal")
	if err != nil {
		return nil, err
	}
	r.leases = fsx.NewLeases()
	r.env = &Env{Ops: &fsx.Runner{Journal: j, Leases: r.leases, Verify: map[fsx.OpKind]fsx.VerifyFunc{fsx.KindArchive: VerifyArchive}}}
	return r, nil
}

func newRig(t testing.TB, hot, cold string) *rig {
	t.Helper()
	r, err := openRig(hot, cold, filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

func (r *rig) close() {
	r.leases.Close()
	r.env.Ops.Journal.Close()
	r.hot.Close()
	r.cold.Close()
	r.state.Close()
}

func (r *rig) job(t testing.TB, name, compress string) MoveJob {
	st, err := r.hot.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.hot.OpenRead(name, st)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	n, _ := f.ReadAt(head, 0)
	f.Close()
	return MoveJob{Stream: "app", Hot: r.hot, HotPath: r.hotPath, Cold: r.cold, ColdPath: r.coldPath,
		Segment: fsx.RefOf(name, st), Output: ColdName(name, codec.Sniff(head[:n]), compress, 0), Compress: compress,
		Encoding: codec.Sniff(head[:n])}
}

func decompress(t testing.TB, path, compress string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rd io.Reader = f
	switch compress {
	case "zstd":
		zr, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		rd = zr
	case "gzip":
		gr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		rd = gr
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func content(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "2026-11-24T00:00:00Z line %07d level=info msg=\"served\"\n", i)
	}
	return b.String()
}

func TestMoveByteExactKeepsOwnerModeAndMtime(t *testing.T) {
	for _, c := range []string{"zstd", "gzip", "none"} {
		t.Run(c, func(t *testing.T) {
			r := newRig(t, filepath.Join(t.TempDir(), "hot"), filepath.Join(t.TempDir(), "cold", "app"))
			data := content(20000)
			p := filepath.Join(r.hotPath, "app-1.log")
			if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
			os.Chtimes(p, old, old)
			res, err := r.env.Move(context.Background(), r.job(t, "app-1.log", c))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(r.coldPath, res.Output)
			if got := decompress(t, out, c); got != data {
				t.Fatalf("archive differs from the segment (%d vs %d bytes)", len(got), len(data))
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Fatalf("segment still hot: %v", err)
			}
			fi, _ := os.Stat(out)
			if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(old) {
				t.Fatalf("archive mode %o mtime %v, want 0640 %v", fi.Mode().Perm(), fi.ModTime(), old)
			}
			if c == "none" && !res.Renamed {
				t.Fatal("same filesystem, uncompressed: want a rename")
			}
			if c != "none" && res.Written >= res.Bytes/5 {
				t.Fatalf("%s wrote %d of %d bytes", c, res.Written, res.Bytes)
			}
			if p := r.env.Ops.Journal.Pending(); len(p) != 0 {
				t.Fatalf("pending ops %+v", p)
			}
		})
	}
}

// TestMoveNeverReplacesAnEarlierArchive: the planned cold name taken by the
// time the job publishes fails the job (the segment stays hot, nothing is
// pending); the next plan's name (".1") works. Both protocols.
func TestMoveNeverReplacesAnEarlierArchive(t *testing.T) {
	for _, c := range []string{"zstd", "none"} {
		t.Run(c, func(t *testing.T) {
			r := newRig(t, filepath.Join(t.TempDir(), "hot"), filepath.Join(t.TempDir(), "cold"))
			taken := ColdName("app.log", codec.Text, c, 0)
			os.WriteFile(filepath.Join(r.coldPath, taken), []byte("an earlier archive"), 0o600)
			os.WriteFile(filepath.Join(r.hotPath, "app.log"), []byte("new\n"), 0o600)
			_, err := r.env.Move(context.Background(), r.job(t, "app.log", c))
			if !errors.Is(err, fsx.ErrExists) {
				t.Fatalf("err = %v, want ErrExists", err)
			}
			if b, _ := os.ReadFile(filepath.Join(r.coldPath, taken)); string(b) != "an earlier archive" {
				t.Fatal("an earlier archive was replaced")
			}
			if b, _ := os.ReadFile(filepath.Join(r.hotPath, "app.log")); string(b) != "new\n" {
				t.Fatal("segment not intact")
			}
			if p := r.env.Ops.Journal.Pending(); len(p) != 0 {
				t.Fatalf("pending %+v", p)
			}
			j := r.job(t, "app.log", c)
			j.Output = ColdName("app.log", codec.Text, c, 1)
			res, err := r.env.Move(context.Background(), j)
			if err != nil || res.Output != j.Output || decompress(t, filepath.Join(r.coldPath, j.Output), c) != "new\n" {
				t.Fatalf("%+v %v", res, err)
			}
		})
	}
}

// TestCompressedSegmentIsArchivedAsItIs: a segment that is already zstd or
// gzip (a compressed consolidated segment) goes to the cold tier with its own
// bytes and one suffix: it decompresses once to the text, never to zstd.
func TestCompressedSegmentIsArchivedAsItIs(t *testing.T) {
	text := content(3000)
	var zb strings.Builder
	zw, _ := zstd.NewWriter(&zb)
	zw.Write([]byte(text))
	zw.Close()
	var gb strings.Builder
	gw := gzip.NewWriter(&gb)
	gw.Write([]byte(text))
	gw.Close()
	for _, c := range []struct{ name, data, compress, want, enc string }{
		{"app-1~c1.log.zst", zb.String(), "zstd", "app-1~c1.log.zst", "zstd"},
		{"app-1~c1.log", zb.String(), "zstd", "app-1~c1.log.zst", "zstd"},
		{"app-1~c1.log.gz", gb.String(), "zstd", "app-1~c1.log.gz", "gzip"},
		{"app-1~c1.log.zst", zb.String(), "gzip", "app-1~c1.log.zst", "zstd"},
		{"app-1~c1.log.zst", zb.String(), "none", "app-1~c1.log.zst", "zstd"},
	} {
		t.Run(c.name+"/"+c.compress, func(t *testing.T) {
			r := newRig(t, filepath.Join(t.TempDir(), "hot"), filepath.Join(t.TempDir(), "cold"))
			os.WriteFile(filepath.Join(r.hotPath, c.name), []byte(c.data), 0o640)
			j := r.job(t, c.name, c.compress)
			if j.Output != c.want {
				t.Fatalf("cold name %q, want %q", j.Output, c.want)
			}
			if _, err := r.env.Move(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(r.coldPath, c.want))
			if string(b) != c.data {
				t.Fatal("archive is not the segment's own bytes")
			}
			if got := decompress(t, filepath.Join(r.coldPath, c.want), c.enc); got != text {
				t.Fatalf("decompressed once: %d bytes, want the %d bytes of text", len(got), len(text))
			}
		})
	}
}

func TestWriterOpeningDuringMoveAborts(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "hot"), filepath.Join(t.TempDir(), "cold"))
	data := content(50000)
	p := filepath.Join(r.hotPath, "app-1.log")
	os.WriteFile(p, []byte(data), 0o644)
	var w *exec.Cmd
	r.env.Ops.Fault = func(pt string) {
		if pt != "archive:created" {
			return
		}
		w = exec.Command("sh", "-c", `exec 3>>"$1" && echo opened && exec sleep 60`, "sh", p)
		out, _ := w.StdoutPipe()
		w.Start()
		bufio.NewReader(out).ReadString('\n')
	}
	_, err := r.env.Move(context.Background(), r.job(t, "app-1.log", "zstd"))
	if w != nil {
		defer func() { w.Process.Kill(); w.Wait() }()
	}
	if !errors.Is(err, fsx.ErrLeaseBroken) {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != data {
		t.Fatal("segment changed")
	}
	if names, _ := r.cold.Names(); len(names) != 0 {
		t.Fatalf("cold dir not empty: %v", names)
	}
}

func TestColdENOSPCLeavesTheSegmentHot(t *testing.T) {
	testutil.RequireRoot(t, "mount a tmpfs")
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	r := newRig(t, filepath.Join(t.TempDir(), "hot"), mnt)
	data := content(20000) // ~1 MB; compressed and uncompressed both exceed 64 KiB
	os.WriteFile(filepath.Join(r.hotPath, "app-1.log"), []byte(data), 0o644)
	_, err := r.env.Move(context.Background(), r.job(t, "app-1.log", "none"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want ENOSPC", err)
	}
	if b, _ := os.ReadFile(filepath.Join(r.hotPath, "app-1.log")); string(b) != data {
		t.Fatal("segment changed")
	}
	if names, _ := r.cold.Names(); len(names) != 0 {
		t.Fatalf("cold dir not empty: %v", names)
	}
	if p := r.env.Ops.Journal.Pending(); len(p) != 0 {
		t.Fatalf("pending %+v", p)
	}
}

func TestRetention(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	files := []ColdFile{
		{"a", 100, now.Add(-10 * 24 * time.Hour)}, {"b", 100, now.Add(-5 * 24 * time.Hour)},
		{"c", 100, now.Add(-2 * 24 * time.Hour)}, {"d", 100, now.Add(-time.Hour)},
	}
	cases := []struct {
		name     string
		maxAge   time.Duration
		maxBytes int64
		want     string
	}{
		{"no limits keep everything", 0, 0, ""},
		{"archives older than cold_max_age go", 7 * 24 * time.Hour, 0, "a"},
		{"the oldest go until the rest fit cold_max_bytes", 0, 250, "a,b"},
		{"both limits: the stricter wins", 3 * 24 * time.Hour, 350, "a,b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, f := range RetentionPlan(files, now, c.maxAge, c.maxBytes, false) {
				got = append(got, f.Name)
			}
			if strings.Join(got, ",") != c.want {
				t.Fatalf("deleted %v, want %s", got, c.want)
			}
		})
	}
	// Two segments of one mtime in an order: mtime stream: one time-name, the
	// later archive "<name>.1.zst". The older goes first.
	const stamp = "app.log.20231114T221320.004000000Z"
	tied := []ColdFile{{stamp + ".1.zst", 100, now.Add(-time.Hour)}, {stamp + ".zst", 100, now.Add(-time.Hour)}, {"app.log.zst", 100, now}}
	if got := RetentionPlan(tied, now, 0, 250, true); len(got) != 1 || got[0].Name != stamp+".zst" {
		t.Fatalf("of a tie, retention deleted %v, want %s.zst", got, stamp)
	}
	dir := t.TempDir()
	d, _ := fsx.OpenDir(dir)
	defer d.Close()
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		os.WriteFile(p, make([]byte, f.Size), 0o600)
		os.Chtimes(p, f.Mtime, f.Mtime)
	}
	os.Symlink("/etc/passwd", filepath.Join(dir, "e"))
	gone, err := Retain(d, now, 0, 250, false)
	if err != nil || len(gone) != 2 {
		t.Fatalf("Retain: %v %v", gone, err)
	}
	if names, _ := d.Names(); len(names) != 3 {
		t.Fatalf("left %v", names)
	}
}

// TestBatchIsOneArchiveOfItsSegmentsInOrder: a job with More archives the
// segments, in order, into one verified archive (zstd) and removes them all;
// a local dir and a real S3 server alike.
func TestBatchIsOneArchiveOfItsSegmentsInOrder(t *testing.T) {
	for _, where := range []string{"dir", "s3"} {
		t.Run(where, func(t *testing.T) {
			base := t.TempDir()
			r := newRig(t, filepath.Join(base, "hot"), filepath.Join(base, "cold"))
			var want strings.Builder
			names := []string{"app-1.log", "app-2.log", "app-3.log"}
			for i, n := range names {
				data := content(1000 + i)
				want.WriteString(data)
				if err := os.WriteFile(filepath.Join(r.hotPath, n), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			j := r.job(t, names[0], "zstd")
			for _, n := range names[1:] {
				st, err := r.hot.Stat(n)
				if err != nil {
					t.Fatal(err)
				}
				j.More = append(j.More, fsx.RefOf(n, st))
			}
			j.Output = ColdName(BatchBase(names[0], names[2], 3), codec.Text, "zstd", 0)
			coldFile := filepath.Join(r.coldPath, j.Output)
			if where == "s3" {
				s3 := testutil.StartS3(t, "bkt")
				for _, kv := range s3.Env() {
					k, v, _ := strings.Cut(kv, "=")
					t.Setenv(k, v)
				}
				st, err := objstore.New(context.Background(), "s3://bkt", config.S3{Endpoint: s3.Endpoint, Region: "us-east-1",
					PathStyle: true, PartSize: 5 << 20, Timeout: 10 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				j.Store = st.Publisher("app", r.hot)
				coldFile = filepath.Join(s3.Dir, "bkt", "app", j.Output)
			}
			if _, err := r.env.Move(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			if got := decompress(t, coldFile, "zstd"); got != want.String() {
				t.Fatalf("the batch archive is not its segments in order (%d bytes, want %d)", len(got), want.Len())
			}
			if left, _ := r.hot.Names(); len(left) != 0 {
				t.Fatalf("hot after the batch: %v", left)
			}
			if j.Output != "app-1.log..app-3.log.zst" {
				t.Fatalf("batch name %q", j.Output)
			}
		})
	}
}

// VerifyArchive checks a batch input by input: the right bytes in another
// order, or one input's checksum wrong, or bytes beyond the inputs, fail.
func TestVerifyArchiveChecksEachInputOfABatch(t *testing.T) {
	a, b := []byte(content(100)), []byte(content(200))
	ins := []fsx.FileRef{{Name: "a", Size: int64(len(a))}, {Name: "b", Size: int64(len(b))}}
	c := &fsx.Commit{InputCRCs: []uint32{fsx.UpdateChecksum(0, a), fsx.UpdateChecksum(0, b)}}
	zst := func(parts ...[]byte) []byte {
		var buf strings.Builder
		zw, _ := zstd.NewWriter(&buf)
		for _, p := range parts {
			zw.Write(p)
		}
		zw.Close()
		return []byte(buf.String())
	}
	if err := VerifyArchive(strings.NewReader(string(zst(a, b))), ins, c); err != nil {
		t.Fatalf("a good batch: %v", err)
	}
	bad := *c
	bad.InputCRCs = []uint32{c.InputCRCs[0], c.InputCRCs[1] + 1}
	for what, tc := range map[string]struct {
		data []byte
		c    *fsx.Commit
	}{
		"swapped":     {zst(b, a), c},
		"wrong crc":   {zst(a, b), &bad},
		"extra bytes": {zst(a, b, []byte("more\n")), c},
		"short":       {zst(a), c},
	} {
		if err := VerifyArchive(strings.NewReader(string(tc.data)), ins, tc.c); err == nil {
			t.Errorf("%s: verified", what)
		}
	}
}

// countingPacer records what a job asks the pacer for.
type countingPacer struct{ asked int64 }

func (p *countingPacer) Wait(_ context.Context, n int) error {
	p.asked += int64(n)
	return nil
}

func (p *countingPacer) Limited() bool { return true }

// A paced archival is charged for the bytes it reads, not for its buffer: a
// batch of forty 2 KB segments asked for 40 × 2 MiB (a 1 MiB buffer, charged
// for the data and again for the read that sees EOF), which at the default
// 64 MiB/s slept 31 ms per segment.
func TestPacingChargesTheBytesRead(t *testing.T) {
	base := t.TempDir()
	r := newRig(t, filepath.Join(base, "hot"), filepath.Join(base, "cold"))
	var names []string
	var total int64
	for i := 1; i <= 40; i++ {
		n := fmt.Sprintf("app-%02d.log", i)
		data := content(2000 + i)
		total += int64(len(data))
		if err := os.WriteFile(filepath.Join(r.hotPath, n), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	j := r.job(t, names[0], "zstd")
	for _, n := range names[1:] {
		st, err := r.hot.Stat(n)
		if err != nil {
			t.Fatal(err)
		}
		j.More = append(j.More, fsx.RefOf(n, st))
	}
	j.Output = ColdName(BatchBase(names[0], names[len(names)-1], len(names)), codec.Text, "zstd", 0)
	p := &countingPacer{}
	r.env.Pacer = p
	if _, err := r.env.Move(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if p.asked != total {
		t.Fatalf("the pacer was asked for %d bytes; the segments hold %d", p.asked, total)
	}
}
