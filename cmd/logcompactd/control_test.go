package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/logcompactd/logcompactd/internal/control"
	lcd "github.com/logcompactd/logcompactd/internal/daemon"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

// contractMetrics are the metric names README promises (issue 13).
var contractMetrics = []string{
	"logcompactd_stream_hot_bytes", "logcompactd_stream_growth_bytes_per_second", "logcompactd_stream_predicted_bytes",
	"logcompactd_stream_cap_bytes", "logcompactd_stream_segments", "logcompactd_compactions_total",
	"logcompactd_archivals_total", "logcompactd_job_bytes_total", "logcompactd_job_duration_seconds",
	"logcompactd_deferred_actions", "logcompactd_system_load_ratio", "logcompactd_pass_duration_seconds",
	"logcompactd_cold_tier_up", "logcompactd_journal_ok", "logcompactd_shrunk_bytes_total", "logcompactd_build_info",
	"logcompactd_last_pass_timestamp_seconds", "logcompactd_stream_over_cap_unarchivable",
}

// freePort is a loopback port nothing listens on (now).
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// parseMetrics parses the Prometheus text format strictly: a torn or partial
// file fails here.
func parseMetrics(t *testing.T, what string, body []byte) map[string]*familyView {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: not valid Prometheus text: %v\n%s", what, err, body)
	}
	out := map[string]*familyView{}
	for name, f := range fams {
		v := &familyView{values: map[string]float64{}}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			val := 0.0
			switch {
			case m.GetCounter() != nil:
				val = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				val = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				val = float64(m.GetHistogram().GetSampleCount())
			}
			v.values[strings.Join(labels, ",")] = val
		}
		out[name] = v
	}
	return out
}

type familyView struct{ values map[string]float64 }

