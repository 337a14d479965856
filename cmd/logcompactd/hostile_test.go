package main

import (
	"bufio"
	"fmt"
	"os"
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
