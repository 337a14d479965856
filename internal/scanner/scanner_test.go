package scanner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func stream(dir, pattern, order string) config.Stream {
	return config.Stream{Name: "s", Dir: dir, Pattern: pattern, Order: order,
		Compaction: config.Compaction{Quiesce: time.Minute}}
}

func write(t *testing.T, path, data string, age time.Duration) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if age > 0 {
		old := time.Now().Add(-age)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
}

func names(r Result) []string {
	var out []string
	for _, e := range r.Segments {
		out = append(out, e.Name)
	}
	return out
}

func scanOne(t *testing.T, s *Scanner) Result {
	t.Helper()
	rs := s.Scan(time.Now(), nil, nil)
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	if rs[0].Err != nil {
		t.Fatal(rs[0].Err)
	}
	return rs[0]
}

func TestScanSkipsHostileEntriesWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret.log")
	write(t, outside, "secret\n", 0)
	write(t, filepath.Join(dir, "ok-1.log"), "a\n", time.Hour)
	must(t, os.Symlink(outside, filepath.Join(dir, "ok-2.log")))
	must(t, os.Link(outside, filepath.Join(dir, "ok-3.log")))
	must(t, syscall.Mkfifo(filepath.Join(dir, "ok-4.log"), 0o644))
	testutil.RequireRoot(t, "mknod of a device node")
	must(t, syscall.Mknod(filepath.Join(dir, "ok-5.log"), syscall.S_IFCHR|0o600, 0x0103))
	must(t, os.Mkdir(filepath.Join(dir, "ok-6.log"), 0o755))
	odd := []string{"ok-7\n$(touch pwned);.log", "ok-8-\xff\xfe.log", "ok-9-" + strings.Repeat("x", 255-len("ok-9-.log")) + ".log"}
	for _, n := range odd {
		write(t, filepath.Join(dir, n), "odd\n", time.Hour)
	}
	write(t, filepath.Join(dir, ".logcompactd-tmp-1-1"), "tmp", 0)

	s := New([]config.Stream{stream(dir, "ok-*", "name")}, Options{})
	defer s.Close()
	done := make(chan Result)
	go func() { done <- scanOne(t, s) }()
	var r Result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("scan blocked (a FIFO or device was opened?)")
	}
	got := names(r)
	want := append([]string{"ok-1.log"}, odd...)
	if len(got) != len(want) {
		t.Fatalf("segments %q, want %q", got, want)
	}
	if len(r.Foreign) != 5 {
		t.Fatalf("foreign %q, want the symlink, hard link, FIFO, device and directory", r.Foreign)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("a name was executed")
	}
}

func TestIdentitySurvivesRenameAndOrderIsNatural(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a-10.log", "a-9.log", "a-100.log"} {
		write(t, filepath.Join(dir, n), n, time.Hour)
	}
	s := New([]config.Stream{stream(dir, "a-*.log", "name")}, Options{})
	defer s.Close()
	r := scanOne(t, s)
	if got := strings.Join(names(r), " "); got != "a-9.log a-10.log a-100.log" {
		t.Fatalf("order %q", got)
	}
	id := r.Segments[0].ID
	must(t, os.Rename(filepath.Join(dir, "a-9.log"), filepath.Join(dir, "a-99.log")))
	r = scanOne(t, s)
	for _, e := range r.Segments {
		if e.Name == "a-99.log" && e.ID != id {
			t.Fatalf("renamed segment changed identity: %+v vs %+v", e.ID, id)
		}
	}
}

func TestMtimeOrder(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "b.log"), "b", 3*time.Hour)
	write(t, filepath.Join(dir, "a.log"), "a", 2*time.Hour)
	write(t, filepath.Join(dir, "c.log"), "c", 4*time.Hour)
	s := New([]config.Stream{stream(dir, "*.log", "mtime")}, Options{})
	defer s.Close()
	if got := strings.Join(names(scanOne(t, s)), " "); got != "c.log b.log a.log" {
		t.Fatalf("order %q", got)
	}
}

// TestMtimeTiesGoByBirth: segments whose last writes fell in one tick of the
// kernel's clock share an mtime; a renumbering writer's names then say the
// opposite of the truth (app.log sorts before app.log.1), their births do not.
// Without a birth time (0: the filesystem keeps none) the name decides.
func TestMtimeTiesGoByBirth(t *testing.T) {
	const tick = int64(1_700_000_000_000_000_000)
	seg := func(name string, mtime, birth int64) model.Segment {
		return model.Segment{Name: name, MtimeNs: mtime, ID: model.SegmentID{Ino: uint64(len(name)), Gen: birth}}
	}
	es := []model.Segment{
		seg("app.log", tick, tick-10),
		seg("app.log.1", tick, tick-200),
		seg("app.log.3", tick-5_000_000, tick-900),
		seg("app.log.2", tick, tick-400),
		seg("b.log", tick+1, 0),
		seg("a.log", tick+1, 0),
	}
	Sort(es, "mtime")
	var got []string
	for _, e := range es {
		got = append(got, e.Name)
	}
	if want := "app.log.3 app.log.2 app.log.1 app.log a.log b.log"; strings.Join(got, " ") != want {
		t.Fatalf("order %q, want %q", strings.Join(got, " "), want)
	}
}

