package compactor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

type rig struct {
	t      *testing.T
	logs   string
	state  string
	dir    *fsx.Dir
	sdir   *fsx.Dir
	env    *Env
	leases *fsx.Leases
}

func newRig(t *testing.T, logs, state string) *rig {
	t.Helper()
	for _, p := range []string{logs, state} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	r := &rig{t: t, logs: logs, state: state}
	var err error
	if r.dir, err = fsx.OpenDir(logs); err != nil {
		t.Fatal(err)
	}
	if r.sdir, err = fsx.OpenDir(state); err != nil {
		t.Fatal(err)
	}
	j, err := fsx.OpenJournal(r.sdir, "journal")
	if err != nil {
		t.Fatal(err)
	}
	r.leases = fsx.NewLeases()
	r.env = &Env{Ops: &fsx.Runner{Journal: j, Leases: r.leases}, Pacer: NewPacer(0, 1<<20, nil), ChunkSize: 4096}
	t.Cleanup(func() { r.close() })
	return r
}

func (r *rig) close() {
	r.leases.Close()
	r.env.Ops.Journal.Close()
	r.dir.Close()
	r.sdir.Close()
}

func (r *rig) write(name, content string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.logs, name), []byte(content), 0o640); err != nil {
		r.t.Fatal(err)
	}
}

// segments lists the stream's files in natural order (temp names excluded).
func (r *rig) segments() []string {
	names, err := r.dir.Names()
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if !fsx.IsTemp(n) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return model.NaturalLess(out[i], out[j]) })
	return out
}

func (r *rig) temps() []string {
	names, _ := r.dir.Names()
	var out []string
	for _, n := range names {
		if fsx.IsTemp(n) {
			out = append(out, n)
		}
	}
	return out
}

// job merges every segment of the dir but the last (the "active" one).
func (r *rig) job(names ...string) MergeJob {
	j := MergeJob{Stream: "app", Dir: r.dir, DirPath: r.logs, Output: "app-1~c1.log", Compress: "none"}
	for _, n := range names {
		st, err := r.dir.Stat(n)
		if err != nil {
			r.t.Fatal(err)
		}
		j.Inputs = append(j.Inputs, fsx.RefOf(n, st))
	}
	return j
}

func (r *rig) read(name string) string {
	b, err := os.ReadFile(filepath.Join(r.logs, name))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

func TestMergeIsByteExact(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	r.write("app-1.log", "one\ntwo\n")
	r.write("app-2.log", "three") // no trailing newline: one is inserted and recorded
	r.write("app-3.log", "")
	r.write("app-4.log", strings.Repeat("four\n", 5000))
	r.write("app-5.log", "active\n")
	// the output takes the last input's mtime to the nanosecond: it keeps the
	// place in an mtime-ordered stream that its inputs had
	last := time.Unix(1_700_000_000, 123_456_789)
	if err := os.Chtimes(filepath.Join(r.logs, "app-4.log"), last, last); err != nil {
		t.Fatal(err)
	}
	res, err := r.env.Merge(context.Background(), r.job("app-1.log", "app-2.log", "app-3.log", "app-4.log"))
	if err != nil {
		t.Fatal(err)
	}
	want := "one\ntwo\nthree\n" + strings.Repeat("four\n", 5000)
	if got := r.read("app-1~c1.log"); got != want {
		t.Fatalf("output differs from the concatenation (%d vs %d bytes)", len(got), len(want))
	}
	if res.Newlines != 1 || res.Bytes != int64(len(want)-1) || res.Written != int64(len(want)) {
		t.Fatalf("result %+v", res)
	}
	if segs := strings.Join(r.segments(), " "); segs != "app-1~c1.log app-5.log" {
		t.Fatalf("segments after merge: %s", segs)
	}
	if r.read("app-5.log") != "active\n" || len(r.temps()) != 0 || len(r.env.Ops.Journal.Pending()) != 0 {
		t.Fatal("active segment touched, temp left, or op pending")
	}
	fi, _ := os.Stat(filepath.Join(r.logs, "app-1~c1.log"))
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("output mode %o, first input was 0640", fi.Mode().Perm())
	}
	if !fi.ModTime().Equal(last) {
		t.Fatalf("output mtime %s, the last input's was %s", fi.ModTime().Format(time.RFC3339Nano), last.Format(time.RFC3339Nano))
	}
}

