package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

// TestMergeNeverMixesOwnersOrModes: in a sticky shared dir, another (real,
// unprivileged) user's 0644 segment comes first in a run of root's 0600
// segments, and a root 0644 segment sits among them. After once: no file that
// user owns, and no file readable by others, holds a line of root's 0600
// segments; every line is still there exactly once.
func TestMergeNeverMixesOwnersOrModes(t *testing.T) {
	testutil.RequireRoot(t, "create a user and chown to it")
	u := testutil.NewUser(t)
	e := newEnv(t)
	must(t, syscall.Chmod(e.logs, 0o1777))
	e.compactConfig("")
	type seg struct {
		owner int
		mode  os.FileMode
		tag   string
	}
	plan := []seg{{u.UID, 0o644, "user"}, {0, 0o600, "secret"}, {0, 0o600, "secret"}, {0, 0o644, "public"},
		{0, 0o600, "secret"}, {0, 0o600, "secret"}, {0, 0o600, "newest"}}
	want := map[string]int{}
	for i, s := range plan {
		p := filepath.Join(e.logs, fmt.Sprintf("app-%06d.log", i+1))
		var b strings.Builder
		for k := 0; k < 100; k++ {
			line := fmt.Sprintf("%s %d %d", s.tag, i, k)
			fmt.Fprintln(&b, line)
			want[line]++
		}
		must(t, os.WriteFile(p, []byte(b.String()), s.mode))
		must(t, os.Chmod(p, s.mode))
		must(t, os.Chown(p, s.owner, s.owner))
		old := time.Now().Add(-time.Hour + time.Duration(i)*time.Second)
		must(t, os.Chtimes(p, old, old))
	}
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once: %d\n%s", code, stderr)
	}
	merged := false
	got := map[string]int{}
	ents, err := os.ReadDir(e.logs)
	must(t, err)
	for _, ent := range ents {
		p := filepath.Join(e.logs, ent.Name())
		var st syscall.Stat_t
		must(t, syscall.Stat(p, &st))
		merged = merged || strings.Contains(ent.Name(), "~c")
		f, err := os.Open(p)
		must(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			got[sc.Text()]++
			if strings.HasPrefix(sc.Text(), "secret") && (st.Uid != 0 || st.Mode&0o077 != 0) {
				t.Errorf("%s (uid %d, mode %#o) holds root's 0600 line %q", ent.Name(), st.Uid, st.Mode&0o777, sc.Text())
			}
			if strings.HasPrefix(sc.Text(), "user") && st.Uid != uint32(u.UID) {
				t.Errorf("%s (uid %d) holds the user's line %q: taken away from them", ent.Name(), st.Uid, sc.Text())
			}
		}
		f.Close()
	}
	if !merged {
		t.Fatal("nothing was merged: the test tests nothing")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("lines lost or duplicated")
	}
}

