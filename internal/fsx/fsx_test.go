package fsx

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

func openTestDir(t *testing.T) (*Dir, string) {
	t.Helper()
	p := t.TempDir()
	d, err := OpenDir(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, p
}

func TestOpenDirRefusesSymlink(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(link); err == nil || !strings.Contains(err.Error(), link) {
		t.Fatalf("OpenDir(symlink) = %v, want an error naming %s", err, link)
	}
}

func TestNamesIsRepeatable(t *testing.T) {
	d, p := openTestDir(t)
	for _, n := range []string{"a", "b\nc", "d e"} {
		if err := os.WriteFile(filepath.Join(p, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		names, err := d.Names()
		if err != nil || len(names) != 3 {
			t.Fatalf("listing %d: %v %v", i, names, err)
		}
	}
}

func TestOpenReadRefusesWhatIsNotASingleRegularFile(t *testing.T) {
	d, p := openTestDir(t)
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink(outside, filepath.Join(p, "symlink.log")))
	must(t, os.Link(outside, filepath.Join(p, "hardlink.log")))
	must(t, syscall.Mkfifo(filepath.Join(p, "fifo.log"), 0o600))
	testutil.RequireRoot(t, "mknod of a device node")
	must(t, syscall.Mknod(filepath.Join(p, "null.log"), syscall.S_IFCHR|0o600, 0x0103)) // /dev/null's numbers
	for _, name := range []string{"symlink.log", "hardlink.log", "fifo.log", "null.log"} {
		f, err := d.OpenRead(name, Stat{})
		if err == nil {
			f.Close()
			t.Errorf("OpenRead(%s) succeeded", name)
			continue
		}
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("OpenRead(%s) = %v, want ErrNotRegular", name, err)
		}
	}
	st, err := d.Stat("fifo.log")
	if err != nil || st.Kind != FIFO {
		t.Fatalf("Stat(fifo) = %+v %v", st, err)
	}
}

func TestOpenReadRefusesSwappedIdentity(t *testing.T) {
	d, p := openTestDir(t)
	must(t, os.WriteFile(filepath.Join(p, "a.log"), []byte("a"), 0o600))
	st, err := d.Stat("a.log")
	must(t, err)
	must(t, os.Remove(filepath.Join(p, "a.log")))
	must(t, os.WriteFile(filepath.Join(p, "keep"), nil, 0o600)) // keep the old inode number in use
	must(t, os.WriteFile(filepath.Join(p, "a.log"), []byte("b"), 0o600))
	if _, err := d.OpenRead("a.log", st); !errors.Is(err, ErrChanged) {
		t.Fatalf("OpenRead after swap = %v, want ErrChanged", err)
	}
}

func TestHeldForWriteSeesARealWriterProcess(t *testing.T) {
	d, p := openTestDir(t)
	path := filepath.Join(p, "seg.log")
	must(t, os.WriteFile(path, []byte("x\n"), 0o644))
	st, err := d.Stat("seg.log")
	must(t, err)
	held, err := d.HeldForWrite("seg.log", st)
	if err != nil || held {
		t.Fatalf("before writer: held=%v err=%v", held, err)
	}
	w := testutil.HoldOpenForWrite(t, path)
	held, err = d.HeldForWrite("seg.log", st)
	if err != nil || !held {
		t.Fatalf("with writer: held=%v err=%v", held, err)
	}
	writers, err := ProcWriters("/proc")
	must(t, err)
	if !writers[FileID{st.Dev, st.Ino}] {
		t.Fatalf("ProcWriters misses the writer's file")
	}
	must(t, w.Process.Kill())
	_ = w.Wait()
	held, err = d.HeldForWrite("seg.log", st)
	if err != nil || held {
		t.Fatalf("after writer exit: held=%v err=%v", held, err)
	}
}

func TestParseFdinfoFlags(t *testing.T) {
	for in, want := range map[string]int{
		"pos:\t0\nflags:\t0100002\nmnt_id:\t25\n": 0o100002,
		"pos:\t0\nflags:\t02100000\n":             0o2100000,
	} {
		got, ok := parseFdinfoFlags(bufio.NewScanner(strings.NewReader(in)))
		if !ok || got != want {
			t.Errorf("parse %q = %o %v", in, got, ok)
		}
	}
	if _, ok := parseFdinfoFlags(bufio.NewScanner(strings.NewReader("pos: 0\n"))); ok {
		t.Error("no flags line accepted")
	}
}

func TestStateDirAndLock(t *testing.T) {
	base := t.TempDir()
	state := filepath.Join(base, "state")
	must(t, EnsureStateDir(state))
	fi, err := os.Stat(state)
	must(t, err)
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %o", fi.Mode().Perm())
	}
	open := filepath.Join(base, "open")
	must(t, os.Mkdir(open, 0o777))
	must(t, os.Chmod(open, 0o777))
	if err := EnsureStateDir(open); err == nil {
		t.Fatal("a world-writable state dir was accepted")
	}
	d, err := OpenDir(state)
	must(t, err)
	defer d.Close()
	l1, err := d.Lock("lock")
	must(t, err)
	d2, err := OpenDir(state)
	must(t, err)
	defer d2.Close()
	if _, err := d2.Lock("lock"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock = %v, want ErrLocked", err)
	}
	must(t, l1.Close())
	l2, err := d2.Lock("lock")
	must(t, err)
	l2.Close()
}

