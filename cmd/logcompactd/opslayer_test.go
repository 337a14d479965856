package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

// TestPlanShowsTheColdNameTheMoveUses: with an earlier archive holding a
// segment's plain cold name, plan prints the ".1" name, and once archives to
// exactly that name — the name shown is the name used.
func TestPlanShowsTheColdNameTheMoveUses(t *testing.T) {
	for _, compress := range []string{"zstd", "none"} {
		t.Run(compress, func(t *testing.T) {
			e := newEnv(t)
			cold := filepath.Join(e.dir, "cold")
			must(t, os.MkdirAll(filepath.Join(cold, "app"), 0o750))
			must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
scan_interval: 100ms
load: {enabled: false}
compaction: {threshold: 1000000, target_size: 1KiB}   # each segment its own archive
archive: {cold_dir: %s, max_age: 1h, compress: %s}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, cold, compress, e.logs)), 0o644))
			e.segment("app-000001.log", 1000, 3*time.Hour)
			e.segment("app-000002.log", 1000, 2*time.Hour)
			e.segment("app-000003.log", 1000, time.Minute)
			ext := map[string]string{"zstd": ".zst", "none": ""}[compress]
			taken := filepath.Join(cold, "app", "app-000001.log"+ext)
			must(t, os.WriteFile(taken, []byte("an earlier archive\n"), 0o600))

			out, stderr, code := e.cli("plan", "--json")
			if code != 0 {
				t.Fatalf("plan: %d %s", code, stderr)
			}
			var p struct {
				Streams []struct {
					Actions []struct {
						Kind     string   `json:"kind"`
						Segments []string `json:"segments"`
						Output   string   `json:"output"`
					} `json:"actions"`
				} `json:"streams"`
			}
			must(t, json.Unmarshal([]byte(out), &p))
			shown := map[string]string{}
			for _, a := range p.Streams[0].Actions {
				if a.Kind == "archive" {
					shown[a.Segments[0]] = a.Output
				}
			}
			want := map[string]string{"app-000001.log": "app/app-000001.log.1" + ext, "app-000002.log": "app/app-000002.log" + ext}
			if fmt.Sprint(shown) != fmt.Sprint(want) {
				t.Fatalf("plan shows %v, want %v", shown, want)
			}
			if _, stderr, code := e.cli("once"); code != 0 {
				t.Fatalf("once: %d %s", code, stderr)
			}
			for _, o := range want {
				if _, err := os.Stat(filepath.Join(cold, o)); err != nil {
					t.Fatalf("the move did not use the name plan showed: %v (cold: %s)", err, listing(t, filepath.Join(cold, "app")))
				}
			}
			if b, _ := os.ReadFile(taken); string(b) != "an earlier archive\n" {
				t.Fatal("an earlier archive was replaced")
			}
		})
	}
}

// TestFailedJournalAppendStopsDestructiveWork: the state dir on a full tmpfs,
// so the journal's first append fails. once touches nothing (inputs intact, no
// output, no temp), says why, and exits 1; after space is freed a new once
// (a restart) merges.
func TestFailedJournalAppendStopsDestructiveWork(t *testing.T) {
	testutil.RequireRoot(t, "mount a tmpfs as the state dir")
	e := newEnv(t)
	state := filepath.Join(e.dir, "state")
	must(t, os.Mkdir(state, 0o700))
	must(t, syscall.Mount("tmpfs", state, "tmpfs", 0, "size=64k,mode=0700"))
	t.Cleanup(func() { _ = syscall.Unmount(state, syscall.MNT_DETACH) })
	e.compactConfig("")
	for i := 1; i <= 5; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 4000, time.Hour)
	}
	// Create the journal while there is room, then fill the filesystem.
	must(t, os.Mkdir(filepath.Join(e.dir, "cold"), 0o755))
	if _, stderr, code := e.cli("check"); code != 0 {
		t.Fatal(stderr)
	}
	must(t, os.WriteFile(filepath.Join(state, "journal"), nil, 0o600))
	filler := filepath.Join(state, "filler")
	f, err := os.Create(filler)
	must(t, err)
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	before := listing(t, e.logs)
	_, stderr, code := e.cli("once")
	if code != 1 || !strings.Contains(stderr, "intent journal") {
		t.Fatalf("once with a failing journal: exit %d, want 1 and a word about the journal:\n%s", code, stderr)
	}
	t.Logf("once with a failing journal said:\n%s", stderr)
	if after := listing(t, e.logs); after != before {
		t.Fatalf("the stream changed although the journal could not record it:\n%s\n---\n%s", before, after)
	}
	must(t, os.Remove(filler))
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once after freeing space: %d\n%s", code, stderr)
	}
	if names, _ := e.stream(); len(names) != 2 {
		t.Fatalf("after a restart with room, want one merged segment and the newest: %v", names)
	}
}

