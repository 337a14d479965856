package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

// compactConfig makes every closed segment eligible at once.
func (e *env) compactConfig(extra string) {
	cfg := fmt.Sprintf(`state_dir: %s/state
scan_interval: 100ms
load: {enabled: false}
compaction: {quiesce: 1s, target_size: 1MiB, min_segments: 2, threshold: 0.000001, growth_ref: 1KiB/s%s}
archive: {cold_dir: %s/cold, time_to_archive: 1h}
streams:
  - {name: app, dir: %s, pattern: "app-*"}
`, e.dir, extra, e.dir, e.logs)
	must(e.t, os.WriteFile(e.config, []byte(cfg), 0o644))
}

// stream reads the stream's segments in natural order and concatenates them.
func (e *env) stream() ([]string, string) {
	ents, err := os.ReadDir(e.logs)
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, d := range ents {
		if d.Type().IsRegular() {
			names = append(names, d.Name())
		}
	}
	sort.Slice(names, func(i, j int) bool { return model.NaturalLess(names[i], names[j]) })
	var b strings.Builder
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(e.logs, n))
		if err != nil {
			e.t.Fatal(err)
		}
		b.Write(data)
	}
	return names, b.String()
}

func lines(prefix string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s line %06d\n", prefix, i)
	}
	return b.String()
}

// TestOnceMergesByteExactAroundActiveAndHeldSegments: after `once`, the stream
// read in order is the original concatenation (plus the one recorded newline);
// the newest segment and one a real process holds open for writing are untouched.
func TestOnceMergesByteExactAroundActiveAndHeldSegments(t *testing.T) {
	e := newEnv(t)
	e.compactConfig("")
	want := ""
	for i := 1; i <= 6; i++ {
		content := lines(fmt.Sprintf("seg%d", i), 2000)
		if i == 2 {
			content += "no trailing newline"
		}
		p := filepath.Join(e.logs, fmt.Sprintf("app-%06d.log", i))
		must(t, os.WriteFile(p, []byte(content), 0o644))
		if i < 6 {
			old := time.Now().Add(-time.Hour)
			must(t, os.Chtimes(p, old, old))
		}
		want += content
		if i == 2 {
			want += "\n"
		}
	}
	held := filepath.Join(e.logs, "app-000003.log")
	heldBefore, _ := os.ReadFile(held)
	testutil.HoldOpenForWrite(t, held)
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once: %d %s", code, stderr)
	}
	names, got := e.stream()
	if strings.Join(names, " ") != "app-000001~c1.log app-000003.log app-000004~c1.log app-000006.log" {
		t.Fatalf("segments %v", names)
	}
	if got != want {
		t.Fatalf("stream content differs from the original concatenation (%d vs %d bytes)", len(got), len(want))
	}
	if after, _ := os.ReadFile(held); !bytes.Equal(after, heldBefore) {
		t.Fatal("the segment held open for writing changed")
	}
	out, _, _ := e.cli("plan", "--json")
	if !strings.Contains(out, `"state": "consolidated"`) {
		t.Fatalf("consolidated outputs not recognised:\n%s", out)
	}
	var p planJSON
	must(t, json.Unmarshal([]byte(out), &p))
	if g := p.Streams[0].GrowthRate; g != 0 {
		t.Fatalf("the merge counted as stream growth: %v B/s", g)
	}
}