func TestReplaceFileIsAtomicAndPrivate(t *testing.T) {
	d, p := openTestDir(t)
	must(t, d.ReplaceFile("state", []byte("one"), 0o600))
	must(t, d.ReplaceFile("state", []byte("two"), 0o600))
	got, err := d.ReadFile("state")
	if err != nil || string(got) != "two" {
		t.Fatalf("read back %q %v", got, err)
	}
	fi, _ := os.Stat(filepath.Join(p, "state"))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", fi.Mode().Perm())
	}
	names, _ := d.Names()
	for _, n := range names {
		if IsTemp(n) {
			t.Fatalf("temp file left: %s", n)
		}
	}
	must(t, os.WriteFile(filepath.Join(p, TempName()), nil, 0o600))
	must(t, d.RemoveTemps())
	if names, _ := d.Names(); len(names) != 1 {
		t.Fatalf("RemoveTemps left %v", names)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// WriteBehind asks for writeback every WriteBehindBytes on a real file, and
// turns itself off on a file that does not support it (a pipe), silently.
func TestWriteBehind(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wb := NewWriteBehind(f, 0)
	chunk := make([]byte, WriteBehindBytes)
	var n int64
	for i := 0; i < (3*WriteBehindBytes+WriteBehindLag)/WriteBehindBytes; i++ {
		k, err := f.Write(chunk)
		if err != nil {
			t.Fatal(err)
		}
		n += int64(k)
		wb.Advance(n)
	}
	if wb.off || wb.started != 3*WriteBehindBytes+WriteBehindLag {
		t.Fatalf("after %d bytes: off %v, writeback requested up to %d", n, wb.off, wb.started)
	}
	// As a writer in front of the file, it counts what passes.
	g, err := os.Create(filepath.Join(t.TempDir(), "out2"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	gw := NewWriteBehind(g, 0)
	for i := 0; i < 2; i++ {
		if _, err := gw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if gw.off || gw.started != 2*WriteBehindBytes {
		t.Fatalf("as a writer: off %v, writeback requested up to %d", gw.off, gw.started)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	pw := NewWriteBehind(w, 0)
	pw.Advance(2 * WriteBehindBytes)
	if !pw.off {
		t.Fatal("sync_file_range on a pipe did not turn write-behind off")
	}
	var none *WriteBehind
	none.Advance(1 << 30) // a nil WriteBehind is a no-op
}

// TestOpenDirRefusesWhatAnotherUserCouldRedirect: a dir reached through a
// directory another (real) user owns or can write — who could swap a component
// for a symlink — or through a symlink they own, is refused; through root's
// own symlink, or a sticky root-owned dir like /tmp, it opens.
func TestOpenDirRefusesWhatAnotherUserCouldRedirect(t *testing.T) {
	testutil.RequireRoot(t, "create a user and chown to it")
	u := testutil.NewUser(t)
	base := t.TempDir()
	mk := func(p string, mode uint32, uid int) string {
		must(t, os.MkdirAll(p, 0o755))
		must(t, syscall.Chmod(p, mode))
		must(t, os.Chown(p, uid, uid))
		return p
	}
	theirs := mk(filepath.Join(base, "theirs"), 0o755, u.UID)
	mk(filepath.Join(theirs, "logs"), 0o755, 0)
	open := mk(filepath.Join(base, "open"), 0o777, 0)
	mk(filepath.Join(open, "logs"), 0o755, 0)
	sticky := mk(filepath.Join(base, "sticky"), 0o1777, 0)
	mk(filepath.Join(sticky, "logs"), 0o755, 0)
	real := mk(filepath.Join(base, "real"), 0o755, 0)
	mk(filepath.Join(real, "sub"), 0o755, 0)
	must(t, os.Symlink(real, filepath.Join(base, "rootlink")))
	must(t, os.Symlink(real, filepath.Join(sticky, "userlink")))
	must(t, os.Lchown(filepath.Join(sticky, "userlink"), u.UID, u.GID))

	cases := []struct {
		path string
		ok   bool
	}{
		{filepath.Join(theirs, "logs"), false},
		{filepath.Join(open, "logs"), false},
		{filepath.Join(sticky, "logs"), true},
		{filepath.Join(base, "rootlink"), false}, // the last component is a symlink: configure the real dir
		{filepath.Join(base, "rootlink", "sub"), true},
		{filepath.Join(sticky, "userlink", "sub"), false},
		{filepath.Join(real, "sub"), true},
	}
	// OpenDir, then one Opener for all the paths in order and another in
	// reverse: what an Opener checked once for one path (base and above)
	// must not let another through, nor keep a symlink's target as a path.
	fresh := map[string]string{}
	check := func(how, path string, ok bool, d *Dir, err error) {
		t.Helper()
		if d != nil {
			d.Close()
		}
		if (err == nil) != ok {
			t.Errorf("%s(%s): %v, want ok=%v", how, path, err, ok)
		}
		if !ok && err != nil && strings.Contains(path, "theirs") && !errors.Is(err, ErrUnsafePath) {
			t.Errorf("%s(%s): %v, want ErrUnsafePath", how, path, err)
		}
	}
	for _, c := range cases {
		d, err := OpenDir(c.path)
		check("OpenDir", c.path, c.ok, d, err)
		fresh[c.path] = fmt.Sprint(err)
	}
	for _, order := range []string{"in order", "reversed"} {
		o := &Opener{}
		for i := range cases {
			c := cases[i]
			if order == "reversed" {
				c = cases[len(cases)-1-i]
			}
			d, err := o.Open(c.path)
			check("Opener.Open "+order, c.path, c.ok, d, err)
			if fmt.Sprint(err) != fresh[c.path] {
				t.Errorf("Opener.Open %s(%s): %v, OpenDir said %s", order, c.path, err, fresh[c.path])
			}
		}
		o.Close()
	}
}

// TestOpenerChecksSharedParentsOnce: an Opener walks the directories above
// many dirs once; each Dir it returns is its own (closing the Opener or the
// other Dirs leaves it usable).
func TestOpenerChecksSharedParentsOnce(t *testing.T) {
	base := t.TempDir()
	var paths []string
	for i := range 20 {
		p := filepath.Join(base, "logs", fmt.Sprintf("d%02d", i))
		must(t, os.MkdirAll(p, 0o755))
		must(t, os.WriteFile(filepath.Join(p, "seg.log"), []byte("x"), 0o644))
		paths = append(paths, p)
	}
	o := &Opener{}
	var dirs []*Dir
	for _, p := range append(paths, filepath.Join(base, "logs"), base) {
		d, err := o.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	// "/", each component of base, and base/logs: the parents of the paths.
	if want := len(splitPath(base)) + 2; len(o.checked) != want {
		t.Errorf("the Opener kept %d checked directories, want %d (each parent once): %v", len(o.checked), want, o.checked)
	}
	o.Close()
	if len(o.checked) != 0 {
		t.Errorf("Close left %d directories", len(o.checked))
	}
	for i, p := range paths {
		st, err := dirs[i].Stat("seg.log")
		if err != nil || st.Size != 1 {
			t.Errorf("%s through its Dir after the Opener closed: %+v, %v", p, st, err)
		}
	}
	for _, d := range dirs {
		must(t, d.Close())
	}
}

// TestOpenerLeaksNoFDs: through symlinks (relative, absolute, up with ".."),
// to missing dirs and non-dirs, an Opener and the Dirs it returns, once
// closed, leave the process with the fds it had; and it reaches what OpenDir
// reaches.
func TestOpenerLeaksNoFDs(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	must(t, os.MkdirAll(filepath.Join(real, "sub", "deep"), 0o755))
	must(t, os.WriteFile(filepath.Join(real, "file"), nil, 0o644))
	must(t, os.Symlink("real", filepath.Join(base, "rel")))
	must(t, os.Symlink(real, filepath.Join(base, "abs")))
	must(t, os.Symlink("../real/sub", filepath.Join(real, "sub", "up")))
	paths := []string{
		filepath.Join(real, "sub"), filepath.Join(real, "sub", "deep"), filepath.Join(base, "rel", "sub"),
		filepath.Join(base, "abs", "sub", "deep"), filepath.Join(real, "sub", "up", "deep"), filepath.Join(real, "missing"),
		filepath.Join(real, "file"), filepath.Join(base, "rel"), filepath.Join(base, "real", "..", "real", "sub"), real,
	}
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	for round := range 3 {
		o := &Opener{}
		var opened []*Dir
		for _, p := range paths {
			want, werr := OpenDir(p)
			got, gerr := o.Open(p)
			if fmt.Sprint(werr) != fmt.Sprint(gerr) {
				t.Fatalf("round %d, %s: Opener %v, OpenDir %v", round, p, gerr, werr)
			}
			if want != nil {
				if got.dev != want.dev || got.ino != want.ino {
					t.Errorf("%s: the Opener reached another directory", p)
				}
				must(t, want.Close())
				opened = append(opened, got)
			}
		}
		o.Close()
		for _, d := range opened {
			must(t, d.Close())
		}
	}
	if after := fds(); after != before {
		t.Fatalf("%d fds open after, %d before", after, before)
	}
}

// ReadAhead turns the kernel's own read-ahead off for the input (the pages
// asked for arrive asynchronously: on Linux 6.18 FADV_WILLNEED returns before
// they are in the page cache), so a job's reads bring in no page past what it
// read or asked for. Without it, 4 MiB read in 64 KiB steps brought in 15 MiB
// on the virtio disk measured (read_ahead_kb 8 MiB): a paced merge read its
// inputs in 8 MiB bursts that stalled other writers' fsyncs.
func TestReadAheadKeepsTheKernelFromReadingAhead(t *testing.T) {
	const mib = 1 << 20
	path := filepath.Join(t.TempDir(), "in")
	must(t, os.WriteFile(path, []byte(strings.Repeat("0123456789abcde\n", 32*mib/16)), 0o644))
	testutil.Evict(t, path)
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	in := &Input{Ref: FileRef{Size: 32 * mib}, Name: "in", File: f}
	in.ReadAhead(0, mib/2) // [0, 1 MiB)
	buf := make([]byte, 64<<10)
	for off := int64(0); off < 4*mib; off += int64(len(buf)) {
		_, err := f.ReadAt(buf, off)
		must(t, err)
	}
	page := int64(os.Getpagesize())
	for i, r := range testutil.Resident(t, path) {
		if at := int64(i) * page; r && at >= 4*mib {
			t.Fatalf("the page at %d is in the page cache: only [0, 4 MiB) was read and [0, 1 MiB) asked for", at)
		}
	}
	if in.ahead != mib {
		t.Fatalf("asked for up to 1 MiB: ahead = %d", in.ahead)
	}
	in.ReadAhead(0, mib/4) // asked already: nothing more
	if in.ahead != mib {
		t.Fatalf("asked for less again: ahead = %d", in.ahead)
	}
	in.ReadAhead(20*mib, 50*mib) // from past a hole, to past the end: up to the size
	if in.ahead != 32*mib {
		t.Fatalf("asked past the end of a 32 MiB input: ahead = %d", in.ahead)
	}
}

// A directory's ChangeTime moves at every create, rename within it, rename
// into it, link and unlink, and not when a file in it is written; a
// filesystem whose entries may change elsewhere (here /proc) gives none.
// Each change in turn is told apart only by a kernel with multigrain
// timestamps (6.13 on: a ctime that was read is followed by a fine-grained
// one); on an older one changes within one clock tick share a ctime, which is
// why the scanner trusts only a ctime that lies quietFor in the past. There a
// change must only not move the ctime back.
func TestChangeTimeMovesWithEveryEntryChange(t *testing.T) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	fine := major > 6 || (major == 6 && minor >= 13)
	d, p := openTestDir(t)
	other := t.TempDir()
	last, ok := d.ChangeTime()
	if !ok {
		t.Fatalf("no change time on the test dir's filesystem (%s)", p)
	}
	step := func(what string, moves bool, fn func() error) {
		t.Helper()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		ct, ok := d.ChangeTime()
		if !fine && moves {
			moves = ct != last // within a tick, or not: both are right
		}
		if !ok || (ct != last) != moves || ct < last {
			t.Fatalf("%s: change time %d, was %d (ok %v); should move: %v", what, ct, last, ok, moves)
		}
		last = ct
	}
	step("create", true, func() error { return os.WriteFile(filepath.Join(p, "a"), []byte("x"), 0o644) })
	step("write", false, func() error { return os.WriteFile(filepath.Join(p, "a"), []byte("xy"), 0o644) })
	step("rename", true, func() error { return os.Rename(filepath.Join(p, "a"), filepath.Join(p, "b")) })
	step("link", true, func() error { return os.Link(filepath.Join(p, "b"), filepath.Join(p, "c")) })
	step("unlink", true, func() error { return os.Remove(filepath.Join(p, "c")) })
	if err := os.WriteFile(filepath.Join(other, "d"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	step("rename in from another dir", true, func() error { return os.Rename(filepath.Join(other, "d"), filepath.Join(p, "d")) })
	proc, err := OpenDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	if ct, ok := proc.ChangeTime(); ok {
		t.Fatalf("/proc: change time %d trusted", ct)
	}
}
