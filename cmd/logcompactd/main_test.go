package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/config"
)

var binary string

// TestMain builds the real binary once; with LCD_TEST_WRITER set it instead acts
// as a writer process appending to a file at a fixed rate.
func TestMain(m *testing.M) {
	if spec := os.Getenv("LCD_TEST_WRITER"); spec != "" {
		writer(spec)
		return
	}
	if spec := os.Getenv("LCD_TEST_SOAKWRITER"); spec != "" {
		soakWriter(spec)
		return
	}
	if spec := os.Getenv("LCD_TEST_RENUMBERWRITER"); spec != "" {
		renumberWriter(spec)
		return
	}
	if os.Getenv("LCD_TEST_BURN") != "" {
		burn()
		return
	}
	if spec := os.Getenv("LCD_TEST_LINEGEN"); spec != "" {
		lineGen(spec)
		return
	}
	dir, err := os.MkdirTemp("", "lcd-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "logcompactd")
	if out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// childEnv is the environment of the processes a test starts: the race
// detector's 1 s pause at exit is of no use there.
func childEnv() []string { return append(os.Environ(), "GORACE=atexit_sleep_ms=0") }

// writer appends chunk bytes every 100 ms to path ("path:bytesPerSecond").
func writer(spec string) {
	i := strings.LastIndexByte(spec, ':')
	path := spec[:i]
	rate, _ := strconv.Atoi(spec[i+1:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		os.Exit(3)
	}
	line := bytes.Repeat([]byte("x"), 99)
	line = append(line, '\n')
	chunk := bytes.Repeat(line, rate/10/100)
	t := time.NewTicker(100 * time.Millisecond)
	for range t.C {
		if _, err := f.Write(chunk); err != nil {
			os.Exit(4)
		}
	}
}

type env struct {
	t      *testing.T
	dir    string
	logs   string
	config string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, logs: filepath.Join(dir, "logs"), config: filepath.Join(dir, "logcompactd.yaml")}
	if err := os.Mkdir(e.logs, 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeConfig("")
	return e
}

func (e *env) writeConfig(extraStreams string) {
	cfg := fmt.Sprintf(`state_dir: %s/state
scan_interval: 200ms
load: {enabled: false}
compaction: {quiesce: 2s, target_size: 1MiB}
archive: {cold_dir: %s/cold, time_to_archive: 1h}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
%s`, e.dir, e.dir, e.logs, extraStreams)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) segment(name string, size int, age time.Duration) string {
	p := filepath.Join(e.logs, name)
	if err := os.WriteFile(p, bytes.Repeat([]byte("l\n"), size/2), 0o644); err != nil {
		e.t.Fatal(err)
	}
	old := time.Now().Add(-age)
	if err := os.Chtimes(p, old, old); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// cli runs the binary to completion.
func (e *env) cli(args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(binary, append([]string{"--config", e.config}, args...)...)
	cmd.Env = childEnv()
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), er.String(), ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return o.String(), er.String(), 0
}

// notifySocket receives sd_notify datagrams.
type notifySocket struct {
	path string
	ch   chan string
	conn *net.UnixConn
}

func newNotifySocket(t *testing.T) *notifySocket {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, ch: make(chan string, 1024), conn: conn}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.ch)
				return
			}
			n.ch <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n
}

