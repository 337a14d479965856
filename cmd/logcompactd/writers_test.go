package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/archiver"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/scanner"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

// Recipes: real log writers from Debian packages next to a real `run` killed
// with kill -9 every 1-3 s (the renumber rig: cold on a tmpfs, zstd), each with
// the stream pattern and order the README documents for it. After the kill
// phase the writer stops, one `once` finishes, and:
//
//   - every line exactly once across hot and cold, increasing within each file
//     (the rig's ledger), no temp file, merges and archivals happened;
//   - the stream read in its order — cold files sorted by the stream's order,
//     then the hot segments in the stream's order, then the writer's current
//     file — is increasing: nothing was archived or merged out of order;
//   - the writer's control files (lock, state, current, a link) are still there,
//     lock and config the very inode they were at the start, and nothing in cold
//     is named outside the pattern.
//
// killPhase is per writer; five writers add about three minutes.
const writerKillPhase = 35 * time.Second

// lineGen is an application logging to its stdout (LCD_TEST_LINEGEN =
// "perBatch:burstFromMs:burstToMs:burstFactor:countFile"): every 10 ms one write
// of perBatch lines "app <seq>\n" (under PIPE_BUF: a writer reading the pipe
// never sees half a batch), perBatch×burstFactor between burstFromMs and
// burstToMs after its start. On SIGTERM it writes how many lines it wrote to
// countFile and exits 0, closing the pipe: the log writer sees EOF.
func lineGen(spec string) {
	f := strings.Split(spec, ":")
	perBatch, _ := strconv.Atoi(f[0])
	from, _ := strconv.Atoi(f[1])
	to, _ := strconv.Atoi(f[2])
	factor, _ := strconv.Atoi(f[3])
	countFile := f[4]
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	signal.Ignore(syscall.SIGPIPE)
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	seq := 0
	for {
		select {
		case <-stop:
			if err := os.WriteFile(countFile, []byte(strconv.Itoa(seq)), 0o644); err != nil {
				os.Exit(5)
			}
			os.Exit(0)
		case <-tick.C:
		}
		n := perBatch
		if ms := time.Since(start).Milliseconds(); ms >= int64(from) && ms < int64(to) {
			n *= factor
		}
		var b bytes.Buffer
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "app %d\n", seq+i)
		}
		if _, err := os.Stdout.Write(b.Bytes()); err != nil {
			fmt.Fprintln(os.Stderr, "line generator:", err)
			os.Exit(4)
		}
		seq += n
	}
}

// startPiped starts lineGen piped into the log writer argv (its cwd hot). The
// burst is 5× from 12 s to 16 s. stop SIGTERMs the generator, waits for the
// writer to drain the pipe and exit 0 at EOF, and returns the lines written.
func (r *renumberRig) startPiped(perBatch int, argv ...string) (stop func() int) {
	t := r.t
	countFile := filepath.Join(r.root, "generated")
	pr, pw, err := os.Pipe()
	must(t, err)
	w := exec.Command(argv[0], argv[1:]...)
	w.Dir, w.Stdin = r.hot, pr
	var wout bytes.Buffer
	w.Stdout, w.Stderr = &wout, &wout
	must(t, w.Start())
	t.Cleanup(func() { _ = w.Process.Kill() })
	g := exec.Command(os.Args[0], "-test.run=^$")
	g.Env = append(childEnv(), fmt.Sprintf("LCD_TEST_LINEGEN=%d:12000:16000:5:%s", perBatch, countFile))
	g.Stdout, g.Stderr = pw, os.Stderr
	must(t, g.Start())
	t.Cleanup(func() { _ = g.Process.Kill() })
	pr.Close()
	pw.Close()
	return func() int {
		t.Helper()
		must(t, g.Process.Signal(syscall.SIGTERM))
		if err := g.Wait(); err != nil {
			t.Fatalf("line generator: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- w.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("%s at EOF: %v (a writer failure, not the daemon's)\n%s", argv[0], err, wout.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not exit within 30 s of EOF\n%s", argv[0], wout.String())
		}
		b, err := os.ReadFile(countFile)
		must(t, err)
		n, err := strconv.Atoi(string(b))
		must(t, err)
		return n
	}
}

// fileID is a file's identity.
type fileID struct{ dev, ino uint64 }

func identity(t *testing.T, path string) (fileID, *syscall.Stat_t) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("writer's file: %v", err)
	}
	return fileID{uint64(st.Dev), st.Ino}, &st
}

