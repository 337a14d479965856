package compactor

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// The crash child: with LCD_CRASH_MODE set, the test binary runs one merge (or
// one recovery) over LCD_CRASH_LOGS / LCD_CRASH_STATE and exits 97 — at once, no
// deferred clean-up, like kill -9 — when it reaches the named step LCD_CRASH_AT.
// With LCD_CRASH_RECORD set it appends every step it reaches to that file
// instead, which is how the sweep learns the steps: every step the layer
// names is crashed at, none is listed by hand.
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
	at, record := os.Getenv("LCD_CRASH_AT"), os.Getenv("LCD_CRASH_RECORD")
	r.env.Ops.Fault = func(p string) {
		if record != "" {
			f, err := os.OpenFile(record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err == nil {
				fmt.Fprintln(f, p)
				f.Close()
			}
		}
		if p == at {
			os.Exit(crashExit)
		}
	}
	switch mode {
	case "merge":
		j := r.job(r.segments()...)
		j.Compress = os.Getenv("LCD_CRASH_COMPRESS")
		if _, err := r.env.Merge(context.Background(), j); err != nil {
			fmt.Fprintln(os.Stderr, "merge:", err)
			return 1
		}
	case "recover":
		if _, err := r.env.Ops.Recover(fsx.Resolver{Src: func(string) (*fsx.Dir, error) { return r.dir, nil }}); err != nil {
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
	r.env = &Env{Ops: &fsx.Runner{Journal: j, Leases: r.leases}, Pacer: NewPacer(0, 1<<20, nil), ChunkSize: 4096}
	return r
}

// inputs of every crash scenario: distinct lines, one input without a final newline.
var crashInputs = []struct{ name, content string }{
	{"app-1.log", "a1\na2\n"},
	{"app-2.log", "b1\nb2"},
	{"app-3.log", strings.Repeat("c\n", 3000)},
}

type crashRun struct{ logs, state, compress string }

func (c crashRun) child(t *testing.T, mode, at, record string) (crashed bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0", "LCD_CRASH_MODE="+mode, "LCD_CRASH_LOGS="+c.logs,
		"LCD_CRASH_STATE="+c.state, "LCD_CRASH_AT="+at, "LCD_CRASH_RECORD="+record, "LCD_CRASH_COMPRESS="+c.compress)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == crashExit {
		return true
	}
	if err != nil {
		t.Fatalf("%s child (crash at %q): %v\n%s", mode, at, err, out)
	}
	return false
}

// steps runs mode to its end in a child and returns the steps it reached, in order.
func (c crashRun) steps(t *testing.T, mode string) []string {
	t.Helper()
	rec := filepath.Join(t.TempDir(), "steps")
	c.child(t, mode, "", rec)
	b, err := os.ReadFile(rec)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// renameAll renames every file of the stream, the consolidated output too, the
// way a rotating writer would (app-N.log -> app-N.logr, keeping the order);
// temp names stay.
func (c crashRun) renameAll(t *testing.T) {
	ents, err := os.ReadDir(c.logs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !fsx.IsTemp(e.Name()) {
			must(t, os.Rename(filepath.Join(c.logs, e.Name()), filepath.Join(c.logs, e.Name()+"r")))
		}
	}
}

// assertOnce checks the promise after recovery: no temp file, no pending op, and
// the stream read in order is the original concatenation — exactly, or with the
// recorded newline when the inputs were merged.
func (c crashRun) assertOnce(t *testing.T, scenario string) {
	t.Helper()
	r := newRig(t, c.logs, c.state)
	if tmp := r.temps(); len(tmp) != 0 {
		t.Fatalf("%s: temp files left %v", scenario, tmp)
	}
	if p := r.env.Ops.Journal.Pending(); len(p) != 0 {
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
	case len(segs) == 1 && strings.Contains(segs[0], "~c") && c.compress == "none" && got.String() == merged.String():
	case len(segs) == 1 && strings.Contains(segs[0], "~c") && c.compress == "zstd" && decompress(t, got.String()) == merged.String():
	default:
		t.Fatalf("%s: segments %v hold %d bytes: neither the intact inputs nor the complete output", scenario, segs, len(got.String()))
	}
	r.close()
}

func setupCrash(t *testing.T, compress string) crashRun {
	base := t.TempDir()
	c := crashRun{filepath.Join(base, "logs"), filepath.Join(base, "state"), compress}
	for _, p := range []string{c.logs, c.state} {
		must(t, os.MkdirAll(p, 0o700))
	}
	for _, in := range crashInputs {
		must(t, os.WriteFile(filepath.Join(c.logs, in.name), []byte(in.content), 0o644))
	}
	return c
}

func (c crashRun) recoverInParent(t *testing.T) {
	t.Helper()
	r := newRig(t, c.logs, c.state)
	if _, err := r.env.Ops.Recover(fsx.Resolver{Src: func(string) (*fsx.Dir, error) { return r.dir, nil }}); err != nil {
		t.Fatalf("recover: %v", err)
	}
	r.close()
}

// TestCrashAtEveryStep kills a real merge process at every step the operation
// layer reaches (plain and zstd merges), then recovers; then kills the recovery
// itself at every step it reaches from that state, and recovers again. Each
// state is also recovered after a writer renamed every file of the stream in
// between (inputs are found by identity). After each: every byte exactly once,
// no temp file, nothing pending.
func TestCrashAtEveryStep(t *testing.T) {
	steps, inRecovery := 0, 0
	for _, compress := range []string{"none", "zstd"} {
		points := setupCrash(t, compress).steps(t, "merge")
		if len(points) < 10 {
			t.Fatalf("%s merge reached only %v", compress, points)
		}
		for _, p := range points {
			for _, renamed := range []bool{false, true} {
				c := setupCrash(t, compress)
				if !c.child(t, "merge", p, "") {
					t.Fatalf("merge never reached crash point %s", p)
				}
				if renamed {
					c.renameAll(t)
				}
				steps++
				c.recoverInParent(t)
				c.assertOnce(t, fmt.Sprintf("%s: crash at %s (renamed %v)", compress, p, renamed))
			}

			probe := setupCrash(t, compress)
			probe.child(t, "merge", p, "")
			for _, rp := range probe.steps(t, "recover") {
				c := setupCrash(t, compress)
				c.child(t, "merge", p, "")
				if !c.child(t, "recover", rp, "") {
					t.Fatalf("recovery after %s never reached %s", p, rp)
				}
				inRecovery++
				c.recoverInParent(t)
				c.assertOnce(t, fmt.Sprintf("%s: crash at %s, then in recovery at %s", compress, p, rp))
			}
		}
	}
	t.Logf("merge crash sweep: %d crashes at protocol steps (half with the stream renamed before recovery), %d crashes inside recovery", steps, inRecovery)
	if inRecovery == 0 {
		t.Fatal("no crash inside recovery was exercised")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func decompress(t *testing.T, s string) string {
	t.Helper()
	zr, err := zstd.NewReader(strings.NewReader(s))
	must(t, err)
	defer zr.Close()
	b, err := io.ReadAll(zr)
	must(t, err)
	return string(b)
}

// damageLastRecord damages the journal's last record the two ways a crash or a
// bad sector leaves it: "cut" drops its last 10 bytes, "flip" inverts a byte
// of its payload. It returns false when the journal has no record.
func (c crashRun) damageLastRecord(t *testing.T, how string) bool {
	t.Helper()
	path := filepath.Join(c.state, "journal")
	b, err := os.ReadFile(path)
	must(t, err)
	last := -1
	for off := 0; off+10 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[off+2 : off+6]))
		last = off
		off += 10 + n
	}
	if last < 0 {
		return false
	}
	switch how {
	case "cut":
		b = b[:len(b)-10]
	case "flip":
		b[last+11] ^= 0xff
	}
	must(t, os.WriteFile(path, b, 0o600))
	return true
}

// TestDamagedLastRecordNeverLosesAByte: a crash, then the journal's last
// record damaged (cut short, or a flipped byte), then recovery. The op whose
// record was lost is rolled back (inputs intact) or finished (its output
// verified); in particular a crash between a committed merge's removals with
// the record before them damaged loses nothing (it used to roll back, deleting
// the verified output: 1,000 lines lost). The crash points are those right
// after a journal append, from the commit on, where the last record is one a
// crash can tear (Done is not fsynced, so it stays tearable until the end);
// at the others the last record was fsynced before a step that is not an
// append (damaging it is a bad sector, not a torn write).
func TestDamagedLastRecordNeverLosesAByte(t *testing.T) {
	cases := 0
	tearable := func(p string) bool {
		for _, s := range []string{":begun", ":created", ":committed", ":removing", ":removed:", ":inputs-synced", ":done"} {
			if strings.Contains(p, s) {
				return true
			}
		}
		return false
	}
	for _, compress := range []string{"none", "zstd"} {
		for _, p := range setupCrash(t, compress).steps(t, "merge") {
			if !tearable(p) {
				continue
			}
			for _, how := range []string{"cut", "flip"} {
				c := setupCrash(t, compress)
				c.child(t, "merge", p, "")
				if !c.damageLastRecord(t, how) {
					continue
				}
				cases++
				c.recoverInParent(t)
				c.assertOnce(t, fmt.Sprintf("%s: crash at %s, last record %s", compress, p, how))
			}
		}
	}
	t.Logf("%d crashes with the last journal record damaged", cases)
}

// TestUncommittedOpWithAnInputGoneKeepsItsOutput: a merge killed after
// publishing but before its commit, then one input deleted (by a writer's
// retention, say): the output may hold that input's only copy, and without a
// commit it cannot be verified, so recovery deletes nothing and says so.
func TestUncommittedOpWithAnInputGoneKeepsItsOutput(t *testing.T) {
	c := setupCrash(t, "none")
	if !c.child(t, "merge", "merge:published", "") {
		t.Fatal("merge never reached merge:published")
	}
	must(t, os.Remove(filepath.Join(c.logs, "app-2.log")))
	r := newRig(t, c.logs, c.state)
	_, err := r.env.Ops.Recover(fsx.Resolver{Src: func(string) (*fsx.Dir, error) { return r.dir, nil }})
	if err == nil || !strings.Contains(err.Error(), "only copy") {
		t.Fatalf("recover: %v, want it to refuse and say why", err)
	}
	if got := strings.Join(r.segments(), " "); got != "app-1.log app-1~c1.log app-3.log" {
		t.Fatalf("segments %q: the output (or an input) was removed", got)
	}
	if p := r.env.Ops.Journal.Pending(); len(p) != 1 {
		t.Fatalf("pending %+v: want the op kept", p)
	}
}
