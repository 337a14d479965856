package fsx

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

func sampleOp() Op {
	return Op{Kind: "merge", Stream: "app", Dir: "/var/log/app", Output: "app-1~c1.log", Temp: ".logcompactd-tmp-x",
		Inputs: []FileRef{
			{Name: "app-1.log", Dev: 1, Ino: 2, Gen: 3, Size: 4, MtimeNs: 5},
			{Name: "app-2\n$(rm -rf /)\xff\xfe.log", Dev: 1, Ino: 9, Gen: -1, Size: 1 << 40, MtimeNs: -7},
		}}
}

func TestJournalRoundTripIsLossless(t *testing.T) {
	d, p := openTestDir(t)
	j, err := OpenJournal(d, "journal")
	must(t, err)
	id, err := j.Begin(sampleOp())
	must(t, err)
	must(t, j.Created(id, FileRef{Name: ".logcompactd-tmp-x", Dev: 1, Ino: 77}))
	must(t, j.Commit(id, Commit{OutSize: 10, OutCRC: 0xdeadbeef, InputCRCs: []uint32{1, 2}, Newlines: []uint32{1}, AtNs: 42}))
	id2, err := j.Begin(sampleOp())
	must(t, err)
	must(t, j.Done(id2))
	must(t, j.Close())

	j, err = OpenJournal(d, "journal")
	must(t, err)
	defer j.Close()
	ops := j.Pending()
	if len(ops) != 1 {
		t.Fatalf("%d pending ops", len(ops))
	}
	op := ops[0]
	want := sampleOp()
	if op.Inputs[1].Name != want.Inputs[1].Name || op.Inputs[1].Gen != -1 || op.Inputs[1].Size != 1<<40 {
		t.Fatalf("input not stored losslessly: %+v", op.Inputs[1])
	}
	if op.Created == nil || op.Created.Ino != 77 || op.Commit == nil || op.Commit.OutCRC != 0xdeadbeef || op.Commit.Newlines[0] != 1 {
		t.Fatalf("op %+v", op)
	}
	if id3, _ := j.Begin(sampleOp()); id3 <= id2 {
		t.Fatalf("ids reused: %d after %d", id3, id2)
	}
	fi, _ := os.Stat(filepath.Join(p, "journal"))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %o", fi.Mode().Perm())
	}
}

func TestJournalTornTailIsTruncated(t *testing.T) {
	d, p := openTestDir(t)
	j, err := OpenJournal(d, "journal")
	must(t, err)
	_, err = j.Begin(sampleOp())
	must(t, err)
	must(t, j.Close())
	path := filepath.Join(p, "journal")
	good, _ := os.ReadFile(path)
	full := append(append([]byte{}, good...), frame(encodeBegin(9, &Op{Kind: "merge"}))...)
	for cut := len(good) + 1; cut < len(full); cut += 3 {
		must(t, os.WriteFile(path, full[:cut], 0o600))
		j, err := OpenJournal(d, "journal")
		if err != nil {
			t.Fatalf("torn tail at %d: %v", cut, err)
		}
		if n := len(j.Pending()); n != 1 {
			t.Fatalf("torn tail at %d: %d ops", cut, n)
		}
		j.Close()
		if b, _ := os.ReadFile(path); len(b) != len(good) {
			t.Fatalf("torn tail not truncated: %d bytes, want %d", len(b), len(good))
		}
	}
}

func TestJournalCorruptMiddleStopsLoudly(t *testing.T) {
	d, p := openTestDir(t)
	j, err := OpenJournal(d, "journal")
	must(t, err)
	for i := 0; i < 3; i++ {
		_, err = j.Begin(sampleOp())
		must(t, err)
	}
	must(t, j.Close())
	path := filepath.Join(p, "journal")
	b, _ := os.ReadFile(path)
	b[headerLen+5] ^= 0x55 // inside the first record's payload
	must(t, os.WriteFile(path, b, 0o600))
	if _, err := OpenJournal(d, "journal"); !errors.Is(err, ErrJournalCorrupt) {
		t.Fatalf("corrupt middle: %v", err)
	}
	if after, _ := os.ReadFile(path); len(after) != len(b) {
		t.Fatal("a corrupt journal was modified")
	}
}