func (n *notifySocket) waitFor(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-n.ch:
			if !ok {
				t.Fatalf("notify socket closed waiting for %q", prefix)
			}
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from the daemon", prefix)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startDaemon starts `logcompactd run` and waits for READY=1.
func (e *env) startDaemon(n *notifySocket) (*exec.Cmd, *syncBuffer) {
	cmd := exec.Command(binary, "--config", e.config, "--log-level", "debug", "run")
	cmd.Env = append(childEnv(), "NOTIFY_SOCKET="+n.path)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	n.waitFor(e.t, "READY=1")
	return cmd, logs
}

func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("daemon did not exit within %s", within)
	}
	return -1
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func size(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

type planJSON struct {
	Time    string  `json:"time"`
	Load    float64 `json:"load"`
	Streams []struct {
		Name           string  `json:"name"`
		HotBytes       int64   `json:"hot_bytes"`
		GrowthRate     float64 `json:"growth_rate"`
		PredictedBytes float64 `json:"predicted_bytes"`
		Segments       []struct {
			Name          string  `json:"name"`
			Size          int64   `json:"size"`
			State         string  `json:"state"`
			GrowthRate    float64 `json:"growth_rate"`
			PredictedSize float64 `json:"predicted_size"`
		} `json:"segments"`
		Actions []struct {
			Kind     string   `json:"kind"`
			Segments []string `json:"segments"`
			Output   string   `json:"output"`
			Reason   string   `json:"reason"`
		} `json:"actions"`
	} `json:"streams"`
}

// TestRealWriterRateIsReported is the foundation's acceptance test: a real
// process appends about 200 KB/s; after 5 s `plan --json` reports the active
// segment's rate within ±25 % of what the writer really wrote, a prediction
// above its size, and 0 for a closed segment. The daemon then stops on SIGTERM.
func TestRealWriterRateIsReported(t *testing.T) {
	e := newEnv(t)
	e.segment("app-000001.log", 4000, time.Hour)
	e.segment("app-000002.log", 4000, time.Hour)
	active := e.segment("app-000003.log", 100, 0)
	n := newNotifySocket(t)
	daemon, logs := e.startDaemon(n)

	w := exec.Command(os.Args[0], "-test.run=^$")
	w.Env = append(os.Environ(), "LCD_TEST_WRITER="+active+":204800")
	start, t0 := size(t, active), time.Now()
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Process.Kill(); _ = w.Wait() }()
	waitUntil(t, "5 s of writing", func() bool { return time.Since(t0) >= 5*time.Second })
	n.waitFor(t, "STATUS=") // one more cycle, so that the history on disk is fresh
	out, stderr, code := e.cli("plan", "--json")
	actual := float64(size(t, active)-start) / time.Since(t0).Seconds()
	if code != 0 {
		t.Fatalf("plan exit %d: %s", code, stderr)
	}
	var p planJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("plan --json: %v\n%s", err, out)
	}
	if _, err := time.Parse(time.RFC3339, p.Time); err != nil {
		t.Fatalf("time %q: %v", p.Time, err)
	}
	s := p.Streams[0]
	var got float64
	for _, seg := range s.Segments {
		switch seg.Name {
		case "app-000003.log":
			got = seg.GrowthRate
			if seg.State != "active" || seg.PredictedSize <= float64(seg.Size) {
				t.Fatalf("active segment: %+v", seg)
			}
		case "app-000001.log":
			if seg.State != "closed" || seg.GrowthRate != 0 || seg.PredictedSize != float64(seg.Size) {
				t.Fatalf("closed segment: %+v", seg)
			}
		}
	}
	t.Logf("writer wrote %.0f B/s, plan reports %.0f B/s (stream %.0f B/s)", actual, got, s.GrowthRate)
	if actual < 120e3 || actual > 280e3 {
		t.Fatalf("the writer itself wrote %.0f B/s, not about 200 KB/s", actual)
	}
	if got < 0.75*actual || got > 1.25*actual {
		t.Fatalf("reported %.0f B/s, writer %.0f B/s: outside ±25%%", got, actual)
	}
	if s.GrowthRate < 0.75*actual || s.PredictedBytes <= float64(s.HotBytes) {
		t.Fatalf("stream growth %.0f, predicted %.0f, hot %d", s.GrowthRate, s.PredictedBytes, s.HotBytes)
	}

	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.waitFor(t, "STOPPING=1")
	if code := waitExit(t, daemon, 10*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM; log:\n%s", code, logs.String())
	}
	fi, err := os.Stat(filepath.Join(e.dir, "state"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(e.dir, "state", "growth.history")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("history file: %v %v", fi, err)
	}
}