// A scan takes no lease; CheckWriters asks only of the segments it is given,
// marks the one held open for writing, and a later scan keeps the answer
// without asking again.
func TestWriterProcessIsDetected(t *testing.T) {
	dir := t.TempDir()
	held := filepath.Join(dir, "w-1.log")
	write(t, held, "x\n", time.Hour)
	write(t, filepath.Join(dir, "w-2.log"), "y\n", time.Hour)
	write(t, filepath.Join(dir, "w-3.log"), "z\n", time.Hour)
	testutil.HoldOpenForWrite(t, held)
	s := New([]config.Stream{stream(dir, "w-*.log", "name")}, Options{})
	defer s.Close()
	r := scanOne(t, s)
	if r.Segments[0].Writing || len(s.leases) != 0 {
		t.Fatalf("a scan asked: writing %v, %d answers", r.Segments[0].Writing, len(s.leases))
	}
	second := r.Segments[1].ID
	if s.CheckWriters(r, func(id model.SegmentID) bool { return id == second }) || len(s.leases) != 1 {
		t.Fatalf("asked of w-2.log only: found a writer, or %d answers", len(s.leases))
	}
	if !s.CheckWriters(r, func(model.SegmentID) bool { return true }) {
		t.Fatal("the writer of w-1.log was not found")
	}
	if !r.Segments[0].Writing || r.Segments[1].Writing || r.Segments[2].Writing {
		t.Fatalf("writing flags: %v %v %v", r.Segments[0].Writing, r.Segments[1].Writing, r.Segments[2].Writing)
	}
	if len(s.leases) != 2 { // the newest segment is active anyway: not asked
		t.Fatalf("%d answers cached, want 2", len(s.leases))
	}
	if r := scanOne(t, s); !r.Segments[0].Writing || r.Segments[1].Writing {
		t.Fatalf("the next scan dropped the answers: %v %v", r.Segments[0].Writing, r.Segments[1].Writing)
	}
	// A quiet tick (the dir vouched unchanged) keeps the mark too.
	if r := s.Scan(time.Now(), nil, map[string]bool{filepath.Clean(dir): true})[0]; !r.Reused || !r.Segments[0].Writing {
		t.Fatalf("a quiet tick: reused %v, writing %v", r.Reused, r.Segments[0].Writing)
	}
	// After a reload the new scanner has the answers but has marked nothing
	// yet: its first scan marks the writer (CheckWriters would not ask again).
	s2 := New([]config.Stream{stream(dir, "w-*.log", "name")}, Options{})
	defer s2.Close()
	s2.Inherit(s)
	if r := scanOne(t, s2); !r.Segments[0].Writing {
		t.Fatal("after a reload the writer's mark was lost")
	}
	// A re-read that keeps the list applies the answers it has: w-1.log
	// changed since it was asked, so the answer no longer holds and the mark
	// goes (CheckWriters would ask again). A kept mark would stay for good:
	// CheckWriters does not ask about a segment already marked.
	f, err := os.OpenFile(held, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("more\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if r := scanOne(t, s2); !r.Verified || r.Segments[0].Writing {
		t.Fatalf("a re-read after w-1.log changed: verified %v, writing %v", r.Verified, r.Segments[0].Writing)
	}
}

// A quiet tick does not walk the kept lists for open-for-writing marks when
// there is none (no answer, nothing marked); a mark still goes when its
// answer expired, even once the answer was pruned while its list was not
// looked at (rescans of another directory only).
func TestAWritingMarkOutlivesNoAnswer(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	held := filepath.Join(dir, "w-1.log")
	write(t, held, "x\n", time.Hour)
	write(t, filepath.Join(dir, "w-2.log"), "y\n", time.Hour)
	write(t, filepath.Join(other, "o-1.log"), "z\n", time.Hour)
	testutil.HoldOpenForWrite(t, held)
	o := stream(other, "o-*.log", "name")
	o.Name = "other"
	s := New([]config.Stream{stream(dir, "w-*.log", "name"), o}, Options{LeaseRecheck: time.Minute})
	defer s.Close()
	quiet := map[string]bool{filepath.Clean(dir): true, filepath.Clean(other): true}
	now := time.Now()
	r := s.Scan(now, nil, nil)[0]
	if s.marked || !s.CheckWriters(r, func(model.SegmentID) bool { return true }) || !s.marked {
		t.Fatal("the writer was not found, or not marked")
	}
	// Much later, only the other directory is rescanned: the answer expires
	// and is pruned there, while w-1.log's list keeps its mark.
	later := now.Add(time.Hour)
	s.Scan(later, map[string]bool{filepath.Clean(other): true}, nil)
	if len(s.leases) != 0 || !s.last[r.Stream.Name].Segments[0].Writing {
		t.Fatalf("%d answers left; the list's mark: %v", len(s.leases), s.last[r.Stream.Name].Segments[0].Writing)
	}
	r = s.Scan(later, nil, quiet)[0]
	if !r.Reused || r.Segments[0].Writing || s.marked {
		t.Fatalf("a quiet tick after the answer went: reused %v, still marked %v (scanner %v)", r.Reused, r.Segments[0].Writing, s.marked)
	}
	// Nothing marked, no answer: the lists are not walked (a mark planted
	// behind the scanner's back stays, which shows it).
	r.Segments[1].Writing = true
	if r = s.Scan(later, nil, quiet)[0]; !r.Segments[1].Writing {
		t.Fatal("a quiet tick with no answer and no mark walked the list")
	}
}

func TestMissingDirIsReportedThenPickedUp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	s := New([]config.Stream{stream(dir, "*.log", "name")}, Options{})
	defer s.Close()
	if rs := s.Scan(time.Now(), nil, nil); rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), dir) {
		t.Fatalf("missing dir: %v", rs[0].Err)
	}
	must(t, os.Mkdir(dir, 0o755))
	write(t, filepath.Join(dir, "x.log"), "x", 0)
	if r := scanOne(t, s); len(r.Segments) != 1 {
		t.Fatalf("entries %v", names(r))
	}
	// Deleted and recreated: the scanner follows the new directory.
	must(t, os.RemoveAll(dir))
	must(t, os.Mkdir(dir, 0o755))
	write(t, filepath.Join(dir, "y.log"), "y", 0)
	write(t, filepath.Join(dir, "z.log"), "z", 0)
	if r := scanOne(t, s); len(r.Segments) != 2 {
		t.Fatalf("after recreate: %v", names(r))
	}
}

