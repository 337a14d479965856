package fsx

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// ---- helpers ----------------------------------------------------------------

type rv struct {
	t     *testing.T
	dir   *Dir
	path  string
	state *Dir
	ls    *Leases
	r     *Runner
}

func newRV(t *testing.T) *rv {
	d, p := openTestDir(t)
	s, _ := openTestDir(t)
	j, err := OpenJournal(s, "journal")
	must(t, err)
	ls := NewLeases()
	t.Cleanup(func() { j.Close(); ls.Close() })
	return &rv{t: t, dir: d, path: p, state: s, ls: ls, r: &Runner{Journal: j, Leases: ls}}
}

// plain concatenation through Output.Write
func concat(_ context.Context, out *Output, ins []*Input) (Commit, error) {
	var c Commit
	for _, in := range ins {
		b, err := io.ReadAll(io.NewSectionReader(in.File, 0, in.Ref.Size))
		if err != nil {
			return c, err
		}
		if _, err := out.Write(b); err != nil {
			return c, err
		}
		c.InputCRCs = append(c.InputCRCs, UpdateChecksum(0, b))
	}
	c.OutSize = out.Size()
	c.OutCRC, _ = out.Sum()
	return c, nil
}

func (v *rv) spec(out string, keep bool, names ...string) Spec {
	var refs []FileRef
	for _, n := range names {
		st, err := v.dir.Stat(n)
		must(v.t, err)
		refs = append(refs, RefOf(n, st))
	}
	return Spec{Kind: KindMerge, Stream: "s", Src: v.dir, SrcPath: v.path, Dst: v.dir, Inputs: refs, Output: out, Produce: concat, Keep: keep}
}

func (v *rv) resolver() Resolver {
	return Resolver{Src: func(string) (*Dir, error) { return v.dir, nil }}
}

// crash runs fn in a goroutine that dies (runtime.Goexit: deferred closes run,
// like a process exit closing its fds; no clean-up code runs) at step at.
func (v *rv) crashAt(at string, fn func()) {
	v.r.Fault = func(p string) {
		if p == at {
			runtime.Goexit()
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	<-done
	v.r.Fault = nil
}

// a writer process that opens path for appending, says "opened", waits for a
// line on stdin, then appends LATE and exits.
type writer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
}

func startWriter(t *testing.T, path string) *writer {
	cmd := exec.Command("sh", "-c", `exec 3>>"$1" && echo opened && read x && printf 'LATE\n' >&3`, "sh", path)
	in, err := cmd.StdinPipe()
	must(t, err)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "opened" {
		t.Fatalf("writer: %q %v", line, err)
	}
	return &writer{cmd, in}
}

func (w *writer) writeAndExit(t *testing.T) {
	_, _ = io.WriteString(w.in, "go\n")
	w.in.Close()
	must(t, w.cmd.Wait())
}

func dump(t *testing.T, dir string) string {
	ents, err := os.ReadDir(dir)
	must(t, err)
	var b strings.Builder
	for _, e := range ents {
		c, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + "=" + strings.ReplaceAll(string(c), "\n", "|") + "  ")
	}
	return b.String()
}

// ---- regressions: each was a way to lose, duplicate or leak something ------

// Regression (was: F1): Runner.Move never looks at the lease after taking it: a writer that opens
// the segment for writing after the lease was taken (the kernel breaks the
// lease, the SIGIO loop gives it back) does not stop the move; the file is
// moved into cold while open for writing, and the writer's later bytes land
// in the cold archive.
func TestMoveStopsWhenAWriterOpensTheSegment(t *testing.T) {
	v := newRV(t)
	cold, cp := openTestDir(t)
	in := writeFile(t, v.path, "app.log.1", "closed\n")
	var w *writer
	v.r.Fault = func(p string) {
		if p == "move:begun" {
			w = startWriter(t, filepath.Join(v.path, "app.log.1"))
		}
	}
	err := v.r.Move(context.Background(), MoveSpec{Stream: "s", Src: v.dir, SrcPath: v.path, Dst: cold, DstPath: cp, Input: in, Output: "app.log.1"})
	t.Logf("Move err = %v", err)
	w.writeAndExit(t)
	t.Logf("hot:  %s", dump(t, v.path))
	t.Logf("cold: %s", dump(t, cp))
	if err == nil {
		t.Errorf("moved a file another process opened for writing during the job")
	}
}