// TestUnsafeConfigFileExitsAtOnce: a FIFO as the config returns at once with
// exit 2 from every command that reads it (it used to hang check, once and
// run); so does a config others can write.
func TestUnsafeConfigFileExitsAtOnce(t *testing.T) {
	e := newEnv(t)
	fifo := filepath.Join(e.dir, "fifo.yaml")
	must(t, syscall.Mkfifo(fifo, 0o600))
	writable := filepath.Join(e.dir, "writable.yaml")
	b, err := os.ReadFile(e.config)
	must(t, err)
	must(t, os.WriteFile(writable, b, 0o600))
	must(t, os.Chmod(writable, 0o666))
	for _, c := range []struct{ path, want string }{{fifo, "not a regular file"}, {writable, "writable by group or others"}} {
		for _, cmd := range []string{"check", "once", "plan"} {
			e.config = c.path
			start := time.Now()
			_, stderr, code := e.cli(cmd)
			if code != 2 || !strings.Contains(stderr, c.path) || !strings.Contains(stderr, c.want) {
				t.Errorf("%s with %s: exit %d, stderr %q", cmd, c.path, code, stderr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%s with %s took %s", cmd, c.path, d)
			}
		}
	}
}

// TestENOSPCOnHotBacksOff: a hot dir on a full tmpfs, merges planned at every
// pass: over 30 passes (3 s) the merge is tried a handful of times (1 s, then
// 2 s...), not at every pass.
func TestENOSPCOnHotBacksOff(t *testing.T) {
	testutil.RequireRoot(t, "mount a tmpfs as the hot dir")
	e := newEnv(t)
	must(t, syscall.Mount("tmpfs", e.logs, "tmpfs", 0, "size=256k"))
	t.Cleanup(func() { _ = syscall.Unmount(e.logs, syscall.MNT_DETACH) })
	e.compactConfig("")
	for i := 1; i <= 4; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 40000, time.Hour)
	}
	filler, err := os.Create(filepath.Join(e.dir, "logs", "filler"))
	must(t, err)
	for buf := make([]byte, 4096); ; {
		if _, err := filler.Write(buf); err != nil {
			break
		}
	}
	filler.Close()
	n := newNotifySocket(t)
	cmd, logs := e.startDaemon(n)
	for i := 0; i < 30; i++ {
		n.waitFor(t, "STATUS=")
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	waitExit(t, cmd, 30*time.Second)
	out := logs.String()
	tries := strings.Count(out, "merge abandoned, inputs intact")
	t.Logf("30 passes: %d merge attempts", tries)
	if tries == 0 || tries > 4 {
		t.Fatalf("%d merge attempts in 30 passes on a full hot dir, want 1-4 (back-off 1 s doubling)", tries)
	}
	if !strings.Contains(out, "no space left on device") {
		t.Fatal("the failure is not ENOSPC: the test does not test what it says")
	}
}

// TestStateDirDeletedUnderARunningDaemon: merges done with keep_inactive (the
// inputs wait, the journal alone knows they are merged), then the state dir
// deleted under the running daemon, then kill -9. The daemon had noticed, made
// the state dir anew and written its journal there from memory, so the next
// start finishes the merges: every line once (it used to forget them: 3,000 of
// 4,000 lines duplicated).
func TestStateDirDeletedUnderARunningDaemon(t *testing.T) {
	e := newEnv(t)
	e.compactConfig(", keep_inactive: 1h")
	want := ""
	for i := 1; i <= 5; i++ {
		p := filepath.Join(e.logs, fmt.Sprintf("app-%06d.log", i))
		content := lines(fmt.Sprintf("seg%d", i), 800)
		must(t, os.WriteFile(p, []byte(content), 0o644))
		old := time.Now().Add(-time.Hour + time.Duration(i)*time.Second)
		must(t, os.Chtimes(p, old, old))
		want += content
	}
	n := newNotifySocket(t)
	cmd, logs := e.startDaemon(n)
	waitUntil(t, "a merge", func() bool { return strings.Contains(logs.String(), "inputs inactive") })
	must(t, os.RemoveAll(filepath.Join(e.dir, "state")))
	waitUntil(t, "the daemon to notice", func() bool { return strings.Contains(logs.String(), "wrote the intent journal anew") })
	must(t, cmd.Process.Kill())
	_, _ = cmd.Process.Wait()
	e.compactConfig(", keep_inactive: 0s")
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once after the restart: %d\n%s", code, stderr)
	}
	if names, got := e.stream(); got != want {
		t.Fatalf("after the restart the stream is %d bytes in %v, want the %d bytes once", len(got), names, len(want))
	}
}