func TestReloadKeepsOldConfigWhenNewIsInvalid(t *testing.T) {
	e := newEnv(t)
	e.segment("app-000001.log", 100, 0)
	n := newNotifySocket(t)
	daemon, logs := e.startDaemon(n)

	if err := os.WriteFile(e.config, []byte("scan_intervl: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, daemon.Process.Signal(syscall.SIGHUP))
	n.waitFor(t, "RELOADING=1")
	n.waitFor(t, "READY=1")
	waitUntil(t, "the reload error in the log", func() bool { return strings.Contains(logs.String(), "keeping the old one") })
	if !strings.Contains(logs.String(), "scan_intervl") {
		t.Fatalf("reload error does not name the key:\n%s", logs.String())
	}
	n.waitFor(t, "STATUS=1 streams") // still running on the old config

	other := filepath.Join(e.dir, "other")
	must(t, os.Mkdir(other, 0o755))
	e.writeConfig(fmt.Sprintf("  - {name: other, dir: %s, pattern: \"*.log\"}\n", other))
	must(t, daemon.Process.Signal(syscall.SIGHUP))
	n.waitFor(t, "RELOADING=1")
	n.waitFor(t, "STATUS=2 streams")

	must(t, daemon.Process.Signal(syscall.SIGTERM))
	if code := waitExit(t, daemon, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestOneInstancePerStateDir(t *testing.T) {
	e := newEnv(t)
	n := newNotifySocket(t)
	daemon, _ := e.startDaemon(n)
	_, stderr, code := e.cli("once")
	if code != 1 || !strings.Contains(stderr, "another instance") {
		t.Fatalf("second instance: exit %d, %s", code, stderr)
	}
	must(t, daemon.Process.Signal(syscall.SIGINT))
	if code := waitExit(t, daemon, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once after the daemon stopped: %d %s", code, stderr)
	}
}

func TestPlanChangesNothing(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 6; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 300000, time.Hour)
	}
	before := listing(t, e.logs)
	out, stderr, code := e.cli("plan")
	if code != 0 || !strings.Contains(out, "compact") || !strings.Contains(out, "app-000001~c1.log") {
		t.Fatalf("plan exit %d\n%s\n%s", code, out, stderr)
	}
	if after := listing(t, e.logs); after != before {
		t.Fatalf("plan changed the directory:\n%s\n---\n%s", before, after)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state")); !os.IsNotExist(err) {
		t.Fatalf("plan created the state dir: %v", err)
	}
}

func listing(t *testing.T, dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		fi, _ := e.Info()
		fmt.Fprintf(&b, "%s %d %v\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	must(t, os.Mkdir(filepath.Join(e.dir, "cold"), 0o755))
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"check of a valid config exits 0", []string{"check"}, 0, ""},
		{"version exits 0", []string{"version"}, 0, ""},
		{"an unknown command is a usage error", []string{"frobnicate"}, 2, "unknown command"},
		{"an extra argument is a usage error", []string{"plan", "extra"}, 2, "unknown command"},
		{"an unknown flag is a usage error", []string{"--verbose", "check"}, 2, "unknown flag"},
		{"a bad --log-level is a usage error", []string{"--log-level", "loud", "once"}, 2, "log-level"},
		{"a missing config file is exit 2 and named", []string{"--config", filepath.Join(e.dir, "missing.yaml"), "check"}, 2, "missing.yaml"},
		{"check takes --log-level as run does", []string{"--log-level", "verbose", "check"}, 2, "log-level"},
		{"check --strict of a config without warnings exits 0", []string{"check", "--strict"}, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := e.cli(c.args...)
			if code != c.code || !strings.Contains(stderr, c.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, c.code, stderr, c.msg)
			}
		})
	}
	// A config that names an unknown key: exit 2, file, line and key in the message.
	must(t, os.WriteFile(e.config, []byte("compaction:\n  target_sise: 1MiB\n"), 0o644))
	if _, stderr, code := e.cli("check"); code != 2 || !strings.Contains(stderr, e.config+":2: compaction.target_sise") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// A YAML syntax error: exit 2, file and line.
	must(t, os.WriteFile(e.config, []byte("state_dir: /x\n\tstreams: []\n"), 0o644))
	if _, stderr, code := e.cli("check"); code != 2 || !strings.Contains(stderr, e.config+":2: parse yaml: found a tab") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// A cold dir that does not exist: the config loads, but nothing would ever be
	// archived: check exits 2 naming the key and the path.
	ec := newEnv(t)
	if _, stderr, code := ec.cli("check"); code != 2 || !strings.Contains(stderr, "archive.cold_dir: "+filepath.Join(ec.dir, "cold")+" does not exist") {
		t.Fatalf("check with a missing cold dir: exit %d: %s", code, stderr)
	}
	// The unit's ExecStartPre: the config only; a cold tier not mounted yet
	// must not keep the daemon (and its other streams) from starting.
	if out, stderr, code := ec.cli("check", "--config-only"); code != 0 || !strings.Contains(out, "config ok") {
		t.Fatalf("check --config-only with a missing cold dir: exit %d: %s %s", code, out, stderr)
	}
	// A warning (a managed dir not there yet) passes check, fails check --strict.
	must(t, os.Remove(ec.logs))
	must(t, os.Mkdir(filepath.Join(ec.dir, "cold"), 0o755))
	if _, stderr, code := ec.cli("check"); code != 0 || !strings.Contains(stderr, "warning: streams[0].dir") {
		t.Fatalf("check with a warning: exit %d: %s", code, stderr)
	}
	if _, stderr, code := ec.cli("check", "--strict"); code != 2 || !strings.Contains(stderr, "--strict") {
		t.Fatalf("check --strict with a warning: exit %d: %s", code, stderr)
	}
	// A state dir path that is a file: the config is refused (exit 2), naming it.
	e2 := newEnv(t)
	must(t, os.WriteFile(filepath.Join(e2.dir, "state"), nil, 0o600))
	if _, stderr, code := e2.cli("once"); code != 2 || !strings.Contains(stderr, "state_dir") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// A runtime failure: a state dir others can write is refused when opened. Exit 1.
	e3 := newEnv(t)
	must(t, os.Mkdir(filepath.Join(e3.dir, "state"), 0o700))
	must(t, os.Chmod(filepath.Join(e3.dir, "state"), 0o777))
	if _, stderr, code := e3.cli("once"); code != 1 || !strings.Contains(stderr, "state dir") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCheckRejectsBadConfigsWithExit2 runs `check` on the real binary for many