// TestMergeCommitsTheChecksumsOfWhatItWrote: the read-back, which runs beside
// the copy of the next input, hands the commit each input's CRC in input order
// and the output's CRC over everything, inserted newlines included.
func TestMergeCommitsTheChecksumsOfWhatItWrote(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	contents := []string{strings.Repeat("alpha\n", 3000), "beta", "", strings.Repeat("gamma ", 9000), strings.Repeat("delta\n", 100)}
	var names []string
	for i, c := range contents {
		n := fmt.Sprintf("app-%d.log", i+1)
		r.write(n, c)
		names = append(names, n)
	}
	var got fsx.Commit
	r.env.Ops.Verify = map[fsx.OpKind]fsx.VerifyFunc{fsx.KindMerge: func(_ io.Reader, _ []fsx.FileRef, c *fsx.Commit) error {
		got = *c
		return nil
	}}
	if _, err := r.env.Merge(context.Background(), r.job(names...)); err != nil {
		t.Fatal(err)
	}
	out := r.read("app-1~c1.log")
	if got.OutSize != int64(len(out)) || got.OutCRC != fsx.UpdateChecksum(0, []byte(out)) {
		t.Fatalf("commit says %d bytes, CRC %08x; the output has %d, CRC %08x", got.OutSize, got.OutCRC, len(out), fsx.UpdateChecksum(0, []byte(out)))
	}
	if len(got.InputCRCs) != len(contents) {
		t.Fatalf("%d input CRCs for %d inputs", len(got.InputCRCs), len(contents))
	}
	for i, c := range contents {
		if want := fsx.UpdateChecksum(0, []byte(c)); got.InputCRCs[i] != want {
			t.Errorf("input %d: CRC %08x committed, %08x is its content's", i+1, got.InputCRCs[i], want)
		}
	}
	if fmt.Sprint(got.Newlines) != "[1 3]" {
		t.Fatalf("newlines inserted after %v, want after inputs [1 3] (0-based)", got.Newlines)
	}
}

func TestMergeCompresses(t *testing.T) {
	for _, c := range []string{"gzip", "zstd"} {
		t.Run(c, func(t *testing.T) {
			r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
			r.write("app-1.log", strings.Repeat("alpha\n", 1000))
			r.write("app-2.log", "beta")
			j := r.job("app-1.log", "app-2.log")
			j.Compress = c
			if _, err := r.env.Merge(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			raw := r.read("app-1~c1.log")
			var rd io.Reader
			if c == "gzip" {
				gz, err := gzip.NewReader(strings.NewReader(raw))
				if err != nil {
					t.Fatal(err)
				}
				rd = gz
			} else {
				zr, err := zstd.NewReader(strings.NewReader(raw))
				if err != nil {
					t.Fatal(err)
				}
				defer zr.Close()
				rd = zr
			}
			got, err := io.ReadAll(rd)
			if err != nil || string(got) != strings.Repeat("alpha\n", 1000)+"beta\n" {
				t.Fatalf("decompressed output wrong (%d bytes, %v)", len(got), err)
			}
			if len(raw) > 1000 {
				t.Fatalf("output of %d bytes is not compressed", len(raw))
			}
		})
	}
}

func TestMixedEncodingsAbortWithInputsIntact(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte("zipped\n"))
	w.Close()
	r.write("app-1.log", "text\n")
	r.write("app-2.log", gz.String())
	_, err := r.env.Merge(context.Background(), r.job("app-1.log", "app-2.log"))
	if !errors.Is(err, ErrMixedEncoding) {
		t.Fatalf("err = %v", err)
	}
	r.assertIntact(map[string]string{"app-1.log": "text\n", "app-2.log": gz.String()})
}