// Regression (was: F2): after the commit nothing checks the lease or whether the input is open
// for writing: a writer that opened an input after the recheck keeps its fd,
// the input is unlinked, and what it writes next is lost.
func TestCommittedInputOpenForWritingIsNotRemoved(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app-1.log", "a\n")
	writeFile(t, v.path, "app-2.log", "b\n")
	var w *writer
	v.r.Fault = func(p string) {
		if p == "merge:published" {
			w = startWriter(t, filepath.Join(v.path, "app-2.log"))
		}
	}
	_, err := v.r.Run(context.Background(), v.spec("app-1~c1.log", false, "app-1.log", "app-2.log"))
	t.Logf("Run err = %v", err)
	w.writeAndExit(t)
	got := dump(t, v.path)
	t.Logf("dir: %s", got)
	if !strings.Contains(got, "LATE") {
		t.Errorf("the writer's bytes are gone: the input was unlinked while open for writing")
	}
}

// Regression (was: F2b): same with keep_inactive: FinishDue removes an inactive input that a
// process holds open for writing.
func TestKeptInputOpenForWritingIsNotRemoved(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app-1.log", "a\n")
	writeFile(t, v.path, "app-2.log", "b\n")
	_, err := v.r.Run(context.Background(), v.spec("app-1~c1.log", true, "app-1.log", "app-2.log"))
	must(t, err)
	w := startWriter(t, filepath.Join(v.path, "app-2.log"))
	n, err := v.r.FinishDue(v.resolver(), func(Op) bool { return true })
	t.Logf("FinishDue = %d, %v", n, err)
	w.writeAndExit(t)
	got := dump(t, v.path)
	t.Logf("dir: %s", got)
	if !strings.Contains(got, "LATE") {
		t.Errorf("inactive input removed while open for writing; the writer's bytes are lost")
	}
}

// Regression (was: F3): the output is verified and discarded by name only. A writer that renames
// the consolidated output (it matches the stream's pattern) makes recovery roll
// back a committed merge and forget it: output and inputs both stay.
func TestRenamedCommittedOutputIsFoundByIdentity(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app-1.log", "a\n")
	writeFile(t, v.path, "app-2.log", "b\n")
	_, err := v.r.Run(context.Background(), v.spec("app-1~c1.log", true, "app-1.log", "app-2.log"))
	must(t, err)
	must(t, os.Rename(filepath.Join(v.path, "app-1~c1.log"), filepath.Join(v.path, "app-1~c1.log.1")))
	st, err := v.r.Recover(v.resolver())
	t.Logf("Recover = %+v, %v; pending %d", st, err, len(v.r.Journal.Pending()))
	got := dump(t, v.path)
	t.Logf("dir: %s", got)
	if strings.Count(got, "a|") > 1 {
		t.Errorf("bytes duplicated and the op is gone from the journal")
	}
}

// Regression (was: F3b): the same after a crash between publish and commit.
func TestRenamedUncommittedOutputIsRolledBackByIdentity(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app-1.log", "a\n")
	writeFile(t, v.path, "app-2.log", "b\n")
	v.crashAt("merge:published", func() { _, _ = v.r.Run(context.Background(), v.spec("app-1~c1.log", false, "app-1.log", "app-2.log")) })
	must(t, os.Rename(filepath.Join(v.path, "app-1~c1.log"), filepath.Join(v.path, "app-1~c1.logr")))
	st, err := v.r.Recover(v.resolver())
	t.Logf("Recover = %+v, %v; pending %d", st, err, len(v.r.Journal.Pending()))
	got := dump(t, v.path)
	t.Logf("dir: %s", got)
	if strings.Count(got, "a|") > 1 {
		t.Errorf("bytes duplicated after recovery")
	}
}

// Regression (was: F4): a symlink (or dir/FIFO) put at the output name between plan and publish:
// Publish fails EEXIST, Discard refuses the non-regular name, the op stays
// pending, and every recovery fails the same way (stuck for good; its inputs
// stay "busy").
func TestSymlinkAtTheOutputNameLeavesNothingPending(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app-1.log", "a\n")
	writeFile(t, v.path, "app-2.log", "b\n")
	v.r.Fault = func(p string) {
		if p == "merge:rechecked" {
			must(t, os.Symlink("/nonexistent", filepath.Join(v.path, "app-1~c1.log")))
		}
	}
	_, err := v.r.Run(context.Background(), v.spec("app-1~c1.log", false, "app-1.log", "app-2.log"))
	v.r.Fault = nil
	t.Logf("Run err = %v", err)
	for i := 0; i < 2; i++ {
		st, err := v.r.Recover(v.resolver())
		t.Logf("Recover #%d = %+v, %v", i+1, st, err)
	}
	t.Logf("pending: %d; dir: %s", len(v.r.Journal.Pending()), listing(t, v.path))
	if len(v.r.Journal.Pending()) != 0 {
		t.Errorf("op pending for good")
	}
}

