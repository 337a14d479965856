package fsx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, content string) FileRef {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	d, err := OpenDir(dir)
	must(t, err)
	defer d.Close()
	st, err := d.Stat(name)
	must(t, err)
	return RefOf(name, st)
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return string(b)
}

func listing(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// A rotation like logrotate's numbered scheme: every app.log.N becomes
// app.log.N+1, highest first, then app.log becomes app.log.1.
func rotate(t *testing.T, dir string, highest int) {
	t.Helper()
	for n := highest; n >= 1; n-- {
		from := filepath.Join(dir, "app.log."+itoa(n))
		if err := os.Rename(from, filepath.Join(dir, "app.log."+itoa(n+1))); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	must(t, os.Rename(filepath.Join(dir, "app.log"), filepath.Join(dir, "app.log.1")))
}

func itoa(n int) string { return string(rune('0' + n)) }

func TestRemoveFileFollowsTheIdentityNotTheName(t *testing.T) {
	d, p := openTestDir(t)
	old := writeFile(t, p, "app.log.1", "closed segment\n")
	writeFile(t, p, "app.log", "the writer's current file\n")
	rotate(t, p, 1) // app.log.1 -> app.log.2, app.log -> app.log.1

	name, err := d.RemoveFile(old, old.Matches)
	must(t, err)
	if name != "app.log.2" {
		t.Fatalf("removed it under %q, want app.log.2 (where it was renamed)", name)
	}
	if got := listing(t, p); got != "app.log.1" {
		t.Fatalf("left %q, want only app.log.1", got)
	}
	if read(t, filepath.Join(p, "app.log.1")) != "the writer's current file\n" {
		t.Fatal("the file now named like the input was touched")
	}
}

func TestRemoveFileNeverRemovesAnotherFileUnderTheName(t *testing.T) {
	d, p := openTestDir(t)
	old := writeFile(t, p, "app.log.1", "gone\n")
	must(t, os.Remove(filepath.Join(p, "app.log.1")))
	writeFile(t, p, "app.log.1", "another file\n")
	if _, err := d.RemoveFile(old, old.Matches); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if read(t, filepath.Join(p, "app.log.1")) != "another file\n" || listing(t, p) != "app.log.1" {
		t.Fatal("another file under the input's name was touched")
	}
}

func TestRemoveFileRefusesAChangedFile(t *testing.T) {
	d, p := openTestDir(t)
	ref := writeFile(t, p, "app.log.1", "a\n")
	f, err := os.OpenFile(filepath.Join(p, "app.log.1"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	f.WriteString("appended after the commit\n")
	f.Close()
	if _, err := d.RemoveFile(ref, ref.Matches); !errors.Is(err, ErrChanged) {
		t.Fatalf("err = %v, want ErrChanged", err)
	}
	if listing(t, p) != "app.log.1" || read(t, filepath.Join(p, "app.log.1")) != "a\nappended after the commit\n" {
		t.Fatalf("a changed file was not left as it was: %s", listing(t, p))
	}
}

// TestCaptureSeesARenameBetweenCheckAndAct has a writer rotate right after the
// input was found under its name and before it is taken: the capture takes the
// file that now has the name, sees it is not the input, puts it back, and
// finds the input again under its new name.
func TestCaptureSeesARenameBetweenCheckAndAct(t *testing.T) {
	d, p := openTestDir(t)
	in := writeFile(t, p, "app.log.1", "input\n")
	writeFile(t, p, "app.log", "current\n")
	races := 0
	d.beforeCapture = func(name string) {
		if races == 0 {
			rotate(t, p, 1)
		}
		races++
	}
	name, err := d.RemoveFile(in, in.Matches)
	must(t, err)
	if name != "app.log.2" || races != 2 {
		t.Fatalf("removed under %q after %d captures, want app.log.2 after 2", name, races)
	}
	if listing(t, p) != "app.log.1" || read(t, filepath.Join(p, "app.log.1")) != "current\n" {
		t.Fatalf("left %q", listing(t, p))
	}
}

// TestPutBackNeverLosesEitherFile: when the name a capture must give back was
// reused meanwhile, both files stay, the taken one next to it, and it says so.
func TestPutBackNeverLosesEitherFile(t *testing.T) {
	d, p := openTestDir(t)
	writeFile(t, p, "taken", "taken by mistake\n")
	writeFile(t, p, "app.log.1", "new occupant\n")
	err := d.putBack("taken", "app.log.1")
	if err == nil || !strings.Contains(err.Error(), "kept as") {
		t.Fatalf("err = %v", err)
	}
	if read(t, filepath.Join(p, "app.log.1")) != "new occupant\n" {
		t.Fatal("the new occupant was replaced")
	}
	ents, _ := os.ReadDir(p)
	found := false
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "app.log.1.logcompactd-kept-") && read(t, filepath.Join(p, e.Name())) == "taken by mistake\n" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the taken file was lost: %s", listing(t, p))
	}
}

func TestLocateFindsTempNamesToo(t *testing.T) {
	d, p := openTestDir(t)
	ref := writeFile(t, p, "seg", "x\n")
	tmp := RandomTempName()
	must(t, os.Rename(filepath.Join(p, "seg"), filepath.Join(p, tmp)))
	name, _, err := d.Locate(ref)
	if err != nil || name != tmp {
		t.Fatalf("Locate = %q, %v; want the temp name a crashed capture left", name, err)
	}
}

func TestCRCZerosMatchesReadingZeros(t *testing.T) {
	for _, start := range []uint32{0, 0xdeadbeef} {
		for _, n := range []int64{0, 1, 2, 3, 7, 100, 4096, 1 << 20, 1<<20 + 13} {
			want := UpdateChecksum(start, make([]byte, n))
			if got := crcZeros(start, n); got != want {
				t.Fatalf("crcZeros(%08x, %d) = %08x, want %08x", start, n, got, want)
			}
		}
	}
}
