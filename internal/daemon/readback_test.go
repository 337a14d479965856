package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/testutil"
	"golang.org/x/sys/unix"
)

// birth is path's birth time in ns, 0 where its filesystem keeps none.
func birth(t *testing.T, path string) int64 {
	t.Helper()
	var x unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_BTIME, &x); err != nil {
		t.Fatal(err)
	}
	if x.Mask&unix.STATX_BTIME == 0 {
		return 0
	}
	return x.Btime.Sec*1e9 + int64(x.Btime.Nsec)
}

// bornAfter writes data to path, created anew until its birth time is later
// than older's: one tick of the kernel's coarse clock at most (a writer rotates
// tens of milliseconds apart at the least).
func bornAfter(t *testing.T, path string, data []byte, older string) {
	t.Helper()
	if birth(t, older) == 0 {
		t.Fatalf("%s: no birth time: the filesystem under the test's temp dir must keep one", older)
	}
	for i := 0; ; i++ {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if birth(t, path) > birth(t, older) {
			return
		}
		if i == 100000 {
			t.Fatal("the birth time never moved on")
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

func zstdOf(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := codec.NewWriter(codec.Zstd, &b, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCatOfTiedMtimesGoesByBirth: a renumbering writer's last batch to one file
// and its first to the next fell in one clock tick, so the two share an mtime
// and their names sort the wrong way round: app.log before app.log.1 in hot;
// in cold, where the second archive of one time-name is "<name>.1.zst", that
// before "<name>.zst". `cat` reads the older-born hot segment first, as the
// daemon orders the stream (scanner.Sort), and the archive made first, by its
// name (archiver.ColdCompare).
func TestCatOfTiedMtimesGoesByBirth(t *testing.T) {
	dir := t.TempDir()
	logs, cold := filepath.Join(dir, "logs"), filepath.Join(dir, "cold", "app")
	for _, d := range []string{logs, cold} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const stamp = "app.log.20231114T221320.004000000Z"
	paths := []string{filepath.Join(cold, stamp+".zst"), filepath.Join(cold, stamp+".1.zst"),
		filepath.Join(logs, "app.log.1"), filepath.Join(logs, "app.log")}
	// cold: the names say it (the taken number), whatever the births
	if err := os.WriteFile(paths[1], zstdOf(t, "two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(paths[0], zstdOf(t, "one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(paths[2], []byte("three\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bornAfter(t, paths[3], []byte("four\n"), paths[2])
	tick := time.Unix(1_700_000_000, 4_000_000)
	for _, p := range paths {
		if err := os.Chtimes(p, tick, tick); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `state_dir: %s/state
load: {enabled: false}
archive: {cold_dir: %s/cold}
streams:
  - {name: app, dir: %s, pattern: "app.log*", order: mtime}
`, dir, dir, logs))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Cat(context.Background(), cfg, "app", Window{}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntwo\nthree\nfour\n" {
		t.Fatalf("cat gave %q, want the archives by their taken number, then hot by birth", out.String())
	}
}

// TestCheckWarnsOfAnMtimeStreamWithoutBirthTimes: an order: mtime stream on a
// filesystem that keeps no birth time (a real ext4 with 128-byte inodes on a
// loop device) gets a warning from check — its ties of mtimes go by name — and
// the same stream on the test's temp dir (birth times kept) none.
func TestCheckWarnsOfAnMtimeStreamWithoutBirthTimes(t *testing.T) {
	testutil.RequireRoot(t, "mount a loop device")
	mkfs, mount := testutil.RequireTool(t, "mkfs.ext4"), testutil.RequireTool(t, "mount")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "small-inodes.img"), filepath.Join(dir, "mnt")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(mkfs, "-q", "-F", "-I", "128", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, b)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(mount, "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop: %v\n%s", err, b)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
		}
	})
	local := filepath.Join(dir, "logs")
	for _, d := range []string{local, filepath.Join(mnt, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"app.log.2", "app.log.1", "app.log"} {
			if err := os.WriteFile(filepath.Join(d, n), []byte("x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if b := birth(t, filepath.Join(mnt, "logs", "app.log")); b != 0 {
		t.Fatalf("ext4 with 128-byte inodes reports a birth time (%d): the test needs a filesystem without", b)
	}
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `state_dir: %s/state
load: {enabled: false}
archive: {cold_dir: %s/cold}
streams:
  - {name: kept, dir: %s, pattern: "app.log*", order: mtime}
  - {name: none, dir: %s/logs, pattern: "app.log*", order: mtime}
`, dir, dir, local, mnt))
	if err != nil {
		t.Fatal(err)
	}
	ws := OrderWarnings(cfg)
	if len(ws) != 1 || !strings.Contains(ws[0], "streams[1] (none)") || !strings.Contains(ws[0], "keeps no birth times") {
		t.Fatalf("warnings %q, want one, of streams[1] (none)", ws)
	}
}