// Regression (was: F5): Publish EEXIST on a regular file: the clean-up renames the other file away
// and back (Dir.Unlink captures before it compares identity) — it touches a file
// that is not the op's.
func TestAFileAtTheOutputNameIsNeverTouched(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app-1.log", "a\n")
	writeFile(t, v.path, "app-2.log", "b\n")
	var before Stat
	v.r.Fault = func(p string) {
		if p == "merge:rechecked" {
			must(t, os.WriteFile(filepath.Join(v.path, "app-1~c1.log"), []byte("someone else's\n"), 0o644))
			before, _ = v.dir.Stat("app-1~c1.log")
		}
	}
	_, err := v.r.Run(context.Background(), v.spec("app-1~c1.log", false, "app-1.log", "app-2.log"))
	t.Logf("Run err = %v", err)
	after, _ := v.dir.Stat("app-1~c1.log")
	t.Logf("foreign file ctime before %d after %d", before.CtimeNs, after.CtimeNs)
	if after.CtimeNs != before.CtimeNs {
		t.Errorf("a file that is not the op's was renamed (twice) by the clean-up")
	}
}

// Regression (was: F6): Dir.Unlink with an identity renames to a fresh, unjournaled temp name
// before unlinking. A crash between the two leaves the op's temp output (or a
// foreign file, see F5) under a name recovery never looks at. Simulated: crash
// before the clean-up, then do the first half of Dir.Unlink by hand.
func TestTempHiddenByACrashedRemovalIsFound(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app-1.log", "a\n")
	writeFile(t, v.path, "app-2.log", "b\n")
	v.crashAt("merge:synced", func() { _, _ = v.r.Run(context.Background(), v.spec("app-1~c1.log", false, "app-1.log", "app-2.log")) })
	op := v.r.Journal.Pending()[0]
	// recovery's Discard -> Dir.Unlink(op.Temp, created): rename to a random temp ... crash here
	must(t, os.Rename(filepath.Join(v.path, op.Temp), filepath.Join(v.path, RandomTempName())))
	st, err := v.r.Recover(v.resolver())
	t.Logf("Recover = %+v, %v; pending %d; dir: %s", st, err, len(v.r.Journal.Pending()), listing(t, v.path))
	names, _ := v.dir.Names()
	for _, n := range names {
		if IsTemp(n) {
			t.Errorf("temp %s left for good (nothing journals it)", n)
		}
	}
}

// Regression (was: F7): a crash before the commit, then the writer deletes an input (logrotate's
// `rotate N` deletes the oldest): recovery never rolls back, the temp stays.
func TestUnpublishedOpRollsBackAfterAnInputIsDeleted(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app-1.log", "a\n")
	writeFile(t, v.path, "app-2.log", "b\n")
	v.crashAt("merge:synced", func() { _, _ = v.r.Run(context.Background(), v.spec("app-1~c1.log", false, "app-1.log", "app-2.log")) })
	must(t, os.Remove(filepath.Join(v.path, "app-1.log")))
	for i := 0; i < 2; i++ {
		st, err := v.r.Recover(v.resolver())
		t.Logf("Recover #%d = %+v, %v", i+1, st, err)
	}
	t.Logf("pending %d; dir: %s", len(v.r.Journal.Pending()), listing(t, v.path))
	if len(v.r.Journal.Pending()) != 0 || strings.Contains(listing(t, v.path), TempPrefix) {
		t.Errorf("an op whose output was never published stays stuck (temp kept) because a writer deleted an input")
	}
}

// TestENOSPCAtEveryJournalAppend: a merge whose k-th journal append fails as
// ENOSPC on the state dir would (nothing written, or a partial record), for
// every k: the job stops there, touches nothing more, and after a restart
// (the journal reopened from disk, recovery) every byte is there exactly once,
// no temp, nothing pending — and the journal is never "corrupt in the middle".
func TestENOSPCAtEveryJournalAppend(t *testing.T) {
	cases := 0
	for k := 1; ; k++ {
		for _, partial := range []int{0, 7} {
			v := newRV(t)
			writeFile(t, v.path, "app-1.log", "a\n")
			writeFile(t, v.path, "app-2.log", "b\n")
			appends := 0
			v.r.Journal.writeFault = func(int) (int, error) {
				if appends++; appends == k {
					return partial, syscall.ENOSPC
				}
				return 0, nil
			}
			_, err := v.r.Run(context.Background(), v.spec("app-1~c1.log", false, "app-1.log", "app-2.log"))
			if appends < k { // the merge needs fewer appends: every one was covered
				if cases == 0 {
					t.Fatal("no append failed")
				}
				t.Logf("ENOSPC at each of %d journal appends (%d cases)", k-1, cases)
				return
			}
			cases++
			if !errors.Is(err, ErrJournalFailed) {
				t.Fatalf("append %d failed, Run: %v", k, err)
			}
			must(t, v.r.Journal.Close())
			j, err := OpenJournal(v.state, "journal")
			if err != nil {
				t.Fatalf("append %d failed (%d bytes written): reopen: %v", k, partial, err)
			}
			r := &Runner{Journal: j, Leases: v.ls}
			if _, err := r.Recover(v.resolver()); err != nil {
				t.Fatalf("append %d: recover: %v", k, err)
			}
			got := dump(t, v.path)
			if got != "app-1.log=a|  app-2.log=b|  " && got != "app-1~c1.log=a|b|  " {
				t.Fatalf("append %d failed (%d bytes written): %s", k, partial, got)
			}
			if len(j.Pending()) != 0 {
				t.Fatalf("append %d: pending %+v", k, j.Pending())
			}
			j.Close()
		}
	}
}