func (r *rig) assertIntact(want map[string]string) {
	r.t.Helper()
	segs := r.segments()
	if len(segs) != len(want) {
		r.t.Fatalf("segments %v, want %d intact inputs", segs, len(want))
	}
	for n, c := range want {
		if r.read(n) != c {
			r.t.Fatalf("%s changed", n)
		}
	}
	if len(r.temps()) != 0 {
		r.t.Fatalf("temp files left: %v", r.temps())
	}
	if p := r.env.Ops.Journal.Pending(); len(p) != 0 {
		r.t.Fatalf("ops left pending: %+v", p)
	}
}

func TestKeepInactiveThenFinish(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	now := time.Unix(1_700_000_000, 0)
	r.env.Ops.Now = func() time.Time { return now }
	r.write("app-1.log", "a\n")
	r.write("app-2.log", "b\n")
	j := r.job("app-1.log", "app-2.log")
	j.KeepInactive = time.Hour
	res, err := r.env.Merge(context.Background(), j)
	if err != nil || !res.Inactive {
		t.Fatalf("%+v %v", res, err)
	}
	res2 := fsx.Resolver{Src: func(string) (*fsx.Dir, error) { return r.dir, nil },
		KeepUntil: func(op fsx.Op) int64 { return op.Commit.AtNs + int64(time.Hour) }}
	kept := func(op fsx.Op) bool { return op.InputsInactive() }
	if n, err := r.env.Ops.FinishDue(res2, kept); n != 0 || err != nil {
		t.Fatalf("finished %d before keep_inactive passed (%v)", n, err)
	}
	if len(r.segments()) != 3 {
		t.Fatalf("inputs not kept: %v", r.segments())
	}
	now = now.Add(2 * time.Hour)
	if n, err := r.env.Ops.FinishDue(res2, kept); n != 1 || err != nil {
		t.Fatalf("finish: %d %v", n, err)
	}
	if segs := r.segments(); len(segs) != 1 || r.read(segs[0]) != "a\nb\n" {
		t.Fatalf("after finish: %v", segs)
	}
}

