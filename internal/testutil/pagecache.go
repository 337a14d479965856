package testutil

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Evict syncs the file at path and drops its pages from the page cache
// (POSIX_FADV_DONTNEED), so that what is read of it next comes from the disk.
// Where the pages stay (a tmpfs TMPDIR) the test cannot see read-ahead: it
// skips, except under CI=true, where it fails.
func Evict(t testing.TB, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	for i, in := range Resident(t, path) {
		if in {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s: page %d stays in the page cache after FADV_DONTNEED (TMPDIR on a tmpfs?), and CI=true: refusing to skip", path, i)
			}
			t.Skipf("%s: page %d stays in the page cache after FADV_DONTNEED (TMPDIR on a tmpfs?)", path, i)
		}
	}
}

// Resident reports, page by page, which pages of the file at path are in the
// page cache (mincore of a mapping, which faults nothing in).
func Resident(t testing.TB, path string) []bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() == 0 {
		return nil
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	page := os.Getpagesize()
	vec := make([]byte, (len(mem)+page-1)/page)
	// x/sys has no Mincore wrapper.
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	in := make([]bool, len(vec))
	for i, v := range vec {
		in[i] = v&1 != 0
	}
	return in
}