// TestHostileDirectory: symlinks and hard links to outside files, a FIFO and a
// device named like segments, and names with a newline, shell syntax, invalid
// UTF-8 and 255 bytes. `once` finishes, nothing outside changes, no outside
// byte reaches an output, and the odd names are merged like any other.
func TestHostileDirectory(t *testing.T) {
	testutil.RequireRoot(t, "mknod of a device node")
	e := newEnv(t)
	e.compactConfig("")
	outside := t.TempDir()
	secret := filepath.Join(outside, "shadow")
	must(t, os.WriteFile(secret, []byte("OUTSIDE SECRET\n"), 0o600))
	secretInfo, _ := os.Stat(secret)
	old := time.Now().Add(-time.Hour)
	regular := []string{"app-01", "app-02\n$(touch pwned);`touch pwned`", "app-03-\xff\xfe", "app-04-" + strings.Repeat("x", 255-len("app-04-")), "app-05"}
	want := ""
	for i, n := range regular {
		c := lines(fmt.Sprintf("r%d", i), 100)
		want += c
		must(t, os.WriteFile(filepath.Join(e.logs, n), []byte(c), 0o644))
		must(t, os.Chtimes(filepath.Join(e.logs, n), old, old))
	}
	must(t, os.Symlink(secret, filepath.Join(e.logs, "app-50")))
	must(t, os.Link(secret, filepath.Join(e.logs, "app-51")))
	must(t, syscall.Mkfifo(filepath.Join(e.logs, "app-52"), 0o644))
	must(t, syscall.Mknod(filepath.Join(e.logs, "app-53"), syscall.S_IFCHR|0o600, 0x0103))
	must(t, os.WriteFile(filepath.Join(e.logs, "app-99"), []byte("active\n"), 0o644))

	done := make(chan struct{})
	var stderr string
	var code int
	go func() { _, stderr, code = e.cli("once"); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("once blocked (a FIFO or device was opened?)")
	}
	if code != 0 {
		t.Fatalf("once: %d %s", code, stderr)
	}
	if b, _ := os.ReadFile(secret); string(b) != "OUTSIDE SECRET\n" {
		t.Fatal("the outside file changed")
	}
	if fi, _ := os.Stat(secret); !fi.ModTime().Equal(secretInfo.ModTime()) || fi.Mode() != secretInfo.Mode() {
		t.Fatal("the outside file's metadata changed")
	}
	for _, d := range []string{e.logs, e.dir, "."} {
		if _, err := os.Stat(filepath.Join(d, "pwned")); err == nil {
			t.Fatal("a file name was executed")
		}
	}
	names, _ := e.stream()
	var merged strings.Builder
	for _, n := range names {
		if strings.Contains(n, "~c") {
			data, _ := os.ReadFile(filepath.Join(e.logs, n))
			if bytes.Contains(data, []byte("OUTSIDE")) {
				t.Fatalf("outside bytes reached output %q", n)
			}
			merged.Write(data)
		}
	}
	for _, n := range []string{"app-50", "app-51", "app-52", "app-53"} {
		if _, err := os.Lstat(filepath.Join(e.logs, n)); err != nil {
			t.Fatalf("foreign entry %q removed: %v", n, err)
		}
	}
	// The regular segments' bytes are all there, each once, in order.
	var all strings.Builder
	for _, n := range names {
		if st, _ := os.Lstat(filepath.Join(e.logs, n)); st.Mode().IsRegular() && n != "app-51" && n != "app-99" {
			data, _ := os.ReadFile(filepath.Join(e.logs, n))
			all.Write(data)
		}
	}
	if all.String() != want {
		t.Fatalf("regular segments' bytes not preserved exactly once (%d vs %d bytes)", len(all.String()), len(want))
	}
	if merged.Len() == 0 {
		t.Fatal("nothing was merged")
	}
}