func TestJournalCompactKeepsPendingOps(t *testing.T) {
	d, _ := openTestDir(t)
	j, err := OpenJournal(d, "journal")
	must(t, err)
	var keep uint64
	for i := 0; i < 50; i++ {
		id, err := j.Begin(sampleOp())
		must(t, err)
		if i == 25 {
			keep = id
			must(t, j.Created(id, FileRef{Name: "t", Ino: 5}))
			must(t, j.Commit(id, Commit{OutSize: 3}))
			continue
		}
		must(t, j.Done(id))
	}
	must(t, j.Compact(0))
	_, err = j.Begin(sampleOp()) // appends after compaction still work
	must(t, err)
	must(t, j.Close())
	j, err = OpenJournal(d, "journal")
	must(t, err)
	defer j.Close()
	ops := j.Pending()
	if len(ops) != 2 || ops[0].ID != keep || ops[0].Created == nil || ops[0].Commit == nil || ops[0].Commit.OutSize != 3 {
		t.Fatalf("after compaction: %+v", ops)
	}
}

func FuzzJournalReplay(f *testing.F) {
	f.Add(frame(encodeBegin(1, &Op{Kind: "merge", Inputs: []FileRef{{Name: "a"}}})))
	f.Add(append(frame(encodeBegin(1, &Op{Kind: "merge"})), frame(encodeCommit(1, &Commit{OutSize: 1}))...))
	f.Add([]byte("LJ\x00\x00\x00\x05"))
	f.Fuzz(func(t *testing.T, data []byte) {
		j := &Journal{ops: map[uint64]*Op{}, next: 1}
		good, err := j.replay(data)
		if err == nil && (good < 0 || good > len(data)) {
			t.Fatalf("good prefix %d of %d", good, len(data))
		}
		if err != nil && !errors.Is(err, ErrJournalCorrupt) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

func TestLeaseBreaksWhenAWriterOpens(t *testing.T) {
	d, p := openTestDir(t)
	path := filepath.Join(p, "in.log")
	must(t, os.WriteFile(path, []byte("data\n"), 0o644))
	st, err := d.Stat("in.log")
	must(t, err)
	ls := NewLeases()
	defer ls.Close()
	l, err := ls.Take(d, "in.log", st)
	must(t, err)
	defer l.Release()
	if l.Broken() {
		t.Fatal("broken before any writer")
	}
	start := time.Now()
	cmd := exec.Command("sh", "-c", `exec 3>>"$1" && echo opened`, "sh", path)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	defer cmd.Wait()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "opened" {
		t.Fatalf("writer: %q %v", line, err)
	}
	// The writer's open only returns once we gave the lease back (else it waits
	// lease-break-time, 45 s here): SIGIO reached us and we released at once.
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("writer waited %s for the lease", waited)
	}
	if !l.Broken() {
		t.Fatal("lease not marked broken after a writer opened the file")
	}
	// And a file open for writing refuses a new lease.
	w := exec.Command("sh", "-c", `exec 3>>"$1" && echo ready && exec sleep 60`, "sh", path)
	wout, _ := w.StdoutPipe()
	must(t, w.Start())
	defer func() { _ = w.Process.Kill(); _ = w.Wait() }()
	if _, err := bufio.NewReader(wout).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Take(d, "in.log", st); !errors.Is(err, ErrWriting) {
		t.Fatalf("Take with a writer = %v, want ErrWriting", err)
	}
}

func TestCreateOutputIsNeverMoreReadableThanItsModel(t *testing.T) {
	d, p := openTestDir(t)
	must(t, os.WriteFile(filepath.Join(p, "in"), nil, 0o640))
	must(t, os.Chmod(filepath.Join(p, "in"), 0o640))
	like, err := d.Stat("in")
	must(t, err)
	f, st, err := d.CreateOutput(".logcompactd-tmp-out", like)
	must(t, err)
	f.Close()
	if st.Mode != 0o640 || st.UID != like.UID || st.GID != like.GID {
		t.Fatalf("output %o %d:%d, model %o %d:%d", st.Mode, st.UID, st.GID, like.Mode, like.UID, like.GID)
	}
	if _, _, err := d.CreateOutput(".logcompactd-tmp-out", like); err == nil {
		t.Fatal("CreateOutput replaced an existing file")
	}
	must(t, os.WriteFile(filepath.Join(p, "taken"), []byte("x"), 0o600))
	if err := d.RenameNoReplace(".logcompactd-tmp-out", "taken"); !errors.Is(err, ErrExists) {
		t.Fatalf("RenameNoReplace over a file: %v", err)
	}
	if err := d.Unlink("taken", st); !errors.Is(err, ErrChanged) {
		t.Fatalf("Unlink of another file: %v", err)
	}
}

// TestCreateOutputTakesTheOwnerOfItsModel: as root, the output belongs to the
// first input's owner and group, not to root.
func TestCreateOutputTakesTheOwnerOfItsModel(t *testing.T) {
	testutil.RequireRoot(t, "chown")
	d, p := openTestDir(t)
	must(t, os.WriteFile(filepath.Join(p, "in"), nil, 0o600))
	must(t, os.Chown(filepath.Join(p, "in"), 1234, 5678))
	like, err := d.Stat("in")
	must(t, err)
	f, st, err := d.CreateOutput(".logcompactd-tmp-own", like)
	must(t, err)
	f.Close()
	if st.UID != 1234 || st.GID != 5678 || st.Mode != 0o600 {
		t.Fatalf("output %d:%d %o, want 1234:5678 600", st.UID, st.GID, st.Mode)
	}
}

// TestSubRefusesASymlink: a symlink planted where a stream's cold subdirectory
// belongs is not followed, so no archive can be written through it.
func TestSubRefusesASymlink(t *testing.T) {
	d, p := openTestDir(t)
	elsewhere := t.TempDir()
	must(t, os.Symlink(elsewhere, filepath.Join(p, "app")))
	if sub, err := d.Sub("app", 0o750); err == nil {
		sub.Close()
		t.Fatal("Sub followed a symlink")
	}
	sub, err := d.Sub("other", 0o750)
	must(t, err)
	defer sub.Close()
	if fi, err := os.Lstat(filepath.Join(p, "other")); err != nil || !fi.IsDir() {
		t.Fatalf("Sub did not create the subdirectory: %v", err)
	}
}

// TestFailedAppendIsFinal: once a record could not be written (here: the file
// refuses writes, as a dying disk would), the journal takes no further record
// — not even after the fault is gone — until it is opened again, and the
// reopened journal holds every record that did reach it.
func TestFailedAppendIsFinal(t *testing.T) {
	d, p := openTestDir(t)
	j, err := OpenJournal(d, "journal")
	must(t, err)
	id, err := j.Begin(sampleOp())
	must(t, err)
	good := j.f
	ro, err := os.Open(filepath.Join(p, "journal"))
	must(t, err)
	j.f = ro // writes now fail with EBADF
	if err := j.Created(id, FileRef{Name: "x"}); !errors.Is(err, ErrJournalFailed) {
		t.Fatalf("err = %v, want ErrJournalFailed", err)
	}
	j.f = good // the fault is gone; the journal must still refuse
	if _, err := j.Begin(sampleOp()); !errors.Is(err, ErrJournalFailed) {
		t.Fatalf("append after a failure: err = %v", err)
	}
	if err := j.Done(id); !errors.Is(err, ErrJournalFailed) || !errors.Is(j.Err(), ErrJournalFailed) {
		t.Fatalf("Done after a failure: %v / %v", err, j.Err())
	}
	ro.Close()
	must(t, j.Close())
	j, err = OpenJournal(d, "journal")
	must(t, err)
	defer j.Close()
	if ops := j.Pending(); len(ops) != 1 || ops[0].Created != nil {
		t.Fatalf("after reopening: %+v", ops)
	}
}

func TestRemovingAndLazyDoneSurviveReopenAndCompaction(t *testing.T) {
	d, _ := openTestDir(t)
	j, err := OpenJournal(d, "journal")
	must(t, err)
	id, err := j.Begin(sampleOp())
	must(t, err)
	must(t, j.Commit(id, Commit{OutSize: 1}))
	must(t, j.Removing(id))
	must(t, j.Blocked(id, "input \"x\": operation not permitted"))
	id2, err := j.Begin(sampleOp())
	must(t, err)
	must(t, j.Done(id2))
	must(t, j.Compact(0))
	must(t, j.Close())
	j, err = OpenJournal(d, "journal")
	must(t, err)
	defer j.Close()
	ops := j.Pending()
	if len(ops) != 1 || ops[0].ID != id || !ops[0].Removing || ops[0].Commit == nil || !ops[0].InputsInactive() ||
		ops[0].Blocked != "input \"x\": operation not permitted" {
		t.Fatalf("after reopen: %+v", ops)
	}
}

// The size and CRC-32C journaled before an upload are read back, also after a
// compaction rewrote the journal.
func TestJournalUploadRecord(t *testing.T) {
	d, _ := openTestDir(t)
	j, err := OpenJournal(d, "journal")
	must(t, err)
	id, err := j.Begin(sampleOp())
	must(t, err)
	must(t, j.Created(id, FileRef{Name: ".logcompactd-tmp-x", Dev: 1, Ino: 77}))
	must(t, j.Upload(id, Upload{Size: 1 << 33, CRC: 0xfeedface}))
	must(t, j.Compact(0))
	must(t, j.Close())
	j, err = OpenJournal(d, "journal")
	must(t, err)
	defer j.Close()
	ops := j.Pending()
	if len(ops) != 1 || ops[0].Upload == nil || ops[0].Upload.Size != 1<<33 || ops[0].Upload.CRC != 0xfeedface || ops[0].Commit != nil {
		t.Fatalf("after a compaction: %+v", ops)
	}
}