func waitTrigger(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case <-w.C():
	case <-time.After(10 * time.Second):
		t.Fatal("no trigger")
	}
}

func TestWatcherCoalescesBursts(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	w, err := NewWatcher([]string{a, b}, 50*time.Millisecond, nil)
	must(t, err)
	defer w.Close()
	// A new watch asks for a rescan of its dir (changes before it existed are unseen).
	waitTrigger(t, w)
	if dirs, full := w.Take(); full || !dirs[a] || !dirs[b] {
		t.Fatalf("first take = %v %v", dirs, full)
	}

	f, err := os.Create(filepath.Join(a, "burst.log"))
	must(t, err)
	for i := 0; i < 2000; i++ {
		if _, err := f.WriteString("line\n"); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	waitTrigger(t, w)
	dirs, full := w.Take()
	if full || !dirs[a] || dirs[b] {
		t.Fatalf("take = %v %v", dirs, full)
	}
	// 2000 writes made a handful of triggers at most, not 2000.
	extra := 0
	for {
		select {
		case <-w.C():
			extra++
			w.Take()
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if extra > 10 {
		t.Fatalf("%d extra triggers for one burst", extra)
	}
	// Temp files of our own never trigger.
	write(t, filepath.Join(b, ".logcompactd-tmp-9-9"), "x", 0)
	write(t, filepath.Join(b, "real.log"), "x", 0)
	waitTrigger(t, w)
	if dirs, _ := w.Take(); !dirs[b] {
		t.Fatalf("take = %v", dirs)
	}
}

func TestWatcherPicksUpDirCreatedLater(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	w, err := NewWatcher([]string{dir}, 10*time.Millisecond, nil)
	must(t, err)
	defer w.Close()
	must(t, os.Mkdir(dir, 0o755))
	w.Ensure([]string{dir})
	write(t, filepath.Join(dir, "x.log"), "x", 0)
	waitTrigger(t, w)
	if dirs, _ := w.Take(); !dirs[dir] {
		t.Fatalf("take = %v", dirs)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBindMountedFileIsForeign: a file bind-mounted over a segment name lives on
// another mount; it is skipped like a symlink, whatever its st_dev says.
func TestBindMountedFileIsForeign(t *testing.T) {
	testutil.RequireRoot(t, "bind mount")
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	write(t, outside, "secret\n", 0)
	write(t, filepath.Join(dir, "b-1.log"), "mine\n", time.Hour)
	write(t, filepath.Join(dir, "b-2.log"), "", time.Hour)
	write(t, filepath.Join(dir, "b-3.log"), "x\n", 0)
	must(t, syscall.Mount(outside, filepath.Join(dir, "b-2.log"), "", syscall.MS_BIND, ""))
	t.Cleanup(func() { _ = syscall.Unmount(filepath.Join(dir, "b-2.log"), syscall.MNT_DETACH) })
	s := New([]config.Stream{stream(dir, "b-*.log", "name")}, Options{})
	defer s.Close()
	r := scanOne(t, s)
	if got := strings.Join(names(r), " "); got != "b-1.log b-3.log" || len(r.Foreign) != 1 || r.Foreign[0] != "b-2.log" {
		t.Fatalf("segments %q, foreign %q", got, r.Foreign)
	}
}

// A stream the caller vouches unchanged is not re-read: a file that changed
// behind the scanner's back stays as it was (that is the contract), while a
// segment that left its quiesce window since still gets its first
// open-for-writing check, and the free space is fresh.
func TestUnchangedDirIsReusedButWritersAreRechecked(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a-1.log"), "one\n", time.Hour)
	held := filepath.Join(dir, "a-2.log")
	write(t, held, "two\n", 0) // within quiesce: not checked yet
	write(t, filepath.Join(dir, "a-3.log"), "three\n", 0)
	st := stream(dir, "a-*.log", "name")
	st.Compaction.Quiesce = time.Minute
	s := New([]config.Stream{st}, Options{})
	defer s.Close()
	testutil.HoldOpenForWrite(t, held)
	now := time.Now()
	first := s.Scan(now, nil, nil)[0]
	if first.Reused || first.Segments[1].Writing {
		t.Fatalf("first scan: reused %v, writing %v", first.Reused, first.Segments[1].Writing)
	}
	// Behind the scanner's back: a new segment appears, one grows.
	write(t, filepath.Join(dir, "a-4.log"), "four\n", 0)
	must(t, os.WriteFile(filepath.Join(dir, "a-1.log"), []byte("one\nmore\n"), 0o644))
	clean := map[string]bool{filepath.Clean(dir): true}
	later := now.Add(2 * time.Minute)
	r := s.Scan(later, nil, clean)[0]
	if !r.Reused || !r.At.Equal(later) || len(r.Segments) != 3 || r.Segments[0].Size != 4 {
		t.Fatalf("reused %v at %v, %d entries, first size %d", r.Reused, r.At, len(r.Segments), r.Segments[0].Size)
	}
	if !s.CheckWriters(r, func(model.SegmentID) bool { return true }) || !r.Segments[1].Writing {
		t.Fatal("a segment past quiesce held open by a writer was not found on reuse")
	}
	if r.FS.Total == 0 {
		t.Fatal("free space not refreshed")
	}
	// Not vouched for: read again, and the changes are seen.
	r = s.Scan(later, nil, nil)[0]
	if r.Reused || len(r.Segments) != 4 || r.Segments[0].Size != 9 {
		t.Fatalf("full scan: reused %v, %d entries, first size %d", r.Reused, len(r.Segments), r.Segments[0].Size)
	}
	// A stream never scanned successfully cannot be reused.
	gone := stream(filepath.Join(dir, "missing"), "*.log", "name")
	s2 := New([]config.Stream{gone}, Options{})
	defer s2.Close()
	if r := s2.Scan(later, nil, map[string]bool{filepath.Clean(gone.Dir): true})[0]; r.Reused || r.Err == nil {
		t.Fatalf("missing dir: reused %v, err %v", r.Reused, r.Err)
	}
}

// A directory that cannot be watched for another reason than not existing yet
// (here a symlink loop: ELOOP; in production the inotify watch limit) is said
// once, since it will be re-read every tick; a missing one is not.
func TestUnwatchableDirIsLoggedOnce(t *testing.T) {
	dir := t.TempDir()
	loop := filepath.Join(dir, "loop")
	must(t, os.Symlink(loop, loop))
	core, logs := observer.New(zap.WarnLevel)
	w, err := NewWatcher([]string{loop, filepath.Join(dir, "missing")}, 10*time.Millisecond, zap.New(core))
	must(t, err)
	defer w.Close()
	w.Ensure([]string{loop, filepath.Join(dir, "missing")})
	got := logs.FilterMessage("cannot watch directory: re-reading it every scan_interval").All()
	if len(got) != 1 || got[0].ContextMap()["dir"] != loop {
		t.Fatalf("warnings: %v", logs.All())
	}
	if q := w.Tick(); q == nil || q[loop] {
		t.Fatalf("tick = %v: an unwatched dir counted as quiet", q)
	}
}

// Tick tells which watched dirs had no event since the last Take or Tick, and
// resets: a dir with a pending event is not quiet, and is quiet again after.
func TestTickSeparatesQuietDirs(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	w, err := NewWatcher([]string{a, b}, 10*time.Millisecond, nil)
	must(t, err)
	defer w.Close()
	// The new watches ask for a rescan: take that trigger now, or the wait for
	// the write's below could return on it before the write's event arrived.
	waitTrigger(t, w)
	if q := w.Tick(); q == nil || q[a] || q[b] {
		t.Fatalf("first tick = %v: new watches must be re-read once", q)
	}
	if q := w.Tick(); !q[a] || !q[b] {
		t.Fatalf("second tick = %v", q)
	}
	write(t, filepath.Join(a, "x.log"), "x", 0)
	waitTrigger(t, w)
	if q := w.Tick(); q[a] || !q[b] {
		t.Fatalf("tick with an event in a = %v", q)
	}
	if q := w.Tick(); !q[a] || !q[b] {
		t.Fatalf("tick after = %v", q)
	}
}

// A reload's new scanner inherits the open-for-writing answers (re-taking
// them all costs seconds at scale); the old one keeps none.
func TestInheritKeepsLeaseAnswers(t *testing.T) {
	dir := t.TempDir()
	for i := 1; i <= 3; i++ {
		write(t, filepath.Join(dir, fmt.Sprintf("a-%d.log", i)), "x\n", time.Hour)
	}
	old := New([]config.Stream{stream(dir, "a-*.log", "name")}, Options{})
	defer old.Close()
	old.CheckWriters(scanOne(t, old), func(model.SegmentID) bool { return true })
	if len(old.leases) != 2 { // the newest segment is not checked
		t.Fatalf("%d answers cached", len(old.leases))
	}
	s := New([]config.Stream{stream(dir, "a-*.log", "name")}, Options{})
	defer s.Close()
	s.Inherit(old)
	if len(s.leases) != 2 || len(old.leases) != 0 {
		t.Fatalf("after Inherit: new %d, old %d answers", len(s.leases), len(old.leases))
	}
}

// TestAHardLinkRenamedAtEachRotationIsLoggedOnce: rotatelogs -L keeps a hard
// link to its current file, and the linked file gets a new name at each
// rotation; the skip is said once per file, not at every rotation.
func TestAHardLinkRenamedAtEachRotationIsLoggedOnce(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "app.1.log"), "current\n", 0)
	must(t, os.Link(filepath.Join(dir, "app.1.log"), filepath.Join(dir, "current")))
	core, logs := observer.New(zap.WarnLevel)
	s := New([]config.Stream{stream(dir, "app.*.log", "name")}, Options{Logger: zap.New(core)})
	defer s.Close()
	for i := 1; i <= 5; i++ {
		scanOne(t, s)
		must(t, os.Rename(filepath.Join(dir, fmt.Sprintf("app.%d.log", i)), filepath.Join(dir, fmt.Sprintf("app.%d.log", i+1))))
	}
	scanOne(t, s)
	if n := len(logs.FilterMessage("skipping a file named like a segment").All()); n != 1 {
		t.Fatalf("said %d times, want once", n)
	}
}

func TestDedupeKeepsOneEntryPerFile(t *testing.T) {
	es := []model.Segment{
		{Name: "app.log.3", ID: model.SegmentID{Dev: 1, Ino: 10}},
		{Name: "app.log.4", ID: model.SegmentID{Dev: 1, Ino: 10}}, // the same file, renamed mid-scan
		{Name: "app.log.5", ID: model.SegmentID{Dev: 1, Ino: 11}},
		{Name: "other", ID: model.SegmentID{Dev: 2, Ino: 10}}, // same inode, other device
	}
	got := dedupe(es)
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
	}
	if strings.Join(names, " ") != "app.log.3 app.log.5 other" {
		t.Fatalf("dedupe: %v", names)
	}
}

// rotateNumbered does what logrotate's numbered scheme does at a rotation:
// app.log.N -> app.log.N+1 from the highest down, app.log -> app.log.1, a new app.log.
func rotateNumbered(t *testing.T, dir string, highest int) {
	t.Helper()
	for i := highest; i >= 1; i-- {
		if err := os.Rename(filepath.Join(dir, fmt.Sprintf("app.log.%d", i)), filepath.Join(dir, fmt.Sprintf("app.log.%d", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(dir, "app.log"), filepath.Join(dir, "app.log.1")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "app.log"), "new\n", 0)
}

func inodes(t *testing.T, dir string) map[uint64]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]string{}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[fi.Sys().(*syscall.Stat_t).Ino] = e.Name()
	}
	return out
}

// A rotation between the listing and the stats moves the oldest segment to a
// name that was not listed: the scan must not come back without it (a merge
// or a batch planned around a missing segment joins segments that are not
// adjacent). The same for a re-read that verifies the previous list; and
// for a directory whose ctime lies long enough in the past that it is not
// listed again when the ctime has not moved (settled: the scanner's clock is
// an hour ahead).
func TestARotationDuringTheScanMissesNoSegment(t *testing.T) {
	for _, c := range []struct{ reread, settled bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		t.Run(fmt.Sprintf("reread=%v,settled=%v", c.reread, c.settled), func(t *testing.T) {
			reread := c.reread
			dir := t.TempDir()
			write(t, filepath.Join(dir, "app.log"), "5\n", 10*time.Minute)
			for i := 1; i <= 3; i++ {
				write(t, filepath.Join(dir, fmt.Sprintf("app.log.%d", i)), fmt.Sprintf("%d\n", 4-i), time.Duration(10+i)*time.Hour)
			}
			s := New([]config.Stream{stream(dir, "app.log*", "mtime")}, Options{})
			defer s.Close()
			if c.settled {
				s.wallNow = hourAhead
			}
			if reread {
				if r := scanOne(t, s); len(r.Segments) != 4 {
					t.Fatalf("first scan: %v", names(r))
				}
			}
			rotations := 0
			s.listed = func(string) {
				if rotations == 0 {
					rotations++
					rotateNumbered(t, dir, 3)
				}
			}
			r := scanOne(t, s)
			want := inodes(t, dir)
			got := map[uint64]string{}
			for _, e := range r.Segments {
				got[e.ID.Ino] = e.Name
			}
			if len(got) != len(want) || len(r.Segments) != 5 || r.Verified {
				t.Fatalf("after a rotation during the scan: got %v (%d entries, verified %v), the directory holds %v",
					got, len(r.Segments), r.Verified, want)
			}
			for ino, name := range want {
				if got[ino] != name {
					t.Errorf("inode %d: scanned as %q, the directory has it as %q", ino, got[ino], name)
				}
			}
			if rotations != 1 {
				t.Fatalf("%d rotations", rotations)
			}
		})
	}
}

// A re-read of a directory that holds the same files under the same names
// keeps the previous list (no new one for 100,000 unchanged segments) with
// sizes and times refreshed: the safety net still sees what inotify did not
// (an append here is made without a watch). Anything else — a name replaced
// by another file, a file that stopped being a segment, a new name — builds
// the list anew.
func TestAReReadKeepsTheListOfAnUnchangedDirectory(t *testing.T) {
	dir := t.TempDir()
	for i := 1; i <= 3; i++ {
		write(t, filepath.Join(dir, fmt.Sprintf("app-%d.log", i)), "x\n", time.Duration(4-i)*time.Hour)
	}
	s := New([]config.Stream{stream(dir, "app-*.log", "mtime")}, Options{})
	defer s.Close()
	first := scanOne(t, s)
	if first.Verified || strings.Join(names(first), " ") != "app-1.log app-2.log app-3.log" {
		t.Fatalf("first scan: verified %v, %v", first.Verified, names(first))
	}
	// Grown, and made the newest: the kept list is refreshed and put in order again.
	f, err := os.OpenFile(filepath.Join(dir, "app-1.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("more\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := scanOne(t, s)
	if !r.Verified || &r.Segments[0] != &first.Segments[0] {
		t.Fatalf("an unchanged directory: verified %v, list kept %v", r.Verified, &r.Segments[0] == &first.Segments[0])
	}
	if got := strings.Join(names(r), " "); got != "app-2.log app-3.log app-1.log" {
		t.Fatalf("after app-1.log was written: order %s", got)
	}
	if e := r.Segments[2]; e.Size != 7 || time.Since(e.Mtime()) > time.Minute {
		t.Fatalf("app-1.log after an append: size %d, mtime %v", e.Size, e.Mtime())
	}
	// A change of mode is a change of access (a merge never mixes two) and
	// of ctime (an open-for-writing answer holds only while ctime does).
	before := r.Segments[0]
	if err := os.Chmod(filepath.Join(dir, "app-2.log"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := scanOne(t, s); !r.Verified || r.Segments[0].Access.Mode&0o777 != 0o600 || r.Segments[0].CtimeNs == before.CtimeNs {
		t.Fatalf("after a chmod: verified %v, mode %o, ctime %d (was %d)", r.Verified, r.Segments[0].Access.Mode, r.Segments[0].CtimeNs, before.CtimeNs)
	}

	check := func(what string, wantNames string, wantForeign int) Result {
		t.Helper()
		r := scanOne(t, s)
		if r.Verified || strings.Join(names(r), " ") != wantNames || len(r.Foreign) != wantForeign {
			t.Fatalf("%s: verified %v, segments %v, foreign %v", what, r.Verified, names(r), r.Foreign)
		}
		for _, e := range r.Segments {
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(dir, e.Name), &st); err != nil || st.Ino != e.ID.Ino {
				t.Fatalf("%s: %s scanned as inode %d, the directory has %d (%v)", what, e.Name, e.ID.Ino, st.Ino, err)
			}
		}
		return r
	}
	// The same name, another file.
	write(t, filepath.Join(dir, "new"), "y\n", 2*time.Hour)
	if err := os.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "app-2.log")); err != nil {
		t.Fatal(err)
	}
	check("app-2.log replaced", "app-2.log app-3.log app-1.log", 0)
	// A hard link made elsewhere: the file is no longer a segment here.
	if err := os.Link(filepath.Join(dir, "app-3.log"), filepath.Join(t.TempDir(), "link")); err != nil {
		t.Fatal(err)
	}
	check("app-3.log hard-linked", "app-2.log app-1.log", 1)
	// Once foreign files are there, re-reads build the list (they say why each is skipped).
	check("a foreign file present", "app-2.log app-1.log", 1)
	if err := os.Remove(filepath.Join(dir, "app-3.log")); err != nil {
		t.Fatal(err)
	}
	check("app-3.log removed", "app-2.log app-1.log", 0)
	if r := scanOne(t, s); !r.Verified {
		t.Fatalf("unchanged again: not verified")
	}
	write(t, filepath.Join(dir, "app-4.log"), "z\n", 0)
	check("app-4.log created", "app-2.log app-1.log app-4.log", 0)
	// A file that appears while a re-read runs (as one renamed during a
	// listing made in several getdents calls would) is in its result: the
	// directory is listed again after the stats.
	scanOne(t, s)
	s.listed = func(string) { write(t, filepath.Join(dir, "app-5.log"), "w\n", 0) }
	check("app-5.log created during the re-read", "app-2.log app-1.log app-4.log app-5.log", 0)
	// The same when the directory's ctime looks old: it moved.
	s.listed, s.wallNow = nil, hourAhead
	scanOne(t, s)
	s.listed = func(string) { write(t, filepath.Join(dir, "app-6.log"), "w\n", 0) }
	check("app-6.log created during a re-read of a settled dir", "app-2.log app-1.log app-4.log app-5.log app-6.log", 0)
}

// hourAhead is a scanner clock an hour ahead: every directory's ctime looks
// settled.
func hourAhead() time.Time { return time.Now().Add(time.Hour) }

// A directory whose ctime lies quietFor in the past and has not moved by the
// end of the stats is listed once per scan, by a full scan and by a re-read
// that keeps its list; one changed within quietFor is listed again after the
// stats, as is one whose ctime moved (an entry appeared) during the scan.
func TestASettledDirectoryIsListedOnce(t *testing.T) {
	dir := t.TempDir()
	for i := 1; i <= 3; i++ {
		write(t, filepath.Join(dir, fmt.Sprintf("app-%d.log", i)), "x\n", time.Duration(4-i)*time.Hour)
	}
	s := New([]config.Stream{stream(dir, "app-*.log", "name")}, Options{})
	defer s.Close()
	listings := 0
	s.listing = func(string) { listings++ }
	count := func(what string, want int, verified bool) {
		t.Helper()
		listings = 0
		r := scanOne(t, s)
		if listings != want || r.Verified != verified || len(r.Segments) < 3 {
			t.Fatalf("%s: %d listings (want %d), verified %v (want %v), %v", what, listings, want, r.Verified, verified, names(r))
		}
		s.Forget()
	}
	count("changed just now", 2, false)
	s.wallNow = hourAhead
	count("settled", 1, false)
	scanOne(t, s)
	listings = 0
	if r := scanOne(t, s); listings != 1 || !r.Verified {
		t.Fatalf("a re-read of a settled dir: %d listings, verified %v", listings, r.Verified)
	}
	s.Forget()
	s.listed = func(string) { write(t, filepath.Join(dir, "x"), "", 0) }
	count("an entry created during the scan", 2, false)
	// A clock a second ahead: the ctime (the entry just made) is within quietFor.
	s.listed, s.wallNow = nil, func() time.Time { return time.Now().Add(time.Second) }
	count("changed a second ago", 2, false)
}

// A large directory is verified in parallel chunks: a change past the first
// chunk is seen, and a file there that stopped being a segment rebuilds the
// list.
func TestAReReadOfALargeDirectoryChecksEverySegment(t *testing.T) {
	dir := t.TempDir()
	const n = 2100
	for i := range n {
		write(t, filepath.Join(dir, fmt.Sprintf("app-%05d.log", i)), "x\n", time.Hour)
	}
	s := New([]config.Stream{stream(dir, "app-*.log", "name")}, Options{StatWorkers: 2})
	defer s.Close()
	scanOne(t, s)
	last := filepath.Join(dir, fmt.Sprintf("app-%05d.log", n-2))
	if err := os.WriteFile(last, []byte("grown\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := scanOne(t, s); !r.Verified || r.Segments[n-2].Size != 6 {
		t.Fatalf("after app-%05d.log grew: verified %v, size %d", n-2, r.Verified, r.Segments[n-2].Size)
	}
	// Hard-linked elsewhere: the same listing, but no longer a segment.
	if err := os.Link(last, filepath.Join(t.TempDir(), "link")); err != nil {
		t.Fatal(err)
	}
	if r := scanOne(t, s); r.Verified || len(r.Segments) != n-1 || len(r.Foreign) != 1 {
		t.Fatalf("after a hard link: verified %v, %d segments, foreign %v", r.Verified, len(r.Segments), r.Foreign)
	}
}

// A directory renamed under every scan: the stream sits the pass out, with an
// error that says why, rather than a result that may be missing segments.
func TestADirectoryThatNeverSettlesIsNotActedOn(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "app.log"), "x\n", time.Hour)
	write(t, filepath.Join(dir, "app.log.1"), "y\n", 2*time.Hour)
	s := New([]config.Stream{stream(dir, "app.log*", "mtime")}, Options{})
	defer s.Close()
	s.wallNow = hourAhead // the ctime looks old: only its moving tells the renames
	highest := 1
	s.listed = func(string) {
		rotateNumbered(t, dir, highest)
		highest++
	}
	rs := s.Scan(time.Now(), nil, nil)
	if len(rs) != 1 || !errors.Is(rs[0].Err, ErrUnsettled) || len(rs[0].Segments) != 0 {
		t.Fatalf("got %+v, want ErrUnsettled and no entries", rs)
	}
	if highest-1 != maxTries {
		t.Fatalf("%d scans, want %d", highest-1, maxTries)
	}
	if !strings.Contains(rs[0].Err.Error(), dir) {
		t.Errorf("the error does not name the directory: %v", rs[0].Err)
	}
	// Once the writer is quiet, the next pass scans it.
	s.listed = nil
	if r := scanOne(t, s); len(r.Segments) != highest+1 {
		t.Fatalf("%d entries after the writer settled, want %d", len(r.Segments), highest+1)
	}
}

// Two streams in one directory each say their skipped files once: the
// warnings were kept per directory, and each stream's scan forgot the other's
// and said them again at every pass.
func TestTwoStreamsInOneDirectoryEachWarnOnce(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a", "b"} {
		write(t, filepath.Join(dir, p+"-1.log"), "x\n", time.Hour)
		must(t, os.Link(filepath.Join(dir, p+"-1.log"), filepath.Join(dir, p+"-link")))
	}
	a, b := stream(dir, "a-*.log", "name"), stream(dir, "b-*.log", "name")
	a.Name, b.Name = "a", "b"
	core, logs := observer.New(zap.WarnLevel)
	s := New([]config.Stream{a, b}, Options{Logger: zap.New(core)})
	defer s.Close()
	for i := 0; i < 5; i++ {
		for _, r := range s.Scan(time.Now(), nil, nil) {
			if r.Err != nil || len(r.Foreign) != 1 {
				t.Fatalf("stream %s: err %v, foreign %v", r.Stream.Name, r.Err, r.Foreign)
			}
		}
	}
	if n := len(logs.FilterMessage("skipping a file named like a segment").All()); n != 2 {
		t.Fatalf("said %d times in 5 scans, want 2 (once per stream)", n)
	}
	// Fixed (the link removed): forgotten, and said again if it comes back.
	must(t, os.Remove(filepath.Join(dir, "a-link")))
	s.Scan(time.Now(), nil, nil)
	must(t, os.Link(filepath.Join(dir, "a-1.log"), filepath.Join(dir, "a-link")))
	s.Scan(time.Now(), nil, nil)
	if n := len(logs.FilterMessage("skipping a file named like a segment").All()); n != 3 {
		t.Fatalf("said %d times, want 3 (a's link again after it was fixed)", n)
	}
}