// distinct bad configs: each must exit 2 and name the key.
func TestCheckRejectsBadConfigsWithExit2(t *testing.T) {
	e := newEnv(t)
	open := filepath.Join(e.dir, "open")
	must(t, os.Mkdir(open, 0o777))
	must(t, os.Chmod(open, 0o777))
	stream := func(extra string) string {
		return "streams:\n  - {name: a, dir: " + e.logs + ", pattern: \"a-*.log\"" + extra + "}\n"
	}
	cases := map[string]string{
		"scan_intervl":                       "scan_intervl: 1s\n" + stream(""),
		"compaction.target_sise":             "compaction: {target_sise: 1MiB}\n" + stream(""),
		"compaction.target_size":             "compaction: {target_size: 12XB}\n" + stream(""),
		"scan_interval":                      "scan_interval: soon\n" + stream(""),
		"growth.alpha":                       "growth: {alpha: 2}\n" + stream(""),
		"load.pause_above":                   "load: {pause_above: 0}\n" + stream(""),
		"load.enabled":                       "load: {enabled: sometimes}\n" + stream(""),
		"compaction.workers":                 "compaction: {workers: 0}\n" + stream(""),
		"compaction.growth_ref":              "compaction: {growth_ref: 5MiB}\n" + stream(""),
		"archive.low_watermark":              "archive: {low_watermark: 1.5}\n" + stream(""),
		"archive.keep_free":                  "archive: {keep_free: 101%}\n" + stream(""),
		"archive.compress":                   "archive: {compress: rar}\n" + stream(""),
		"state_dir":                          "state_dir: relative/state\n" + stream(""),
		"streams[0].order":                   stream(", order: size"),
		"streams[0].pattern":                 "streams:\n  - {name: a, dir: " + e.logs + ", pattern: \"x/y\"}\n",
		"streams[0].dir":                     "streams:\n  - {name: a, dir: " + open + ", pattern: \"*\"}\n",
		"streams[1].pattern":                 stream("") + "  - {name: b, dir: " + e.logs + ", pattern: \"*.log\"}\n",
		"streams[0].archive.cold_dir":        stream(", archive: {cold_dir: " + e.logs + "/cold}"),
		"streams[0].compaction.min_segments": stream(", compaction: {min_segments: 1}"),
		"log_format":                         "log_format: xml\n" + stream(""),
		"streams[0].compaction.workers":      stream(", compaction: {workers: 4}"),
		"streams[0].compaction.max_rate":     stream(", compaction: {max_rate: 1MiB/s}"),
		"metrics.listen":                     "metrics: {listen: \"9100\"}\n" + stream(""),
		"metrics.textfile":                   "metrics: {textfile: /var/lib/node_exporter/lcd.txt}\n" + stream(""),
		"archive.cold_dir":                   "archive: {cold_dir: \"s3://Bad_Bucket/x\"}\n" + stream(""),
		"archive.cold_max_age":               "archive: {cold_dir: \"s3://logs/x\", cold_max_age: 720h}\n" + stream(""),
		"archive.s3.part_size":               "archive: {cold_dir: \"s3://logs/x\", s3: {part_size: 1MiB}}\n" + stream(""),
		"archive.s3.endpoint":                "archive: {cold_dir: \"s3://logs/x\", s3: {endpoint: \"localhost:9000\"}}\n" + stream(""),
		"archive.s3.regoin":                  "archive: {cold_dir: \"s3://logs/x\", s3: {regoin: eu-west-1}}\n" + stream(""),
		"streams[0].archive.s3.timeout":      stream(", archive: {cold_dir: \"s3://logs/x\", s3: {timeout: 10ms}}"),
	}
	for key, yaml := range cases {
		t.Run(key, func(t *testing.T) {
			must(t, os.WriteFile(e.config, []byte(yaml), 0o644))
			_, stderr, code := e.cli("check")
			if code != 2 || !strings.Contains(stderr, e.config) || !strings.Contains(stderr, key+":") {
				t.Fatalf("exit %d, stderr %q: want 2, the file and key %q", code, stderr, key)
			}
		})
	}
}