// TestRunAnswersForItself: a real `run` on a directory nothing writes to (ten
// 20 KB closed segments). After its merges, `plan` shows the daemon's own pass
// (source daemon, its pid): growth 0 and no archival — not a second
// computation that re-derives a growth from history. `status` exits 0 and
// names the daemon; /metrics on the control socket and on metrics.listen
// (127.0.0.1) carries every contract name, and the compaction counter matches
// the merges the log shows; the textfile is valid Prometheus text, also after
// a kill -9, and promtool accepts it.
func TestRunAnswersForItself(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool")
	e := newEnv(t)
	port := freePort(t)
	textfile := filepath.Join(e.dir, "textfile", "logcompactd.prom")
	must(t, os.Mkdir(filepath.Dir(textfile), 0o755))
	must(t, os.Mkdir(filepath.Join(e.dir, "cold"), 0o755))
	must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
scan_interval: 200ms
load: {enabled: false}
compaction: {quiesce: 1s, target_size: 64KiB, min_segments: 2, threshold: 0.000001, growth_ref: 1KiB/s}
archive: {cold_dir: %s/cold, time_to_archive: 1h, max_hot_bytes: 1MiB}
metrics: {listen: "127.0.0.1:%d", textfile: %s}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, e.dir, port, textfile, e.logs)), 0o644))
	for i := 1; i <= 10; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 20000, time.Hour)
	}
	if _, _, code := e.cli("status"); code != 1 {
		t.Fatalf("status with no daemon: exit %d, want 1", code)
	}
	n := newNotifySocket(t)
	cmd, logs := e.startDaemon(n)
	pid := cmd.Process.Pid

	// After its merges: a pass with no action.
	var plan lcd.Report
	waitUntil(t, "the daemon's merges, then a pass with no action", func() bool {
		out, stderr, code := e.cli("plan", "--json")
		if code != 0 {
			t.Fatalf("plan --json: exit %d: %s", code, stderr)
		}
		plan = lcd.Report{}
		must(t, json.Unmarshal([]byte(out), &plan))
		return loggedMerges(logs.String()) > 0 && len(plan.Streams) == 1 && len(plan.Streams[0].Actions) == 0
	})
	s := plan.Streams[0]
	if plan.Source != "daemon" || plan.PID != pid {
		t.Errorf("plan source %q pid %d, want the daemon, pid %d", plan.Source, plan.PID, pid)
	}
	if s.GrowthRate != 0 {
		t.Errorf("nothing writes, yet the stream grows at %.1f B/s", s.GrowthRate)
	}
	for _, a := range append(s.Actions, s.Deferred...) {
		t.Errorf("plan proposes %s %v: %s", a.Kind, a.Segments, a.Reason)
	}
	if len(s.Segments) != s.SegmentCount || s.SegmentCount >= 10 {
		t.Errorf("plan rows %d, segment_count %d: want the merged ones", len(s.Segments), s.SegmentCount)
	}
	table, _, code := e.cli("plan")
	if code != 0 || !strings.Contains(table, fmt.Sprintf("the running daemon's last pass, pid %d", pid)) {
		t.Errorf("plan (table) exit %d does not name the daemon:\n%s", code, table)
	}

	st, stderr, code := e.cli("status")
	if code != 0 || !strings.Contains(st, fmt.Sprintf("pid %d", pid)) || !strings.Contains(st, "stream app") {
		t.Errorf("status: exit %d\n%s\n%s", code, st, stderr)
	}
	var sj lcd.Status
	out, _, code := e.cli("status", "--json")
	must(t, json.Unmarshal([]byte(out), &sj))
	if code != 0 || sj.PID != pid || sj.Version == "" || !sj.Journal.OK || len(sj.ColdTiers) != 1 || !sj.ColdTiers[0].Up {
		t.Errorf("status --json: exit %d %+v", code, sj)
	}

	// /metrics, twice: the control socket and metrics.listen.
	merges := loggedMerges(logs.String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	viaSocket, err := control.Get(ctx, control.SocketPath(filepath.Join(e.dir, "state")), "/metrics")
	must(t, err)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	must(t, err)
	viaTCP, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	must(t, err)
	for what, body := range map[string][]byte{"control socket": viaSocket, "metrics.listen": viaTCP} {
		fams := parseMetrics(t, what, body)
		for _, name := range contractMetrics {
			if fams[name] == nil {
				t.Errorf("%s: no %s", what, name)
			}
		}
		if got := fams["logcompactd_compactions_total"].values["result=ok,stream=app"]; int(got) != merges || merges == 0 {
			t.Errorf("%s: compactions_total{ok} %v, the log shows %d merges", what, got, merges)
		}
		if got := fams["logcompactd_stream_growth_bytes_per_second"].values["stream=app"]; got != 0 {
			t.Errorf("%s: growth %v", what, got)
		}
		if got := fams["logcompactd_journal_ok"].values[""]; got != 1 {
			t.Errorf("%s: journal_ok %v", what, got)
		}
	}
	if info, err := os.Stat(control.SocketPath(filepath.Join(e.dir, "state"))); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v mode %v, want 0600", err, info.Mode())
	}

	// The textfile: complete, also after a kill -9 (it is replaced by rename).
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	_, _ = cmd.Process.Wait()
	body, err := os.ReadFile(textfile)
	must(t, err)
	fams := parseMetrics(t, "textfile after kill -9", body)
	for _, name := range contractMetrics {
		if fams[name] == nil {
			t.Errorf("textfile: no %s", name)
		}
	}
	pc := exec.Command(promtool, "check", "metrics")
	pc.Stdin = bytes.NewReader(body)
	if out, err := pc.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	ents, err := os.ReadDir(filepath.Dir(textfile))
	must(t, err)
	for _, e := range ents {
		if e.Name() != "logcompactd.prom" && strings.HasSuffix(e.Name(), ".prom") {
			t.Errorf("stray .prom file in the textfile dir: %s", e.Name())
		}
	}
	if _, err := os.Stat(control.SocketPath(filepath.Join(e.dir, "state"))); err == nil {
		// a dead daemon's socket: plan must not hang or fail on it
		out, stderr, code := e.cli("plan", "--json")
		var r lcd.Report
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Source != "local" {
			t.Errorf("plan next to a dead daemon's socket: exit %d source %q\n%s", code, r.Source, stderr)
		}
	}
}

// loggedMerges counts the merges a daemon's log reports.
func loggedMerges(log string) int {
	return strings.Count(log, `"msg":"merged"`) + strings.Count(log, `"msg":"merged; inputs inactive`)
}

