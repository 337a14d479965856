package archiver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

const crashExit = 97

// crashChild runs one move (or one recovery) and exits at LCD_ACRASH_AT.
func crashChild(mode string) int {
	r, err := openRig(os.Getenv("LCD_ACRASH_HOT"), os.Getenv("LCD_ACRASH_COLD"), os.Getenv("LCD_ACRASH_STATE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	at := os.Getenv("LCD_ACRASH_AT")
	r.env.Fault = func(p string) {
		if p == at {
			os.Exit(crashExit)
		}
	}
	switch mode {
	case "move":
		st, err := r.hot.Stat("app-1.log")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, err = r.env.Move(context.Background(), MoveJob{Stream: "app", Hot: r.hot, HotPath: r.hotPath, Cold: r.cold,
			ColdPath: r.coldPath, Name: "app-1.log", Segment: st, Compress: os.Getenv("LCD_ACRASH_COMPRESS")})
		if err != nil {
			fmt.Fprintln(os.Stderr, "move:", err)
			return 1
		}
	case "recover":
		if _, err := r.env.Recover(func(string) (*fsx.Dir, error) { return r.hot, nil },
			func(string) (*fsx.Dir, error) { return r.cold, nil }); err != nil {
			fmt.Fprintln(os.Stderr, "recover:", err)
			return 1
		}
	}
	return 0
}

var copyPoints = []string{"archive:start", "archive:begun", "archive:created", "archive:synced", "archive:verified",
	"archive:renamed", "archive:cold-synced", "archive:committed", "archive:unlinked", "archive:hot-synced", "archive:done"}
var renamePoints = []string{"archive:start", "archive:begun", "archive:renamed", "archive:synced", "archive:done"}
var recoverPoints = []string{"archive-recover:unlinked-temp", "archive-recover:unlinked-output", "archive-recover:synced",
	"archive:unlinked", "archive:hot-synced", "archive:done"}

type crashCase struct{ hot, cold, state string }

func setup(t *testing.T, data string) crashCase {
	base := t.TempDir()
	c := crashCase{filepath.Join(base, "hot"), filepath.Join(base, "cold"), filepath.Join(base, "state")}
	for _, p := range []string{c.hot, c.cold, c.state} {
		os.MkdirAll(p, 0o750)
	}
	os.WriteFile(filepath.Join(c.hot, "app-1.log"), []byte(data), 0o644)
	return c
}

func (c crashCase) child(t *testing.T, mode, compress, at string) bool {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0", "LCD_ACRASH_MODE="+mode, "LCD_ACRASH_HOT="+c.hot,
		"LCD_ACRASH_COLD="+c.cold, "LCD_ACRASH_STATE="+c.state, "LCD_ACRASH_AT="+at, "LCD_ACRASH_COMPRESS="+compress)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == crashExit {
		return true
	}
	if err != nil {
		t.Fatalf("%s child (crash at %s): %v\n%s", mode, at, err, out)
	}
	return false
}

// check recovers in the parent and asserts: the segment's bytes exist exactly
// once — hot, or in cold (decompressed) — and no temp file is left anywhere.
func (c crashCase) check(t *testing.T, data, compress, scenario string) {
	r, err := openRig(c.hot, c.cold, c.state)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if _, err := r.env.Recover(func(string) (*fsx.Dir, error) { return r.hot, nil },
		func(string) (*fsx.Dir, error) { return r.cold, nil }); err != nil {
		t.Fatalf("%s: recover: %v", scenario, err)
	}
	hotNames, _ := r.hot.Names()
	coldNames, _ := r.cold.Names()
	for _, n := range append(hotNames, coldNames...) {
		if fsx.IsTemp(n) {
			t.Fatalf("%s: temp left: %s", scenario, n)
		}
	}
	switch {
	case len(hotNames) == 1 && len(coldNames) == 0:
		if b, _ := os.ReadFile(filepath.Join(c.hot, hotNames[0])); string(b) != data {
			t.Fatalf("%s: hot segment changed", scenario)
		}
	case len(hotNames) == 0 && len(coldNames) == 1:
		if got := decompress(t, filepath.Join(c.cold, coldNames[0]), compress); got != data {
			t.Fatalf("%s: archive differs", scenario)
		}
	default:
		t.Fatalf("%s: hot %v, cold %v: not exactly once", scenario, hotNames, coldNames)
	}
	if p := r.env.Journal.Pending(); len(p) != 0 {
		t.Fatalf("%s: pending after recovery: %+v", scenario, p)
	}
}

// TestCrashAtEveryArchiveStep kills a real process at each step of the
// cross-filesystem protocol (compressing copy) and of the rename protocol, then
// at each step of the recovery that follows; after each, the segment's bytes
// exist exactly once and no temp file remains.
func TestCrashAtEveryArchiveStep(t *testing.T) {
	data := content(5000)
	steps, inRecovery := 0, 0
	for _, mode := range []struct {
		compress string
		points   []string
	}{{"zstd", copyPoints}, {"none", renamePoints}} {
		for _, p := range mode.points {
			c := setup(t, data)
			if !c.child(t, "move", mode.compress, p) {
				t.Fatalf("%s move never reached %s", mode.compress, p)
			}
			steps++
			c.check(t, data, mode.compress, mode.compress+" crash at "+p)
			for _, rp := range recoverPoints {
				c := setup(t, data)
				c.child(t, "move", mode.compress, p)
				if !c.child(t, "recover", mode.compress, rp) {
					continue
				}
				inRecovery++
				c.check(t, data, mode.compress, mode.compress+" crash at "+p+", then in recovery at "+rp)
			}
		}
	}
	t.Logf("archive crash points covered: %d protocol steps, %d crashes inside recovery", steps, inRecovery)
	if inRecovery == 0 {
		t.Fatal("no crash inside recovery exercised")
	}
}