// waitFiles waits (10 s at most) until the writer made every name in hot.
func (r *renumberRig) waitFiles(names ...string) {
	r.t.Helper()
	for _, n := range names {
		waitUntil(r.t, "the writer's "+n, func() bool {
			_, err := os.Stat(filepath.Join(r.hot, n))
			return err == nil
		})
	}
}

// pinned records the identity of the writer's files that must never change
// (lock, config); the returned func checks, at the end, that they are still
// the same files and that every name in also exists.
func (r *renumberRig) pinned(same []string, also ...string) (verify func()) {
	ids := map[string]fileID{}
	for _, n := range same {
		ids[n], _ = identity(r.t, filepath.Join(r.hot, n))
	}
	return func() {
		t := r.t
		t.Helper()
		for _, n := range same {
			if id, _ := identity(t, filepath.Join(r.hot, n)); id != ids[n] {
				t.Errorf("the writer's %s was replaced (%v, was %v)", n, id, ids[n])
			}
		}
		for _, n := range also {
			if _, err := os.Lstat(filepath.Join(r.hot, n)); err != nil {
				t.Errorf("the writer's %s is gone: %v", n, err)
			}
		}
	}
}

// coldSegment is the segment name an archive was made from: the name without
// the encoding's extension and without the ".<N>" a taken name gets.
func coldSegment(name, pattern string) string {
	name = strings.TrimSuffix(name, ".zst")
	if m, _ := filepath.Match(pattern, name); m {
		return name
	}
	if i := strings.LastIndexByte(name, '.'); i > 0 && strings.Trim(name[i+1:], "0123456789") == "" {
		return name[:i]
	}
	return name
}

// timeNamed is an archive of a renumbered segment: app.log.<N> with N
// replaced by its mtime (UTC, ISO 8601 basic), maybe consolidated, maybe a
// batch of segments "<first>..<last>" (an object store), maybe ".<k>" for a
// taken name.
var timeNamed = regexp.MustCompile(`^app\.log\.\d{8}T\d{6}\.\d{9}Z(~c\d+)?(\.\.app\.log\.\d{8}T\d{6}\.\d{9}Z(~c\d+)?)?(\.\d+)?\.zst$`)