// TestKillNineLoop kills real `once` and `run` processes at seeded random moments
// while they merge and archive, until 100 kills have hit a live process (LCD_KILLS), adding
// new closed segments as it goes;
// then lets one `once` finish. Every line ever written is present exactly once,
// in order, across the hot dir and the cold dir (decompressed).
func TestKillNineLoop(t *testing.T) {
	seed := uint64(1)
	if s := os.Getenv("LCD_KILL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	kills := 100
	if s := os.Getenv("LCD_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	e := newEnv(t)
	must(t, os.Mkdir(filepath.Join(e.dir, "cold"), 0o755))
	old := time.Now().Add(-time.Hour)
	want := strings.Builder{}
	seq := 0
	addSegments := func(n int) {
		for i := 0; i < n; i++ {
			seq++
			c := lines(fmt.Sprintf("s%05d", seq), 5000+rng.IntN(10000))
			p := filepath.Join(e.logs, fmt.Sprintf("app-%06d.log", seq))
			must(t, os.WriteFile(p, []byte(c), 0o644))
			must(t, os.Chtimes(p, old, old))
			want.WriteString(c)
		}
	}
	addSegments(12)
	must(t, os.WriteFile(filepath.Join(e.logs, "app-999999.log"), []byte("active\n"), 0o644))
	alive, midMerge := 0, 0
	for k := 0; alive < kills && k < 10*kills; k++ {
		if k%10 == 0 { // slow jobs (kills land inside them) and fast ones (kills land between)
			e.compactConfig(fmt.Sprintf(", max_rate: %dMiB/s, workers: 2", []int{2, 8}[(k/10)%2]))
			// Archival too: a 3 MiB cap the arriving segments keep pushing against.
			cfg, _ := os.ReadFile(e.config)
			must(t, os.WriteFile(e.config, []byte(strings.Replace(string(cfg), "time_to_archive: 1h}",
				"time_to_archive: 100ms, max_hot_bytes: 3MiB, compress: zstd}", 1)), 0o644))
		}
		args := []string{"--config", e.config, "once"}
		delay := time.Duration(20+rng.IntN(280)) * time.Millisecond
		if k%4 == 3 {
			args[2] = "run"
			delay = time.Duration(50+rng.IntN(450)) * time.Millisecond
		}
		cmd := exec.Command(binary, args...)
		cmd.Env = childEnv()
		must(t, cmd.Start())
		timer := time.NewTimer(delay)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-timer.C:
			if cmd.Process.Signal(syscall.SIGKILL) == nil {
				alive++
			}
			<-exited
			if sd, err := fsx.OpenDir(filepath.Join(e.dir, "state")); err == nil {
				if ops, _ := fsx.ReadJournal(sd, "journal"); len(ops) > 0 {
					midMerge++
				}
				sd.Close()
			}
		case <-exited:
			timer.Stop()
		}
		if k%3 == 0 {
			addSegments(2)
		}
	}
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("final once: %d %s", code, stderr)
	}
	names, _ := e.stream()
	got := allLines(t, e.logs, filepath.Join(e.dir, "cold", "app"))
	if w := want.String() + "active\n"; got != w {
		i := 0
		for i < len(got) && i < len(w) && got[i] == w[i] {
			i++
		}
		cold, _ := os.ReadDir(filepath.Join(e.dir, "cold", "app"))
		var cn []string
		for _, c := range cold {
			cn = append(cn, c.Name())
		}
		t.Fatalf("after %d kill -9s (seed %d): hot and cold hold %d bytes, want %d; first difference at %d: got %q, want %q\nhot %v\ncold %v",
			alive, seed, len(got), len(w), i, got[i:min(i+40, len(got))], w[i:min(i+40, len(w))], names, cn)
	}
	archived, _ := os.ReadDir(filepath.Join(e.dir, "cold", "app"))
	merged := 0
	for _, n := range names {
		if strings.Contains(n, "~c") {
			merged++
		}
	}
	for _, a := range archived {
		if strings.Contains(a.Name(), "~c") {
			merged++
		}
	}
	t.Logf("seed %d: %d processes killed while running, %d of them with a merge or archival in flight (journal op pending); %d segments written, %d consolidated and %d archived at the end",
		seed, alive, midMerge, seq, merged, len(archived))
	if len(archived) == 0 {
		t.Fatal("nothing was ever archived")
	}
	if midMerge < alive/4 {
		t.Fatalf("only %d of %d kills landed in the middle of a merge or archival", midMerge, alive)
	}
	if alive < kills {
		t.Fatalf("only %d kills hit a running process, want %d", alive, kills)
	}
	if merged == 0 {
		t.Fatal("nothing was ever merged")
	}
}

// TestSIGTERMDuringAMergeExitsCleanly: a slow merge is in flight (journal op
// pending) when systemd would send SIGTERM; the daemon exits 0 promptly, and the
// stream is either untouched or merged — here untouched — with no temp file.
func TestSIGTERMDuringAMergeExitsCleanly(t *testing.T) {
	e := newEnv(t)
	e.compactConfig(", max_rate: 256KiB/s")
	want := ""
	old := time.Now().Add(-time.Hour)
	for i := 1; i <= 4; i++ {
		c := lines(fmt.Sprintf("t%d", i), 20000)
		want += c
		p := filepath.Join(e.logs, fmt.Sprintf("app-%06d.log", i))
		must(t, os.WriteFile(p, []byte(c), 0o644))
		must(t, os.Chtimes(p, old, old))
	}
	must(t, os.WriteFile(filepath.Join(e.logs, "app-999999.log"), []byte("active\n"), 0o644))
	n := newNotifySocket(t)
	daemon, logs := e.startDaemon(n)
	waitUntil(t, "a merge in flight", func() bool {
		sd, err := fsx.OpenDir(filepath.Join(e.dir, "state"))
		if err != nil {
			return false
		}
		defer sd.Close()
		ops, _ := fsx.ReadJournal(sd, "journal")
		return len(ops) > 0
	})
	start := time.Now()
	must(t, daemon.Process.Signal(syscall.SIGTERM))
	if code := waitExit(t, daemon, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, logs.String())
	}
	t.Logf("exited %v after SIGTERM with a merge in flight", time.Since(start).Round(time.Millisecond))
	names, got := e.stream()
	if got != want+"active\n" {
		t.Fatalf("stream changed: %v", names)
	}
	ents, _ := os.ReadDir(e.logs)
	for _, d := range ents {
		if fsx.IsTemp(d.Name()) {
			t.Fatalf("temp file left: %s", d.Name())
		}
	}
	if !strings.Contains(logs.String(), "merge abandoned, inputs intact") {
		t.Fatalf("no abandon line in the log:\n%s", logs.String())
	}
}
