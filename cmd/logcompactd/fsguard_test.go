package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

// TestABurstOnTheFilesystemIsNotARate: another program writes 40 MiB to the
// hot filesystem (a 100 MiB tmpfs) between two `once` runs a moment apart.
// The guard must not extrapolate that burst over time_to_archive and archive
// every closed segment of the filesystem: nothing is over its cap, and free
// space is far above keep_free. (Before: all of them went to cold.)
func TestABurstOnTheFilesystemIsNotARate(t *testing.T) {
	testutil.RequireRoot(t, "mount a tmpfs as the hot filesystem")
	e := newEnv(t)
	must(t, syscall.Mount("tmpfs", e.logs, "tmpfs", 0, "size=100m"))
	t.Cleanup(func() { _ = syscall.Unmount(e.logs, syscall.MNT_DETACH) })
	must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
load: {enabled: false}
compaction: {threshold: 1000000}
archive: {cold_dir: %s/cold, max_hot_bytes: 1GiB, time_to_archive: 6h}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, e.dir, e.logs)), 0o644))
	must(t, os.Mkdir(filepath.Join(e.dir, "cold"), 0o755))
	for i := 1; i <= 5; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 1000, time.Duration(10-i)*time.Hour)
	}
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once: %d %s", code, stderr)
	}
	burst := filepath.Join(e.logs, "other-program.bin")
	must(t, os.WriteFile(burst, make([]byte, 40<<20), 0o644))
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once: %d %s", code, stderr)
	}
	if cold, _ := os.ReadDir(filepath.Join(e.dir, "cold", "app")); len(cold) != 0 {
		t.Fatalf("%d archives after a one-off burst on the filesystem; its free space (60 MiB of 100) is far above keep_free", len(cold))
	}
}
