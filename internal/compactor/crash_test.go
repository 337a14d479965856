package compactor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// The crash child: with LCD_CRASH_MODE set, the test binary runs one merge (or
// one recovery) over LCD_CRASH_LOGS / LCD_CRASH_STATE and exits 97 — at once, no
// deferred clean-up, like kill -9 — when it reaches the named step LCD_CRASH_AT.
func TestMain(m *testing.M) {
	if mode := os.Getenv("LCD_CRASH_MODE"); mode != "" {
		os.Exit(crashChild(mode))
	}
	goleak.VerifyTestMain(m)
}

const crashExit = 97

func crashChild(mode string) int {
	t := &testing.T{}
	r := newRigNoCleanup(t, os.Getenv("LCD_CRASH_LOGS"), os.Getenv("LCD_CRASH_STATE"))
	at := os.Getenv("LCD_CRASH_AT")
	r.env.Fault = func(p string) {
		if p == at {
			os.Exit(crashExit)
		}
	}
	switch mode {
	case "merge":
		segs := r.segments()
		_, err := r.env.Merge(context.Background(), r.job(segs...))
		if err != nil {
			fmt.Fprintln(os.Stderr, "merge:", err)
			return 1
		}
	case "recover":
		if _, err := r.env.Recover(func(string) (*fsx.Dir, error) { return r.dir, nil }, nil); err != nil {
			fmt.Fprintln(os.Stderr, "recover:", err)
			return 1
		}
	}
	return 0
}

func newRigNoCleanup(t *testing.T, logs, state string) *rig {
	r := &rig{t: t, logs: logs, state: state}
	var err error
	if r.dir, err = fsx.OpenDir(logs); err != nil {
		panic(err)
	}
	if r.sdir, err = fsx.OpenDir(state); err != nil {
		panic(err)
	}
	j, err := fsx.OpenJournal(r.sdir, "journal")
	if err != nil {
		panic(err)
	}
	r.leases = fsx.NewLeases()
	r.env = &Env{Journal: j, Leases: r.leases, Pacer: NewPacer(0, 1<<20, nil), Log: nopLog(), ChunkSize: 4096}
	return r
}

// inputs of every crash scenario: distinct lines, one input without a final newline.
var crashInputs = []struct{ name, content string }{
	{"app-1.log", "a1\na2\n"},
	{"app-2.log", "b1\nb2"},
	{"app-3.log", strings.Repeat("c\n", 3000)},
}

func mergePoints(n int) []string {
	pts := []string{"merge:start"}
	for i := 0; i < n; i++ {
		pts = append(pts, fmt.Sprintf("merge:before-open:%d", i))
	}
	pts = append(pts, "merge:begun", "merge:created")
	for i := 0; i < n; i++ {
		pts = append(pts, fmt.Sprintf("merge:copied:%d", i))
	}
	pts = append(pts, "merge:synced", "merge:rechecked", "merge:renamed", "merge:dirsynced", "merge:committed")
	for i := 0; i < n; i++ {
		pts = append(pts, fmt.Sprintf("merge:unlinked:%d", i))
	}
	return append(pts, "merge:inputs-synced", "merge:done")
}

var recoverPoints = []string{"recover:unlinked-temp", "recover:unlinked-output", "recover:synced", "recover:done",
	"merge:unlinked:0", "merge:unlinked:1", "merge:unlinked:2", "merge:inputs-synced", "merge:done"}

func runChild(t *testing.T, mode, logs, state, at string) (crashed bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0", "LCD_CRASH_MODE="+mode, "LCD_CRASH_LOGS="+logs, "LCD_CRASH_STATE="+state, "LCD_CRASH_AT="+at)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == crashExit {
		return true
	}
	if err != nil {
		t.Fatalf("%s child (crash at %s): %v\n%s", mode, at, err, out)
	}
	return false
}

// assertOnce checks the promise after recovery: no temp file, no pending op, and
// the stream read in order is the original concatenation — exactly, or with the
// recorded newline when the inputs were merged.
func assertOnce(t *testing.T, logs, state, scenario string) {
	t.Helper()
	r := newRig(t, logs, state)
	if tmp := r.temps(); len(tmp) != 0 {
		t.Fatalf("%s: temp files left %v", scenario, tmp)
	}
	if p := r.env.Journal.Pending(); len(p) != 0 {
		t.Fatalf("%s: ops pending after recovery: %+v", scenario, p)
	}
	var got strings.Builder
	segs := r.segments()
	for _, n := range segs {
		got.WriteString(r.read(n))
	}
	var orig, merged strings.Builder
	for _, in := range crashInputs {
		orig.WriteString(in.content)
		merged.WriteString(in.content)
		if !strings.HasSuffix(in.content, "\n") {
			merged.WriteString("\n")
		}
	}
	switch {
	case len(segs) == len(crashInputs) && got.String() == orig.String():
	case len(segs) == 1 && strings.Contains(segs[0], "~c") && got.String() == merged.String():
	default:
		t.Fatalf("%s: segments %v hold %d bytes: neither the intact inputs nor the complete output", scenario, segs, len(got.String()))
	}
	r.close()
}

func setupCrash(t *testing.T) (logs, state string) {
	base := t.TempDir()
	logs, state = filepath.Join(base, "logs"), filepath.Join(base, "state")
	for _, p := range []string{logs, state} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, in := range crashInputs {
		if err := os.WriteFile(filepath.Join(logs, in.name), []byte(in.content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return logs, state
}

func recoverInParent(t *testing.T, logs, state string) {
	t.Helper()
	r := newRig(t, logs, state)
	if _, err := r.env.Recover(func(string) (*fsx.Dir, error) { return r.dir, nil }, nil); err != nil {
		t.Fatalf("recover: %v", err)
	}
	r.close()
}

// TestCrashAtEveryStep kills a real merge process at each named step, then
// recovers; then kills the recovery itself at each of its steps and recovers
// again. After each: every byte present exactly once, no temp file.
func TestCrashAtEveryStep(t *testing.T) {
	points := mergePoints(len(crashInputs))
	covered, combos := 0, 0
	for _, p := range points {
		logs, state := setupCrash(t)
		if !runChild(t, "merge", logs, state, p) {
			t.Fatalf("merge never reached crash point %s", p)
		}
		covered++
		recoverInParent(t, logs, state)
		assertOnce(t, logs, state, "crash at "+p)

		for _, rp := range recoverPoints {
			logs, state := setupCrash(t)
			runChild(t, "merge", logs, state, p)
			if !runChild(t, "recover", logs, state, rp) {
				continue // recovery of this state does not pass that step
			}
			combos++
			recoverInParent(t, logs, state)
			assertOnce(t, logs, state, "crash at "+p+", then in recovery at "+rp)
		}
	}
	t.Logf("crash points covered: %d merge steps, %d crashes inside recovery", covered, combos)
	if combos == 0 {
		t.Fatal("no crash inside recovery was exercised")
	}
}