// TestOverCapWithNothingArchivableWarns: 40 KB hot against a 10 KiB cap, every
// segment active (modified within quiesce). Nothing can be archived: `once`
// warns with the reason and says so in its summary; `plan` shows it (table and
// JSON) instead of "within max_hot_bytes".
func TestOverCapWithNothingArchivableWarns(t *testing.T) {
	e := newEnv(t)
	must(t, os.Mkdir(filepath.Join(e.dir, "cold"), 0o755))
	must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
load: {enabled: false}
compaction: {quiesce: 1h}
archive: {cold_dir: %s/cold, time_to_archive: 1h, max_hot_bytes: 10KiB}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, e.dir, e.logs)), 0o644))
	for i := 1; i <= 4; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 10000, 0)
	}
	_, logs, code := e.cli("--log-format", "json", "once")
	if code != 0 {
		t.Fatalf("once: exit %d\n%s", code, logs)
	}
	var warned, summary map[string]any
	for _, l := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		switch rec["msg"] {
		case "over max_hot_bytes and nothing can be archived":
			warned = rec
		case "once done":
			summary = rec
		}
	}
	if warned == nil || warned["level"] != "warn" || !strings.Contains(fmt.Sprint(warned["why"]), "app-000001.log is active") {
		t.Errorf("no warning naming what blocks archival: %v\n%s", warned, logs)
	}
	if summary == nil || summary["level"] != "warn" || summary["streams_over_cap_unarchivable"] != 1.0 {
		t.Errorf("once's summary does not say it: %v", summary)
	}
	table, _, _ := e.cli("plan")
	if !strings.Contains(table, "!! over the cap") || strings.Contains(table, "within max_hot_bytes") {
		t.Errorf("plan:\n%s", table)
	}
	out, _, _ := e.cli("plan", "--json")
	var r lcd.Report
	must(t, json.Unmarshal([]byte(out), &r))
	if !r.Streams[0].OverCap || r.Source != "local" {
		t.Errorf("plan --json: over_cap %v source %q", r.Streams[0].OverCap, r.Source)
	}
}

// burn keeps every CPU busy until killed (LCD_TEST_BURN): real load.
func burn() {
	for i := 0; i < 2*runtime.NumCPU(); i++ {
		go func() {
			for x := 0; ; x++ {
				_ = x * x
			}
		}()
	}
	select {}
}

// TestDeferredOnceSaysWhy: under real load (a CPU burner, waited for in
// /proc/loadavg) above load.pause_above, `once` merges nothing and its summary
// line says what it deferred and why; the deferral is logged when it starts.
func TestDeferredOnceSaysWhy(t *testing.T) {
	e := newEnv(t)
	must(t, os.Mkdir(filepath.Join(e.dir, "cold"), 0o755))
	must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
load: {enabled: true, pause_above: 0.05}
compaction: {quiesce: 1s, target_size: 1MiB, min_segments: 2, threshold: 0.000001, growth_ref: 1KiB/s}
archive: {cold_dir: %s/cold, time_to_archive: 1h}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, e.dir, e.logs)), 0o644))
	for i := 1; i <= 4; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 10000, time.Hour)
	}
	b := exec.Command(os.Args[0], "-test.run=^$")
	b.Env = append(childEnv(), "LCD_TEST_BURN=1")
	must(t, b.Start())
	t.Cleanup(func() { _ = b.Process.Kill(); _, _ = b.Process.Wait() })
	waitUntil(t, "load1 per CPU above 0.2", func() bool {
		raw, err := os.ReadFile("/proc/loadavg")
		must(t, err)
		var l1 float64
		fmt.Sscan(string(raw), &l1)
		return l1/float64(runtime.NumCPU()) > 0.2
	})
	before := listing(t, e.logs)
	_, logs, code := e.cli("--log-format", "json", "once")
	if code != 0 {
		t.Fatalf("once: exit %d\n%s", code, logs)
	}
	if after := listing(t, e.logs); after != before {
		t.Errorf("once merged under load:\n%s", after)
	}
	var summary map[string]any
	started := false
	for _, l := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		switch rec["msg"] {
		case "actions deferred (logged again when they run)":
			started = true
		case "once done":
			summary = rec
		}
	}
	if !started {
		t.Errorf("the deferral was not logged:\n%s", logs)
	}
	if summary == nil || summary["deferred"] != 1.0 || !strings.Contains(fmt.Sprint(summary["deferred_because"]), "pause_above") {
		t.Errorf("once's summary does not say what it deferred and why: %v\n%s", summary, logs)
	}
}