// TestWatchdogPingsComeFromTheMainLoop: with WatchdogSec set (WATCHDOG_USEC), the
// daemon sends WATCHDOG=1 from its main loop; once the loop is stalled (test
// hook, SIGUSR2) the pings stop, so systemd would restart it.
func TestWatchdogPingsComeFromTheMainLoop(t *testing.T) {
	e := newEnv(t)
	n := newNotifySocket(t)
	cmd := exec.Command(binary, "--config", e.config, "run")
	cmd.Env = append(childEnv(), "NOTIFY_SOCKET="+n.path, "WATCHDOG_USEC=400000", "LOGCOMPACTD_TEST_HOOKS=1")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	n.waitFor(t, "READY=1")
	for i := 0; i < 3; i++ {
		n.waitFor(t, "WATCHDOG=1")
	}
	must(t, cmd.Process.Signal(syscall.SIGUSR2))
	waitUntil(t, "the stall", func() bool { return strings.Contains(logs.String(), "stalled by the test hook") })
	// A ping already in flight may still arrive within one half-period; after
	// that, none for five half-periods.
	grace := time.After(300 * time.Millisecond)
drain:
	for {
		select {
		case <-n.ch:
		case <-grace:
			break drain
		}
	}
	window := time.After(time.Second)
	for {
		select {
		case m := <-n.ch:
			if strings.HasPrefix(m, "WATCHDOG=1") {
				t.Fatal("WATCHDOG=1 after the main loop stalled")
			}
		case <-window:
			return
		}
	}
}

// TestCommandsLoadTheConfigOnce: loading a config checks every managed
// directory on disk; plan (which first looks for a daemon to ask) loaded it
// twice, a seventh of a fresh plan at 1,000 directories.
func TestCommandsLoadTheConfigOnce(t *testing.T) {
	e := newEnv(t)
	e.segment("app-000001.log", 1000, time.Hour)
	if err := os.Mkdir(filepath.Join(e.dir, "cold"), 0o700); err != nil {
		t.Fatal(err)
	}
	loads := 0
	loadConfigFile = func(path string) (*config.Config, error) {
		loads++
		return config.Load(path)
	}
	t.Cleanup(func() { loadConfigFile = config.Load })
	for _, cmd := range [][]string{{"plan"}, {"plan", "--json"}, {"once"}, {"check"}} {
		loads = 0
		e.runHere(&bytes.Buffer{}, cmd...)
		if loads != 1 {
			t.Errorf("%v loaded the config %d times, want 1", cmd, loads)
		}
	}
}

// runHere runs the command in this process (not the built binary), with
// stdout, and fails the test unless it exits 0.
func (e *env) runHere(stdout io.Writer, args ...string) {
	e.t.Helper()
	var errb bytes.Buffer
	if code := run(append([]string{"--config", e.config}, args...), stdout, &errb); code != 0 {
		e.t.Fatalf("%v: exit %d\n%s", args, code, errb.String())
	}
}

// fdProbe is a stdout that records, at its first write, which open fds of the
// process point into dir.
type fdProbe struct {
	bytes.Buffer
	dir    string
	probed bool
	held   []string
}

func (p *fdProbe) Write(b []byte) (int, error) {
	if !p.probed {
		p.probed = true
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(target, p.dir) {
				p.held = append(p.held, target)
			}
		}
	}
	return p.Buffer.Write(b)
}

// TestPlanWritesItsReportAfterClosingTheDaemon: plan closes the daemon (its
// scan of every segment, the growth state, the open dirs) before it encodes
// the report, so the encoding's garbage does not pile on top of them (at
// 100,000 segments: 94 -> 64 MiB peak RSS, BENCHMARKS.md).
func TestPlanWritesItsReportAfterClosingTheDaemon(t *testing.T) {
	e := newEnv(t)
	e.segment("app-000001.log", 1000, time.Hour)
	e.segment("app-000002.log", 1000, time.Hour)
	for _, args := range [][]string{{"plan"}, {"plan", "--json"}} {
		out := &fdProbe{dir: e.dir}
		e.runHere(out, args...)
		if !strings.Contains(out.String(), "app-000002.log") {
			t.Fatalf("%v printed no segment rows:\n%s", args, out.String())
		}
		if len(out.held) > 0 {
			t.Errorf("%v was writing its report with the daemon's dirs still open: %v", args, out.held)
		}
	}
}