// TestOrphanTempsOfALostJournal: the temporary files an op leaves when its
// journal is lost (the state dir deleted, then kill -9): at the next start a
// staged output (and a file taken to be deleted) is removed, in the hot dir and
// in the cold subdir, while a segment taken to be moved — its only copy — is
// left and reported. A temp a pending op explains is not touched.
func TestOrphanTempsOfALostJournal(t *testing.T) {
	e := newEnv(t)
	e.compactConfig("")
	cold := filepath.Join(e.dir, "cold", "app")
	must(t, os.MkdirAll(cold, 0o750))
	staged := ".logcompactd-tmp-o-0123456789abcdef"
	taken := ".logcompactd-tmp-d-0123456789abcdef"
	moving := ".logcompactd-tmp-m-0123456789abcdef"
	must(t, os.WriteFile(filepath.Join(e.logs, staged), make([]byte, 10<<20), 0o600))
	must(t, os.WriteFile(filepath.Join(e.logs, taken), []byte("merged already\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(e.logs, moving), []byte("only copy\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(cold, staged), []byte("half an archive"), 0o600))
	e.segment("app-000001.log", 100, time.Minute)
	_, stderr, code := e.cli("once")
	if code != 0 {
		t.Fatalf("once: %d\n%s", code, stderr)
	}
	for _, p := range []string{filepath.Join(e.logs, staged), filepath.Join(e.logs, taken), filepath.Join(cold, staged)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(e.logs, moving)); err != nil || string(b) != "only copy\n" {
		t.Fatalf("the moved segment's only copy: %v", err)
	}
	if !strings.Contains(stderr, "left for the operator") {
		t.Fatalf("not reported:\n%s", stderr)
	}
}

// TestReloadFromAFIFOKeepsRunning: the config replaced by a FIFO, then SIGHUP:
// the reload fails at once (the old config stays), the loop goes on, and
// SIGTERM still stops the daemon (it used to hang in the read for good).
func TestReloadFromAFIFOKeepsRunning(t *testing.T) {
	e := newEnv(t)
	n := newNotifySocket(t)
	cmd, logs := e.startDaemon(n)
	must(t, os.Remove(e.config))
	must(t, syscall.Mkfifo(e.config, 0o600))
	must(t, cmd.Process.Signal(syscall.SIGHUP))
	n.waitFor(t, "RELOADING=1")
	n.waitFor(t, "READY=1")
	n.waitFor(t, "STATUS=")
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	if code := waitExit(t, cmd, 30*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(logs.String(), "not a regular file") {
		t.Fatalf("the failed reload does not say why:\n%s", logs.String())
	}
}

// TestCheckWarnsWhenNamesAndMtimesDisagree: logrotate's numbered scheme under
// order: name (the newest, app.log.1, sorts first): check warns and says to use
// order: mtime, and still exits 0; with order: mtime it says nothing.
func TestCheckWarnsWhenNamesAndMtimesDisagree(t *testing.T) {
	e := newEnv(t)
	must(t, os.Mkdir(filepath.Join(e.dir, "cold"), 0o755))
	for _, n := range []int{1, 2, 3, 4} {
		p := filepath.Join(e.logs, fmt.Sprintf("app.log.%d", n))
		must(t, os.WriteFile(p, []byte("x\n"), 0o644))
		old := time.Now().Add(-time.Duration(n) * time.Hour) // .1 is the newest
		must(t, os.Chtimes(p, old, old))
	}
	for _, c := range []struct{ order, want string }{{"name", "use order: mtime"}, {"mtime", ""}} {
		e.writeConfig(fmt.Sprintf("  - {name: numbered, dir: %s, pattern: \"app.log.*\", order: %s}\n", e.logs, c.order))
		_, stderr, code := e.cli("check")
		if code != 0 || (c.want != "" && !strings.Contains(stderr, c.want)) || (c.want == "" && strings.Contains(stderr, "warning")) {
			t.Fatalf("order %s: exit %d, stderr %q", c.order, code, stderr)
		}
	}
}