// Directories are re-read in parallel, and the results still come back in
// config order with each stream's own segments. The proof of parallelism: the
// scan of each directory waits (between its listing and its stats) until the
// other has started; one after the other, the first would wait in vain.
func TestDirectoriesAreScannedInParallel(t *testing.T) {
	var streams []config.Stream
	for i := 0; i < 2; i++ {
		dir := t.TempDir()
		for j := 1; j <= 3+i; j++ {
			write(t, filepath.Join(dir, fmt.Sprintf("app-%d.log", j)), "x\n", time.Hour)
		}
		st := stream(dir, "app-*.log", "name")
		st.Name = fmt.Sprintf("s%d", i)
		streams = append(streams, st)
	}
	s := New(streams, Options{StatWorkers: 2})
	defer s.Close()
	var started sync.WaitGroup
	started.Add(2)
	together := make(chan struct{})
	go func() { started.Wait(); close(together) }()
	var waitedInVain atomic.Bool
	s.listed = func(string) {
		started.Done()
		select {
		case <-together:
		case <-time.After(20 * time.Second): // a deadline, so a serial scan fails instead of hanging
			waitedInVain.Store(true)
		}
	}
	rs := s.Scan(time.Now(), nil, nil)
	if waitedInVain.Load() {
		t.Fatal("the directories were scanned one after the other")
	}
	for i, r := range rs {
		if r.Err != nil || r.Stream.Name != streams[i].Name || len(r.Segments) != 3+i {
			t.Fatalf("result %d: stream %s, err %v, %d entries", i, r.Stream.Name, r.Err, len(r.Segments))
		}
	}
}