// inStreamOrder checks that the stream read in its order — cold archives
// sorted by the stream's order (of the segment names they come from, or of
// their mtimes), then the hot segments, then tail (the writer's current files,
// outside the pattern) — holds strictly increasing lines, and that every file
// in cold comes from a name of the pattern. It returns the files in that order.
func (r *renumberRig) inStreamOrder(tail ...string) []string {
	t := r.t
	// seg is a file as the stream order sees it: in hot its name, mtime and
	// birth (scanner.Compare); in cold the segment name it comes from.
	type seg struct {
		path string
		model.Segment
	}
	list := func(dir string, cold bool) []seg {
		d, err := fsx.OpenDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		must(t, err)
		defer d.Close()
		names, err := d.Names()
		must(t, err)
		var segs []seg
		for _, n := range names {
			st, err := d.Stat(n)
			must(t, err)
			if st.Kind != fsx.Regular || fsx.IsTemp(n) {
				continue
			}
			name := n
			if cold {
				name = coldSegment(n, r.stream.pattern)
			}
			if m, _ := filepath.Match(r.stream.pattern, name); !m {
				if cold {
					t.Errorf("cold file %s does not come from a segment of pattern %q", n, r.stream.pattern)
				}
				continue
			}
			if !cold && r.control[name] {
				continue
			}
			segs = append(segs, seg{filepath.Join(dir, n), model.Segment{Name: name, MtimeNs: st.MtimeNs, ID: model.SegmentID{Gen: st.Btime}}})
		}
		if cold && r.stream.order == "mtime" {
			// a renumbering writer's archives are named by time (archiver.TimeName):
			// the names alone give the order (of one time-name the later archive
			// has the taken name's number: archiver.ColdCompare), and none is a
			// stale number
			slices.SortStableFunc(segs, func(a, b seg) int {
				return archiver.ColdCompare(archiver.ColdFile{Name: filepath.Base(a.path)}, archiver.ColdFile{Name: filepath.Base(b.path)}, true)
			})
			for _, s := range segs {
				if !timeNamed.MatchString(filepath.Base(s.path)) {
					t.Errorf("cold file %s is not named by its time", s.path)
				}
			}
			for i := 1; i < len(segs) && r.stream.store == nil; i++ { // an object's file mtime is its upload's
				if segs[i].MtimeNs < segs[i-1].MtimeNs {
					t.Errorf("cold names and mtimes disagree: %s is older than %s", segs[i].path, segs[i-1].path)
				}
			}
			return segs
		}
		slices.SortStableFunc(segs, func(a, b seg) int { return scanner.Compare(a.Segment, b.Segment, r.stream.order) })
		return segs
	}
	var paths []string
	for _, s := range list(filepath.Join(r.cold, "app"), true) {
		paths = append(paths, s.path)
	}
	for _, s := range list(r.hot, false) {
		paths = append(paths, s.path)
	}
	for _, n := range tail {
		paths = append(paths, filepath.Join(r.hot, n))
	}
	last, lastIn, bad := -1, "", 0
	for _, p := range paths {
		rd, done := openSegment(t, p)
		sc := bufio.NewScanner(rd)
		for sc.Scan() {
			_, num, _ := strings.Cut(sc.Text(), " ")
			n, err := strconv.Atoi(num)
			if err != nil {
				done()
				t.Fatalf("%s: malformed line %q", p, sc.Text())
			}
			if n <= last {
				bad++
				if bad <= 5 {
					rel, _ := filepath.Rel(r.root, p)
					t.Errorf("stream order: line %d in %s comes after line %d in %s", n, rel, last, lastIn)
				}
			}
			last, lastIn = n, p
			if rel, err := filepath.Rel(r.root, p); err == nil {
				lastIn = rel
			}
		}
		must(t, sc.Err())
		done()
	}
	if bad > 0 {
		t.Errorf("%d lines out of order across the stream (%d files in stream order)", bad, len(paths))
	}
	return paths
}

// tai64nWriter runs the recipe shared by svlogd, multilog and s6-log: rotated
// files "@<TAI64N>.s", the current one "current", pattern "@*.s", order name.
// setup prepares hot (svlogd's config); argv is the writer, run in hot;
// control the writer's files; same those that must keep their inode.
func tai64nWriter(t *testing.T, what string, setup func(hot string), argv func(hot string) []string, control, same []string) {
	r := newRigStream(t, rigStream{pattern: "@*.s", order: "name", targetSize: "64KiB", maxHot: "512KiB"})
	if m, _ := filepath.Match(r.stream.pattern, "current"); m {
		t.Fatal("current matches the pattern")
	}
	r.control = map[string]bool{}
	for _, c := range control {
		r.control[c] = c != "current" // current holds the last lines: the ledger reads it
	}
	if setup != nil {
		setup(r.hot)
	}
	stop := r.startPiped(20, argv(r.hot)...)
	r.waitFiles(control...)
	verify := r.pinned(same, control...)
	kills, inFlight := r.killLoop(writerKillPhase)
	written := stop()
	r.finalOnce()
	files := r.inStreamOrder("current")
	verify()
	// Every segment name, hot or cold, still starts with a TAI64N label: a
	// consolidated name with "~c<N>" inside the label no longer sorts as the time
	// of its first input (and natural order puts it among the wrong neighbours).
	for _, p := range files {
		name := filepath.Base(p)
		if name != "current" && !startsTAI64N(name) {
			t.Errorf("%s: the name no longer starts with a TAI64N label (@ and 24 hex digits)", p)
		}
	}
	r.check(what, writerKillPhase, written, kills, inFlight, fmt.Sprintf("; %d files in stream order", len(files)))
}