// TestUnsafeColdSubdirStopsOnlyItsStream: another (real) user creates a
// stream's cold subdir before the daemon does (0777, theirs), or plants a
// symlink there: that stream's segments stay hot and the log says why, while
// the other stream sharing the cold dir is archived as usual.
func TestUnsafeColdSubdirStopsOnlyItsStream(t *testing.T) {
	testutil.RequireRoot(t, "create a user and chown to it")
	u := testutil.NewUser(t)
	for _, how := range []string{"theirs", "symlink"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			cold := filepath.Join(e.dir, "cold")
			must(t, os.Mkdir(cold, 0o755))
			other := filepath.Join(e.dir, "b")
			must(t, os.Mkdir(other, 0o755))
			must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
load: {enabled: false}
compaction: {threshold: 1000000}
archive: {cold_dir: %s, max_age: 1m, compress: none}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
  - {name: b, dir: %s, pattern: "b-*.log"}
`, e.dir, cold, e.logs, other)), 0o644))
			for i := 1; i <= 3; i++ {
				e.segment(fmt.Sprintf("app-%06d.log", i), 100, time.Hour)
				p := filepath.Join(other, fmt.Sprintf("b-%06d.log", i))
				must(t, os.WriteFile(p, []byte("b\n"), 0o644))
				old := time.Now().Add(-time.Hour)
				must(t, os.Chtimes(p, old, old))
			}
			switch how {
			case "theirs":
				must(t, os.Mkdir(filepath.Join(cold, "app"), 0o777))
				must(t, syscall.Chmod(filepath.Join(cold, "app"), 0o777))
				must(t, os.Chown(filepath.Join(cold, "app"), u.UID, u.GID))
			case "symlink":
				must(t, os.Symlink(t.TempDir(), filepath.Join(cold, "app")))
			}
			_, stderr, _ := e.cli("once")
			if n, _ := os.ReadDir(e.logs); len(n) != 3 {
				t.Fatalf("%d of app's 3 segments left hot: archived into a subdir another user controls", len(n))
			}
			if ents, _ := os.ReadDir(filepath.Join(cold, "b")); len(ents) != 2 {
				t.Fatalf("stream b: %d archived, want 2 (all but the newest): one stream's subdir stopped the others\n%s", len(ents), stderr)
			}
			if !strings.Contains(stderr, "cold subdir unusable") {
				t.Fatalf("not said why:\n%s", stderr)
			}
		})
	}
}

// TestCheckRefusesAColdDirOthersControl: a cold dir writable by others
// without the sticky bit, or owned by another user, fails check (exit 2).
func TestCheckRefusesAColdDirOthersControl(t *testing.T) {
	testutil.RequireRoot(t, "create a user and chown to it")
	u := testutil.NewUser(t)
	for _, how := range []string{"world-writable", "theirs"} {
		e := newEnv(t)
		cold := filepath.Join(e.dir, "cold")
		must(t, os.Mkdir(cold, 0o755))
		if how == "world-writable" {
			must(t, syscall.Chmod(cold, 0o777))
		} else {
			must(t, os.Chown(cold, u.UID, u.GID))
		}
		_, stderr, code := e.cli("check")
		if code != 2 || !strings.Contains(stderr, "cold_dir") {
			t.Errorf("%s cold dir: check exit %d, %s", how, code, stderr)
		}
	}
}

// TestImmutableInputAfterCommitIsReportedOnce: a merge's input made immutable
// (chattr +i) while its commit waits for keep_inactive: the next once reports
// it at error and exits 1; later ones exit 0 with a reminder, the op stays
// pending (its inputs out of every run), and the other streams' work goes
// on; once the flag is removed it finishes. A file made immutable before any
// job is foreign from the start.
func TestImmutableInputAfterCommitIsReportedOnce(t *testing.T) {
	testutil.RequireRoot(t, "chattr")
	chattr := testutil.RequireTool(t, "chattr")
	e := newEnv(t)
	e.compactConfig(", keep_inactive: 1h")
	for i := 1; i <= 4; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 4000, time.Hour)
	}
	if _, stderr, code := e.cli("once"); code != 0 || !strings.Contains(stderr, "inputs inactive") {
		t.Fatalf("first once: %d\n%s", code, stderr)
	}
	in := filepath.Join(e.logs, "app-000002.log")
	run := func(args ...string) {
		if out, err := exec.Command(chattr, append(args, in)...).CombinedOutput(); err != nil {
			t.Fatalf("chattr: %v %s", err, out)
		}
	}
	run("+i")
	t.Cleanup(func() { _ = exec.Command(chattr, "-i", in).Run() })
	e.compactConfig(", keep_inactive: 0s")
	_, stderr, code := e.cli("once")
	if code != 1 || !strings.Contains(stderr, "app-000002.log") {
		t.Fatalf("once with an immutable committed input: exit %d, want 1 and the input named:\n%s", code, stderr)
	}
	for i := 0; i < 2; i++ {
		_, stderr, code = e.cli("once")
		if code != 0 || !strings.Contains(stderr, "still blocked") {
			t.Fatalf("a later once: exit %d, want 0 and a reminder:\n%s", code, stderr)
		}
	}
	if _, err := os.Stat(in); err != nil {
		t.Fatal("the immutable input is gone")
	}
	run("-i")
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once after chattr -i: %d\n%s", code, stderr)
	}
	if names, _ := e.stream(); len(names) != 2 {
		t.Fatalf("after the flag is gone the op finishes: %v", names)
	}
	// Immutable before any job: foreign, never an input.
	e.segment("app-000010.log", 4000, time.Hour)
	e.segment("app-000011.log", 4000, time.Hour)
	e.segment("app-000012.log", 4000, time.Minute)
	sealed := filepath.Join(e.logs, "app-000010.log")
	if out, err := exec.Command(chattr, "+a", sealed).CombinedOutput(); err != nil {
		t.Fatalf("chattr: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(chattr, "-a", sealed).Run() })
	_, stderr, _ = e.cli("once")
	_, err := os.Stat(sealed)
	if !strings.Contains(stderr, "append-only") || err != nil || strings.Contains(stderr, `"app-000010.log","app-000011.log"`) {
		t.Fatalf("an append-only file was not left alone as foreign (%v):\n%s", err, stderr)
	}
}

// TestLongestNameFirstInARunDoesNotLoop: a 255-byte segment name first in a
// run: no output name may be longer, so no merge is planned for that run —
// it used to fail the rename at every pass and grow the journal each time.
func TestLongestNameFirstInARunDoesNotLoop(t *testing.T) {
	e := newEnv(t)
	e.compactConfig("")
	long := "app-" + strings.Repeat("x", 240) + "-000001.log"
	e.segment(long, 4000, time.Hour)
	e.segment("app-y-000002.log", 4000, time.Hour)
	e.segment("app-y-000003.log", 4000, time.Minute)
	journal := filepath.Join(e.dir, "state", "journal")
	var sizes []int64
	for i := 0; i < 3; i++ {
		if _, stderr, code := e.cli("once"); code != 0 {
			t.Fatalf("once %d: exit %d\n%s", i, code, stderr)
		}
		fi, err := os.Stat(journal)
		must(t, err)
		sizes = append(sizes, fi.Size())
	}
	if sizes[0] != sizes[1] || sizes[1] != sizes[2] {
		t.Fatalf("the journal grows at every pass: %v bytes", sizes)
	}
	if _, err := os.Stat(filepath.Join(e.logs, long)); err != nil {
		t.Fatal(err)
	}
}

// treeSum is a checksum of every name, mode and byte under dir.
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d\n", p, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.Write(data)
		}
		return nil
	}))
	return b.String()
}

// TestManagedDirReachedThroughAnotherUsersDir: a managed dir below a directory
// another (real) user owns is refused by check and by once (they could swap a
// component for a symlink to anywhere). And when a parent changes hands while
// run is running and the user then swaps the managed dir for a symlink to a
// tree of segment-like files elsewhere, nothing there is merged or archived.
func TestManagedDirReachedThroughAnotherUsersDir(t *testing.T) {
	testutil.RequireRoot(t, "create a user and chown to it")
	u := testutil.NewUser(t)
	e := newEnv(t)
	outsideRoot := filepath.Join(e.dir, "outside")
	outside := filepath.Join(outsideRoot, "logs")
	must(t, os.MkdirAll(outside, 0o755))
	for i := 1; i <= 5; i++ {
		p := filepath.Join(outside, fmt.Sprintf("app-%06d.log", i))
		must(t, os.WriteFile(p, []byte(strings.Repeat("outside\n", 500)), 0o644))
		old := time.Now().Add(-time.Hour)
		must(t, os.Chtimes(p, old, old))
	}
	before := treeSum(t, outsideRoot)
	parent := filepath.Join(e.dir, "app")
	must(t, os.Mkdir(parent, 0o755))
	mid := filepath.Join(parent, "mid")
	logs := filepath.Join(mid, "logs")
	must(t, os.MkdirAll(logs, 0o755))
	e.logs = logs
	e.compactConfig("")

	// Before start: the user owns app/ and swaps app/mid for a symlink.
	must(t, os.Chown(parent, u.UID, u.GID))
	must(t, os.Rename(mid, mid+".old"))
	must(t, os.Symlink(outsideRoot, mid))
	must(t, os.Lchown(mid, u.UID, u.GID))
	for _, cmd := range []string{"check", "once"} {
		if _, stderr, code := e.cli(cmd); code != 2 || !strings.Contains(stderr, "another user can change") {
			t.Errorf("%s with a user-owned parent: exit %d\n%s", cmd, code, stderr)
		}
	}
	if treeSum(t, outsideRoot) != before {
		t.Fatal("files outside the managed dir changed")
	}

	// While running: the chain is root's at start; then app/ changes hands and
	// the user swaps mid/logs' parent for a symlink.
	must(t, os.Remove(mid))
	must(t, os.Rename(mid+".old", mid))
	must(t, os.Chown(parent, 0, 0))
	n := newNotifySocket(t)
	cmd, daemonLog := e.startDaemon(n)
	must(t, os.Chown(parent, u.UID, u.GID))
	must(t, os.Rename(mid, mid+".old"))
	must(t, os.Symlink(outsideRoot, mid))
	for i := 0; i < 20; i++ {
		n.waitFor(t, "STATUS=")
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	waitExit(t, cmd, 30*time.Second)
	if treeSum(t, outsideRoot) != before {
		t.Fatalf("files outside the managed dir changed:\n%s", daemonLog.String())
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "cold", "app")); len(ents) > 0 {
		t.Fatalf("archived from outside: %v", ents)
	}
}

// TestSparseTerabyteIsArchivedWithItsHoles: a 1 TiB segment that is nearly all
// hole (4 KiB of lines at each end), past max_age, archival with zstd to a
// cold dir on another filesystem: once archives it as it is — same name, its
// holes kept (a few KiB on disk, not 1 TiB, and not terabytes of zeros read
// and compressed) — byte for byte, and exits.
func TestSparseTerabyteIsArchivedWithItsHoles(t *testing.T) {
	testutil.RequireRoot(t, "mount a tmpfs as the cold tier")
	e := newEnv(t)
	cold := filepath.Join(e.dir, "cold")
	must(t, os.Mkdir(cold, 0o755))
	must(t, syscall.Mount("tmpfs", cold, "tmpfs", 0, "size=64m"))
	t.Cleanup(func() { _ = syscall.Unmount(cold, syscall.MNT_DETACH) })
	must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
load: {enabled: false}
compaction: {threshold: 1000000}
archive: {cold_dir: %s, max_age: 1m, compress: zstd}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, cold, e.logs)), 0o644))
	const tib = int64(1) << 40
	p := filepath.Join(e.logs, "app-000001.log")
	f, err := os.Create(p)
	must(t, err)
	head, tailLines := strings.Repeat("first lines\n", 341), strings.Repeat("last lines\n", 372)
	_, err = f.WriteAt([]byte(head), 0)
	must(t, err)
	_, err = f.WriteAt([]byte(tailLines), tib-int64(len(tailLines)))
	must(t, err)
	must(t, f.Close())
	old := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(p, old, old))
	e.segment("app-000002.log", 100, time.Second)

	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once: %d\n%s", code, stderr)
	}
	arch := filepath.Join(cold, "app", "app-000001.log")
	var st syscall.Stat_t
	must(t, syscall.Stat(arch, &st))
	if st.Size != tib || st.Blocks*512 > 1<<20 {
		t.Fatalf("archive: %d bytes, %d on disk; want 1 TiB with its holes", st.Size, st.Blocks*512)
	}
	a, err := os.Open(arch)
	must(t, err)
	defer a.Close()
	got := make([]byte, len(head))
	_, err = a.ReadAt(got, 0)
	must(t, err)
	gotTail := make([]byte, len(tailLines))
	_, err = a.ReadAt(gotTail, tib-int64(len(tailLines)))
	must(t, err)
	if string(got) != head || string(gotTail) != tailLines {
		t.Fatal("the archive's data differs")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("the segment is still hot")
	}
}
