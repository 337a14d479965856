package compactor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

// TestENOSPCFailsCleanlyThenSucceeds merges on a real 1 MiB tmpfs with too little
// room for the output: the job fails with ENOSPC, leaves no temp and the inputs
// intact; once space is freed the same merge succeeds.
func TestENOSPCFailsCleanlyThenSucceeds(t *testing.T) {
	testutil.RequireRoot(t, "mount a tmpfs")
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	r := newRig(t, filepath.Join(mnt, "logs"), filepath.Join(t.TempDir(), "state"))
	a, b := strings.Repeat("a\n", 75000), strings.Repeat("b\n", 75000) // 150 KB each
	r.write("app-1.log", a)
	r.write("app-2.log", b)
	r.write("app-3.log", "c\n")
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 600<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := r.env.Merge(context.Background(), r.job("app-1.log", "app-2.log", "app-3.log"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want ENOSPC", err)
	}
	r.assertIntact(map[string]string{"app-1.log": a, "app-2.log": b, "app-3.log": "c\n"})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := r.env.Merge(context.Background(), r.job("app-1.log", "app-2.log", "app-3.log")); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	if segs := r.segments(); len(segs) != 1 || r.read(segs[0]) != a+b+"c\n" {
		t.Fatalf("after freeing space: %v", segs)
	}
}