// TestWriterOpeningDuringMergeAborts pauses the job after its first input and has
// a real process open the second one for appending. The open only completes once
// the job released its lease (SIGIO); the job must then abandon with inputs intact.
func TestWriterOpeningDuringMergeAborts(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	r.write("app-1.log", strings.Repeat("x\n", 10000))
	r.write("app-2.log", strings.Repeat("y\n", 10000))
	var writer *exec.Cmd
	r.env.Ops.Fault = func(p string) {
		if p != "merge:produced" {
			return
		}
		writer = exec.Command("sh", "-c", `exec 3>>"$1" && echo opened && exec sleep 60`, "sh", filepath.Join(r.logs, "app-2.log"))
		out, _ := writer.StdoutPipe()
		if err := writer.Start(); err != nil {
			t.Error(err)
			return
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "opened" {
			t.Errorf("writer: %q %v", line, err)
		}
	}
	start := time.Now()
	_, err := r.env.Merge(context.Background(), r.job("app-1.log", "app-2.log"))
	if writer != nil {
		defer func() { _ = writer.Process.Kill(); _ = writer.Wait() }()
	}
	if !errors.Is(err, fsx.ErrLeaseBroken) {
		t.Fatalf("err = %v, want ErrLeaseBroken", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the writer waited %s: the lease was not released on SIGIO", d)
	}
	r.assertIntact(map[string]string{"app-1.log": strings.Repeat("x\n", 10000), "app-2.log": strings.Repeat("y\n", 10000)})
}

func TestSymlinkSwappedInBeforeOpenIsRefused(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("TOP SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.write("app-1.log", "a\n")
	r.write("app-2.log", "b\n")
	j := r.job("app-1.log", "app-2.log")
	r.env.Ops.Fault = func(p string) {
		if p == "merge:leased:0" {
			// Between scan and open, a hostile user swaps the segment for a symlink.
			_ = os.Remove(filepath.Join(r.logs, "app-2.log"))
			_ = os.Symlink(secret, filepath.Join(r.logs, "app-2.log"))
		}
	}
	// The segment is gone (its name is a symlink now): the merge is abandoned.
	if _, err := r.env.Merge(context.Background(), j); !errors.Is(err, fsx.ErrInputChanged) || !errors.Is(err, fsx.ErrNotFound) {
		t.Fatalf("err = %v, want ErrInputChanged (not found)", err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "TOP SECRET\n" {
		t.Fatal("outside file changed")
	}
	if r.read("app-1.log") != "a\n" || len(r.temps()) != 0 {
		t.Fatal("input changed or temp left")
	}
	for _, n := range r.segments() {
		if strings.Contains(n, "~c") {
			t.Fatalf("an output appeared: %s", n)
		}
	}
}

func TestInputChangedAfterCopyAborts(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	r.write("app-1.log", "a\n")
	r.write("app-2.log", "b\n")
	r.env.Ops.Fault = func(p string) {
		if p == "merge:synced" {
			f, err := os.OpenFile(filepath.Join(r.logs, "app-1.log"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Error(err)
				return
			}
			f.WriteString("late line\n")
			f.Close()
		}
	}
	_, err := r.env.Merge(context.Background(), r.job("app-1.log", "app-2.log"))
	if !errors.Is(err, fsx.ErrLeaseBroken) && !errors.Is(err, fsx.ErrInputChanged) {
		t.Fatalf("err = %v", err)
	}
	r.assertIntact(map[string]string{"app-1.log": "a\nlate line\n", "app-2.log": "b\n"})
}

func TestCancelledMergeLeavesNothing(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	r.write("app-1.log", strings.Repeat("a\n", 50000))
	r.write("app-2.log", "b\n")
	ctx, cancel := context.WithCancel(context.Background())
	r.env.Ops.Fault = func(p string) {
		if p == "merge:created" {
			cancel() // SIGTERM arrives mid-job
		}
	}
	if _, err := r.env.Merge(ctx, r.job("app-1.log", "app-2.log")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	r.assertIntact(map[string]string{"app-1.log": strings.Repeat("a\n", 50000), "app-2.log": "b\n"})
}

// TestInputsRenamedDuringTheMergeAreRemovedByIdentity is logrotate's numbered
// scheme racing a merge: at each step of the job, every input is renamed
// (app.log.N -> app.log.N+1) and a new file takes the first input's old name.
// However late the rename, the inputs end up removed wherever they are — none
// stays behind as a duplicate of the output — and the new file under an old
// name is never touched.
func TestInputsRenamedDuringTheMergeAreRemovedByIdentity(t *testing.T) {
	for _, at := range []string{"merge:start", "merge:leased:1", "merge:produced", "merge:rechecked", "merge:published",
		"merge:committed", "merge:removing", "merge:removed:0"} {
		t.Run(at, func(t *testing.T) {
			r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
			r.write("app.log.2", "two\n")
			r.write("app.log.1", "one\n")
			j := r.job("app.log.2", "app.log.1")
			j.Output = "app.log.2~c1"
			r.env.Ops.Fault = func(p string) {
				if p != at {
					return
				}
				for _, n := range []string{"app.log.2", "app.log.1"} {
					next := "app.log.3"
					if n == "app.log.1" {
						next = "app.log.2"
					}
					if err := os.Rename(filepath.Join(r.logs, n), filepath.Join(r.logs, next)); err != nil && !os.IsNotExist(err) {
						t.Error(err)
					}
				}
				r.write("app.log.1", "rotated in meanwhile\n")
			}
			if _, err := r.env.Merge(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(r.segments(), " "); got != "app.log.1 app.log.2~c1" {
				t.Fatalf("segments %q: an input stayed behind, or the new file went", got)
			}
			if r.read("app.log.2~c1") != "two\none\n" || r.read("app.log.1") != "rotated in meanwhile\n" {
				t.Fatal("wrong bytes")
			}
			if p := r.env.Ops.Journal.Pending(); len(p) != 0 || len(r.temps()) != 0 {
				t.Fatalf("pending %+v, temps %v", p, r.temps())
			}
		})
	}
}

// TestCommittedInputThatVanishedStaysInTheJournal: an input gone from its
// directory between the commit and its removal is reported with the op, which
// stays pending (never silently skipped); the other inputs are not removed
// until it is resolved.
func TestCommittedInputThatVanishedStaysInTheJournal(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	r.write("app-1.log", "a\n")
	r.write("app-2.log", "b\n")
	r.env.Ops.Fault = func(p string) {
		if p == "merge:committed" {
			_ = os.Rename(filepath.Join(r.logs, "app-2.log"), filepath.Join(t.TempDir(), "elsewhere"))
		}
	}
	res, err := r.env.Merge(context.Background(), r.job("app-1.log", "app-2.log"))
	if !errors.Is(err, fsx.ErrInputMissing) || !strings.Contains(err.Error(), "app-2.log") || res.Output.Name == "" {
		t.Fatalf("err = %v, output %q: want ErrInputMissing naming app-2.log, output published", err, res.Output.Name)
	}
	if p := r.env.Ops.Journal.Pending(); len(p) != 1 || p[0].Commit == nil {
		t.Fatalf("pending %+v: want the committed op", p)
	}
	if got := strings.Join(r.segments(), " "); got != "app-1.log app-1~c1.log" {
		t.Fatalf("segments %q", got)
	}
}

// TestMergeKeepsHoles: two 64 MiB inputs that are holes but for a line at each
// end merge into an output with the same holes (not 128 MiB written out), byte
// for byte.
func TestMergeKeepsHoles(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	const size = 64 << 20
	var want []byte
	for _, n := range []string{"app-1.log", "app-2.log"} {
		f, err := os.Create(filepath.Join(r.logs, n))
		must(t, err)
		f.WriteAt([]byte(n+" first\n"), 0)
		f.WriteAt([]byte(n+" last\n"), size-int64(len(n+" last\n")))
		f.Close()
		b, err := os.ReadFile(filepath.Join(r.logs, n))
		must(t, err)
		want = append(want, b...)
	}
	j := r.job("app-1.log", "app-2.log")
	if _, err := r.env.Merge(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(r.logs, "app-1~c1.log"), &st))
	if st.Size != 2*size || st.Blocks*512 > 4<<20 {
		t.Fatalf("output %d bytes, %d on disk: the holes were written out", st.Size, st.Blocks*512)
	}
	if !bytes.Equal([]byte(r.read("app-1~c1.log")), want) {
		t.Fatal("output differs from the concatenation")
	}
}

// TestMergeOfInputsEndingInAHole: a hole at the end of an input is skipped, so
// the output ends short of it until the next input (or the final truncate)
// extends it; its read-back counts the zeros it will read as. Compressed
// inputs get no newline after them, so nothing is written over the hole.
func TestMergeOfInputsEndingInAHole(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	var want []byte
	for _, n := range []string{"app-1.log.zst", "app-2.log.zst", "app-3.log.zst"} {
		f, err := os.Create(filepath.Join(r.logs, n))
		must(t, err)
		_, err = f.Write(append([]byte{0x28, 0xb5, 0x2f, 0xfd}, n...))
		must(t, err)
		must(t, f.Truncate(4<<20))
		must(t, f.Close())
		b, err := os.ReadFile(filepath.Join(r.logs, n))
		must(t, err)
		want = append(want, b...)
	}
	var got fsx.Commit
	r.env.Ops.Verify = map[fsx.OpKind]fsx.VerifyFunc{fsx.KindMerge: func(_ io.Reader, _ []fsx.FileRef, c *fsx.Commit) error {
		got = *c
		return nil
	}}
	j := r.job("app-1.log.zst", "app-2.log.zst", "app-3.log.zst")
	j.Output = "app-1~c1.log.zst"
	if _, err := r.env.Merge(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(r.read("app-1~c1.log.zst")), want) {
		t.Fatal("output differs from the concatenation")
	}
	if got.OutCRC != fsx.UpdateChecksum(0, want) || got.InputCRCs[2] != fsx.UpdateChecksum(0, want[8<<20:]) {
		t.Fatalf("commit's checksums %08x %08x are not the output's", got.OutCRC, got.InputCRCs)
	}
}

// A paced compressing merge is charged for the bytes it reads, not for its
// buffer: forty 2 KB inputs were charged a chunk each, twice (the data and
// the read that sees EOF), and slept accordingly.
func TestPacedMergeIsChargedTheBytesRead(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	var names []string
	total := 0
	for i := 1; i <= 40; i++ {
		n := fmt.Sprintf("app-%02d.log", i)
		data := strings.Repeat(fmt.Sprintf("line %d\n", i), 250)
		total += len(data)
		r.write(n, data)
		names = append(names, n)
	}
	const rate = 1 << 20
	c := &fakeClock{now: time.Unix(0, 0)}
	r.env.Pacer = NewPacer(rate, 1<<20, c) // a bucket of 128 KiB
	j := r.job(names...)
	j.Compress = "zstd"
	if _, err := r.env.Merge(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	// At most the bytes over the budget, less the bucket it starts with.
	slept := c.Now().Sub(time.Unix(0, 0))
	if limit := time.Duration(float64(total) / rate * float64(time.Second)); slept > limit {
		t.Fatalf("a paced merge of %d bytes at %d B/s slept %v, more than %v", total, rate, slept, limit)
	}
}

// watchClock is a fakeClock that calls at whenever a pacer is about to wait.
type watchClock struct {
	fakeClock
	at func()
}

func (c *watchClock) After(d time.Duration) <-chan time.Time {
	c.at()
	return c.fakeClock.After(d)
}

// A paced merge reads its inputs at its pace, in its own steps: whenever it
// waits for the pacer, no page of the input past what it copied and the two
// steps it asked for is in the page cache. Without fsx.Input.ReadAhead the
// kernel reads ahead of the copy by its own window (8 MiB bursts on the
// virtio disk measured, each stalling other writers' fsyncs).
func TestPacedMergeReadsItsInputAtItsPace(t *testing.T) {
	const mib = 1 << 20
	r := newRig(t, filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "state"))
	r.write("app-1.log", strings.Repeat("0123456789abcde\n", 8*mib/16))
	r.write("app-2.log", "last\n")
	in := filepath.Join(r.logs, "app-1.log")
	testutil.Evict(t, in)
	page := int64(os.Getpagesize())
	checks := 0
	c := &watchClock{fakeClock: fakeClock{now: time.Unix(0, 0)}}
	c.at = func() {
		temps := r.temps()
		if len(temps) != 1 {
			return
		}
		st, err := r.dir.Stat(temps[0])
		if err != nil || st.Size >= 8*mib {
			return
		}
		checks++
		for i, res := range testutil.Resident(t, in) {
			if at := int64(i) * page; res && at >= st.Size+2*pacedStep {
				t.Fatalf("waiting with %d bytes copied, the input's page at %d is in the page cache (past the %d bytes of two steps)", st.Size, at, 2*pacedStep)
			}
		}
	}
	r.env.Pacer = NewPacer(1*mib, 1<<20, c) // a bucket of 128 KiB: a wait at nearly every step
	r.env.ChunkSize = 64 << 10
	if _, err := r.env.Merge(context.Background(), r.job("app-1.log", "app-2.log")); err != nil {
		t.Fatal(err)
	}
	if checks < 100 {
		t.Fatalf("only %d waits looked at", checks)
	}
	if got := r.read("app-1~c1.log"); got != strings.Repeat("0123456789abcde\n", 8*mib/16)+"last\n" {
		t.Fatalf("output of %d bytes differs from the concatenation", len(got))
	}
}