// Free space is asked once per filesystem per scan, whether the directories
// are re-read or vouched unchanged: three directories on one filesystem and
// one on a tmpfs make two fstatfs calls, not four.
func TestFreeSpaceIsAskedOncePerFilesystem(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "lcd-test-")
	if err != nil {
		t.Fatalf("a directory on a second filesystem (tmpfs /dev/shm): %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir(), shm}
	var streams []config.Stream
	unchanged := map[string]bool{}
	devs := map[uint64]bool{}
	for i, dir := range dirs {
		write(t, filepath.Join(dir, "app-1.log"), "x\n", time.Hour)
		st := stream(dir, "app-*.log", "name")
		st.Name = fmt.Sprintf("s%d", i)
		streams = append(streams, st)
		unchanged[dir] = true
		var fi syscall.Stat_t
		if err := syscall.Stat(dir, &fi); err != nil {
			t.Fatal(err)
		}
		devs[fi.Dev] = true
	}
	if len(devs) != 2 {
		// TMPDIR on /dev/shm's tmpfs: the count below would be 1 for 1.
		t.Logf("the temporary directories and /dev/shm share a filesystem: %d device(s)", len(devs))
	}
	s := New(streams, Options{})
	defer s.Close()
	var calls atomic.Int32
	s.statfs = func(d *fsx.Dir) (uint64, uint64, error) {
		calls.Add(1)
		return d.Statfs()
	}
	for _, scan := range []struct {
		what      string
		unchanged map[string]bool
	}{{"re-read", nil}, {"vouched unchanged", unchanged}} {
		calls.Store(0)
		rs := s.Scan(time.Now(), nil, scan.unchanged)
		if n := calls.Load(); int(n) != len(devs) {
			t.Errorf("%s: %d fstatfs calls for %d filesystems", scan.what, n, len(devs))
		}
		for _, r := range rs {
			if r.Err != nil || r.FS.Total == 0 || !devs[r.FS.Dev] {
				t.Fatalf("%s: %s: err %v, fs %+v", scan.what, r.Stream.Name, r.Err, r.FS)
			}
		}
	}
}

// NoTemps says a scan listed the whole directory and saw no temporary name:
// set by a full scan of a directory without one, not with one, and never by
// a re-read that kept its list, a reused result or a failed one.
func TestNoTempsIsSaidOnlyOfAWholeListingWithoutOne(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "app-1.log"), "x\n", time.Hour)
	s := New([]config.Stream{stream(dir, "app-*.log", "name")}, Options{})
	defer s.Close()
	if r := scanOne(t, s); !r.NoTemps || r.Verified {
		t.Fatalf("a full scan without a temporary name: NoTemps %v, verified %v", r.NoTemps, r.Verified)
	}
	if r := scanOne(t, s); r.NoTemps || !r.Verified {
		t.Fatalf("a re-read that kept its list: NoTemps %v, verified %v", r.NoTemps, r.Verified)
	}
	if rs := s.Scan(time.Now(), nil, map[string]bool{filepath.Clean(dir): true}); len(rs) != 1 || !rs[0].Reused || rs[0].NoTemps {
		t.Fatalf("a reused result: %+v", rs)
	}
	s.Forget()
	write(t, filepath.Join(dir, fsx.TempPrefix+"o-1"), "staged\n", 0)
	if r := scanOne(t, s); r.NoTemps || len(r.Segments) != 1 {
		t.Fatalf("a full scan with a temporary name: NoTemps %v, %v", r.NoTemps, names(r))
	}
	gone := New([]config.Stream{stream(filepath.Join(dir, "missing"), "app-*.log", "name")}, Options{})
	defer gone.Close()
	if rs := gone.Scan(time.Now(), nil, nil); len(rs) != 1 || rs[0].Err == nil || rs[0].NoTemps {
		t.Fatalf("a failed scan: %+v", rs)
	}
}