// startsTAI64N reports whether name starts with "@" and 24 lowercase hex digits.
func startsTAI64N(name string) bool {
	if len(name) < 25 || name[0] != '@' {
		return false
	}
	return strings.Trim(name[1:25], "0123456789abcdef") == ""
}

// TestSvlogdRecipe: runit's svlogd, `config` "s4096" (rotate at 4 KiB) and
// "n0" (never remove old files: its own retention must not delete a line).
func TestSvlogdRecipe(t *testing.T) {
	svlogd := testutil.RequireTool(t, "svlogd")
	tai64nWriter(t, "svlogd",
		func(hot string) { must(t, os.WriteFile(filepath.Join(hot, "config"), []byte("s4096\nn0\n"), 0o644)) },
		func(hot string) []string { return []string{svlogd, hot} },
		[]string{"config", "lock", "current"}, []string{"config", "lock"})
}

// TestMultilogRecipe: daemontools' multilog, s4096 and n100000 (far more old
// files than the test makes).
func TestMultilogRecipe(t *testing.T) {
	multilog := testutil.RequireTool(t, "multilog")
	tai64nWriter(t, "multilog", nil,
		func(hot string) []string { return []string{multilog, "s4096", "n100000", hot} },
		[]string{"lock", "state", "current"}, []string{"lock"})
}

// TestS6LogRecipe: s6's s6-log, s4096 and n100000.
func TestS6LogRecipe(t *testing.T) {
	s6log := testutil.RequireTool(t, "s6-log")
	tai64nWriter(t, "s6-log", nil,
		func(hot string) []string { return []string{s6log, "n100000", "s4096", hot} },
		[]string{"lock", "state", "current"}, []string{"lock"})
}

// TestRotatelogsRecipe: apache2-utils' rotatelogs, rotating at 8 KiB to
// app.<UTC seconds>.log, -L current (a hard link to the file being written:
// the daemon skips that file while it has two links), pattern "app.*.log",
// order name. Two rotations within a second give the same name: rotatelogs then
// appends to the file it has open, nothing lost.
func TestRotatelogsRecipe(t *testing.T) {
	rl := testutil.RequireTool(t, "rotatelogs")
	r := newRigStream(t, rigStream{pattern: "app.*.log", order: "name", targetSize: "32KiB", maxHot: "192KiB"})
	r.control = map[string]bool{"current": true}
	stop := r.startPiped(5, rl, "-f", "-L", filepath.Join(r.hot, "current"), filepath.Join(r.hot, "app.%Y%m%d%H%M%S.log"), "8K")
	r.waitFiles("current")
	kills, inFlight := r.killLoop(writerKillPhase)
	written := stop()
	r.finalOnce()
	files := r.inStreamOrder()
	// current is still a link to the last segment of the stream.
	cur, st := identity(t, filepath.Join(r.hot, "current"))
	if last, _ := identity(t, files[len(files)-1]); last != cur || st.Nlink != 2 {
		t.Errorf("current (%d links) is not the last segment %s", st.Nlink, files[len(files)-1])
	}
	r.check("rotatelogs", writerKillPhase, written, kills, inFlight, fmt.Sprintf("; %d files in stream order", len(files)))
}