// TestRecoverLeavesARunningOpAlone: recovery during run (for ops left pending)
// must not touch an op a job is still working on: with a merge paused after
// producing its output, Recover finds nothing to do, and the merge then
// finishes with every byte once.
func TestRecoverLeavesARunningOpAlone(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app-1.log", "a\n")
	writeFile(t, v.path, "app-2.log", "b\n")
	paused, resume := make(chan struct{}), make(chan struct{})
	v.r.Fault = func(p string) {
		if p == "merge:produced" {
			close(paused)
			<-resume
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := v.r.Run(context.Background(), v.spec("app-1~c1.log", false, "app-1.log", "app-2.log"))
		done <- err
	}()
	<-paused
	if n := v.r.Idle(); n != 0 {
		t.Errorf("Idle = %d with the only pending op running", n)
	}
	st, err := v.r.Recover(v.resolver())
	if err != nil || st.RolledBack+st.Finished+st.Stuck != 0 {
		t.Errorf("Recover touched a running op: %+v, %v", st, err)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := dump(t, v.path); got != "app-1~c1.log=a|b|  " {
		t.Fatalf("dir: %s", got)
	}
}

// Regression (logrotate numbered, CI): a scan racing renames saw one file as
// app.log.3 and app.log.4; a merge of "both" held its bytes twice. Inputs that
// are one file are refused before anything is journaled or created.
func TestOneFileTwiceAmongTheInputsIsRefused(t *testing.T) {
	v := newRV(t)
	writeFile(t, v.path, "app.log.3", "once\n")
	spec := v.spec("app.log.3~c1", false, "app.log.3")
	twice := spec.Inputs[0]
	twice.Name = "app.log.4"
	spec.Inputs = append(spec.Inputs, twice)
	_, err := v.r.Run(context.Background(), spec)
	if !errors.Is(err, ErrInputChanged) {
		t.Fatalf("Run with one file twice: %v, want ErrInputChanged", err)
	}
	if got := dump(t, v.path); !strings.Contains(got, "app.log.3") || strings.Contains(got, "~c1") {
		t.Errorf("dir after the refusal: %s", got)
	}
	if ops, err := ReadJournal(v.state, "journal"); err != nil || len(ops) != 0 {
		t.Errorf("journal: %v %v", ops, err)
	}
}

// A producer that starts the output's fsync early (Output.Flush, while it still
// reads back) commits the same output; one that fails after starting it is
// abandoned with the inputs intact. Either way no goroutine outlives Run: the
// flush is waited for before the file is closed.
func TestFlushedOutputCommitsOrAbandonsAndLeavesNothingRunning(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs after newRV's clean-up
	v := newRV(t)
	must(t, os.WriteFile(filepath.Join(v.path, "a.log"), []byte("one\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(v.path, "b.log"), []byte("two\n"), 0o644))
	boom := errors.New("read-back failed")
	for _, fail := range []bool{true, false} {
		s := v.spec("out.log", false, "a.log", "b.log")
		var flushed *Output
		v.r.Fault = func(p string) {
			if p == "merge:produced" {
				select {
				case <-flushed.flushing:
				default:
					t.Error("the early fsync still runs after produce: the final fsync and commit do not wait for it")
				}
			}
		}
		s.Produce = func(ctx context.Context, out *Output, ins []*Input) (Commit, error) {
			flushed = out
			c, err := concat(ctx, out, ins)
			out.Flush()
			out.Flush() // twice is once
			if fail {
				return c, boom
			}
			return c, err
		}
		_, err := v.r.Run(context.Background(), s)
		if fail {
			if !errors.Is(err, boom) || dump(t, v.path) != "a.log=one|  b.log=two|  " {
				t.Fatalf("abandoned run: %v; dir %s", err, dump(t, v.path))
			}
			continue
		}
		if err != nil || dump(t, v.path) != "out.log=one|two|  " {
			t.Fatalf("run: %v; dir %s", err, dump(t, v.path))
		}
	}
}