// TestLogrotateDateextRecipe: the real logrotate, dateext with seconds
// (app.log-YYYYmmdd-HHMMSS), create, forced once in every wall-clock second
// (so no two rotations want the same name); the application reopens app.log
// for every batch. Pattern "app.log-*", order name; app.log is the tail.
func TestLogrotateDateextRecipe(t *testing.T) {
	lr := testutil.RequireTool(t, "logrotate")
	r := newRigStream(t, rigStream{pattern: "app.log-*", order: "name", targetSize: "64KiB", maxHot: "512KiB"})
	conf, state := r.logrotateConf(lr, `rotate 100000
    create
    missingok
    nocompress
    dateext
    dateformat -%Y%m%d-%H%M%S
    nocopytruncate`)
	stopWriter := r.startWriter("reopen:" + r.hot + ":10:0:0")
	// 100 ms into the next wall-clock second: one run per second.
	stopRotating := r.logrotateLoop(lr, conf, state, func() <-chan time.Time {
		now := time.Now()
		return time.After(now.Truncate(time.Second).Add(1100 * time.Millisecond).Sub(now))
	})
	kills, inFlight := r.killLoop(writerKillPhase)
	rs := stopRotating()
	written := stopWriter()
	r.finalOnce()
	files := r.inStreamOrder("app.log")
	if rs.failed > 0 {
		t.Errorf("%d of %d logrotate runs failed, the first: %s", rs.failed, rs.runs, rs.first)
	}
	if rs.runs < int(writerKillPhase/(2*time.Second)) {
		t.Errorf("only %d logrotate runs in %s, want one a second", rs.runs, writerKillPhase)
	}
	r.check("logrotate dateext", writerKillPhase, written, kills, inFlight,
		fmt.Sprintf("; %d logrotate runs; %d files in stream order", rs.runs, len(files)))
}

// TestLogrotateRetentionLeavesConsolidatedAlone: the real logrotate's own
// retention (rotate 1 or 2), numbered and dateext, deletes its old files but
// never a consolidated segment (README "what each writer's retention does"):
// the ~c<N> marker is outside the names it renumbers and globs.
func TestLogrotateRetentionLeavesConsolidatedAlone(t *testing.T) {
	lr := testutil.RequireTool(t, "logrotate")
	for _, c := range []struct {
		scheme, directives string
		old                []string // the writer's old files, oldest first
		consolidated       string
		gone               []string // what its retention deletes
	}{
		{"numbered", "rotate 2\n    create",
			[]string{"app.log.3", "app.log.2", "app.log.1"}, "app.log.2~c1", []string{"app.log.3"}},
		{"dateext", "rotate 1\n    create\n    dateext\n    dateformat -%Y%m%d-%H%M%S",
			[]string{"app.log-20261201-000001", "app.log-20261201-000002", "app.log-20261201-000003"},
			"app.log-20261201-000002~c1", []string{"app.log-20261201-000001", "app.log-20261201-000002", "app.log-20261201-000003"}},
	} {
		t.Run(c.scheme, func(t *testing.T) {
			dir := t.TempDir()
			for _, n := range append(append([]string{}, c.old...), c.consolidated, "app.log") {
				must(t, os.WriteFile(filepath.Join(dir, n), []byte(n+"\n"), 0o644))
			}
			conf := filepath.Join(dir, "conf")
			must(t, os.WriteFile(conf, []byte(filepath.Join(dir, "app.log")+" {\n    "+c.directives+"\n}\n"), 0o644))
			if out, err := exec.Command(lr, "-f", "-s", filepath.Join(dir, "state"), conf).CombinedOutput(); err != nil || len(out) > 0 {
				t.Fatalf("logrotate: %v %s", err, out)
			}
			got, err := os.ReadFile(filepath.Join(dir, c.consolidated))
			if err != nil || string(got) != c.consolidated+"\n" {
				t.Errorf("logrotate's retention touched the consolidated %s: %q %v", c.consolidated, got, err)
			}
			for _, n := range c.gone {
				if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil && string(b) == n+"\n" {
					t.Errorf("%s kept: the retention did not run, the test proves nothing", n)
				}
			}
		})
	}
}
