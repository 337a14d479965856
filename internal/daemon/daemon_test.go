package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
	"weak"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/logcompactd/logcompactd/internal/archiver"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/scanner"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testConfig(t *testing.T) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`state_dir: %s/state
scan_interval: 50ms
load: {enabled: false}
compaction: {quiesce: 1s, target_size: 1MiB}
archive: {cold_dir: %s/cold, max_hot_bytes: 1MiB, time_to_archive: 1h}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
  - {name: gone, dir: %s/missing, pattern: "*.log"}
`, dir, dir, logs, dir)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for i := 1; i <= 5; i++ {
		p := filepath.Join(logs, fmt.Sprintf("app-%06d.log", i))
		if err := os.WriteFile(p, bytes.Repeat([]byte("x\n"), 150000), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, logs
}

// openDaemon opens cfg's daemon with o (version "test" unless o says), closed
// when the test ends (Close is safe to call again before).
func openDaemon(t *testing.T, cfg *config.Config, o Options) *Daemon {
	t.Helper()
	if o.Version == "" {
		o.Version = "test"
	}
	d, err := Open(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// closeDaemon closes d, failing the test on an error.
func closeDaemon(t *testing.T, d *Daemon) {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// readOnlyDaemon opens a read-only daemon over testConfig's tree, closed
// when the test ends.
func readOnlyDaemon(t *testing.T) (*Daemon, *config.Config) {
	t.Helper()
	cfg, _ := testConfig(t)
	return openDaemon(t, cfg, Options{ReadOnly: true}), cfg
}

func keys(m map[string]any) string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return strings.Join(k, ",")
}

// TestPlanJSONHasExactlyTheContractFields decodes plan --json generically and
// compares every object's key set with SPEC §11.
func TestPlanJSONHasExactlyTheContractFields(t *testing.T) {
	d, _ := readOnlyDaemon(t)
	var buf bytes.Buffer
	if err := d.Plan().WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(buf.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	if got := keys(top); got != "load,source,streams,time" || top["source"] != "local" {
		t.Fatalf("top-level keys %s", got)
	}
	streams := top["streams"].([]any)
	if len(streams) != 2 {
		t.Fatalf("%d streams", len(streams))
	}
	s := streams[0].(map[string]any)
	if got := keys(s); got != "actions,cap_bytes,deferred,dir,growth_rate,horizon_seconds,hot_bytes,name,notes,over_cap,pattern,predicted_bytes,priority,segment_count,segments,skipped" {
		t.Fatalf("stream keys %s", got)
	}
	seg := s["segments"].([]any)[0].(map[string]any)
	if got := keys(seg); got != "growth_rate,name,predicted_size,priority,size,state" {
		t.Fatalf("segment keys %s", got)
	}
	actions := s["actions"].([]any)
	if len(actions) == 0 {
		t.Fatal("no actions for 1.5 MB of closed segments over a 1 MiB cap")
	}
	for _, a := range actions {
		if got := keys(a.(map[string]any)); got != "kind,output,reason,segments" {
			t.Fatalf("action keys %s", got)
		}
	}
	// A stream whose dir is missing still appears, with empty lists, not null.
	if g := streams[1].(map[string]any); g["segments"] == nil || g["actions"] == nil || g["deferred"] == nil ||
		g["notes"] == nil || g["skipped"] == nil || g["error"] == nil {
		t.Fatalf("missing stream: %v", g)
	}
}

func TestRunStopsCleanlyOnCancel(t *testing.T) {
	cfg, logs := testConfig(t)
	var notes []string
	ready := make(chan struct{}, 1)
	d, err := Open(cfg, Options{Notify: func(s string) {
		notes = append(notes, s)
		if s == "READY=1" {
			ready <- struct{}{}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil, nil) }()
	<-ready
	if err := os.WriteFile(filepath.Join(logs, "app-000006.log"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !strings.HasPrefix(notes[0], "STATUS=2 streams, 5 segments") || notes[len(notes)-1] != "STOPPING=1" {
		t.Fatalf("notifications %q", notes)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, historyName)); err != nil {
		t.Fatalf("history not saved on stop: %v", err)
	}
}

// TestReloadAppliesWorkers: compaction.workers changed by a reload sizes the
// worker pool the next jobs share.
func TestReloadAppliesWorkers(t *testing.T) {
	cfg, _ := testConfig(t)
	d, err := Open(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := cap(d.exec.sem); got != cfg.Compaction.Workers {
		t.Fatalf("%d workers at start, want %d", got, cfg.Compaction.Workers)
	}
	next := *cfg
	next.Compaction.Workers = 5
	d.exec.wait()
	d.apply(&next)
	if got := cap(d.exec.sem); got != 5 {
		t.Fatalf("%d workers after a reload to 5", got)
	}
}

// TestMetricsCoverTheContractAndTheAlertRules: after a pass, the registry has
// every name README promises and every name packaging/prometheus/alerts.yaml
// uses (the rules and the code cannot drift apart).
func TestMetricsCoverTheContractAndTheAlertRules(t *testing.T) {
	d, _ := readOnlyDaemon(t)
	d.Plan()
	have := map[string]bool{}
	for _, n := range d.metrics.names() {
		have[n] = true
	}
	rules, err := os.ReadFile("../../packaging/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`logcompactd_[a-z_]+`).FindAllString(string(rules), -1)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// README's metrics table: one `logcompactd_...` per row
	want = append(want, regexp.MustCompile("(?m)^\\| `(logcompactd_[a-z_]+)").FindAllString(string(readme), -1)...)
	if len(want) < 20 {
		t.Fatalf("only %d names found in the rules and README's table", len(want))
	}
	for _, n := range want {
		n = strings.TrimPrefix(n, "| `")
		if !have[n] {
			t.Errorf("%s is promised (README or alerts.yaml) but not exported", n)
		}
	}
}

// TestBatchesInEveryOrder: to a bucket, a stream's small segments share an
// object, whether its writer renames (order: mtime) or not.
func TestBatchesInEveryOrder(t *testing.T) {
	// Credentials from the environment: no trip to EC2's metadata service.
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, c := range []struct {
		order string
		want  int
	}{{"name", 1}, {"mtime", 1}} {
		dir := t.TempDir()
		cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`state_dir: %s/state
archive: {cold_dir: "s3://bkt", s3: {endpoint: "http://127.0.0.1:1", path_style: true, timeout: 1s}}
streams:
  - {name: app, dir: %s/logs, pattern: "app.log*", order: %s}
`, dir, dir, c.order)))
		if err != nil {
			t.Fatal(err)
		}
		d, err := Open(cfg, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		s := &model.Stream{Config: cfg.Streams[0]}
		var jobs []archiver.Job
		for i := 1; i <= 3; i++ {
			jobs = append(jobs, archiver.Job{Stream: "app", Segment: model.Segment{Name: fmt.Sprintf("app.log.%d", i), Size: 10,
				MtimeNs: int64(i) * 1e9}})
		}
		if got := len(d.batches(s, jobs, d.coldNamer())); got != c.want {
			t.Errorf("order %s: %d archives for 3 small segments, want %d", c.order, got, c.want)
		}
		d.Close()
	}
}

// A scan about to re-read streams first drops their previous scan (the scanner
// keeps its own for the streams it vouches unchanged): all of them, or those
// in the directories named.
func TestAPassForgetsTheScansItReplaces(t *testing.T) {
	d, cfg := readOnlyDaemon(t)
	logs := cfg.Streams[0].Dir
	d.Pass(nil, nil)
	if len(d.last) != 2 {
		t.Fatalf("%d scans kept after a pass, want 2", len(d.last))
	}
	d.forgetScans(map[string]bool{logs: true})
	if _, ok := d.last["app"]; ok || len(d.last) != 1 {
		t.Fatalf("after forgetting %s: %d scans, app's kept: %v", logs, len(d.last), ok)
	}
	d.forgetScans(nil)
	if len(d.last) != 0 {
		t.Fatalf("%d scans kept before a full scan", len(d.last))
	}
	d.Pass(nil, map[string]bool{logs: true}) // vouched unchanged: the scanner's own copy comes back
	if r := d.last["app"]; !r.Reused || len(r.Segments) != 5 {
		t.Fatalf("app after a tick: reused %v, %d entries", r.Reused, len(r.Segments))
	}
}

// Forgetting a stream's previous scan before re-reading it lets its old
// entries go while the new ones are made (the peak of every full re-read).
// Checked from inside the re-read: the warning about a new foreign file is
// logged after the stats, where a collection must find the old entries gone.
func TestAReReadDoesNotKeepThePreviousScanAlive(t *testing.T) {
	cfg, logs := testConfig(t)
	var old weak.Pointer[model.Segment]
	checked, alive := false, false
	core := zapcore.RegisterHooks(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(io.Discard), zap.WarnLevel), func(e zapcore.Entry) error {
		if e.Message == "skipping a file named like a segment" && old != (weak.Pointer[model.Segment]{}) {
			runtime.GC()
			checked, alive = true, old.Value() != nil
		}
		return nil
	})
	d := openDaemon(t, cfg, Options{ReadOnly: true, Logger: zap.New(core)})
	d.Pass(nil, nil)
	old = weak.Make(&d.last["app"].Segments[0])
	if err := os.Symlink("app-000001.log", filepath.Join(logs, "app-000009.log")); err != nil {
		t.Fatal(err)
	}
	d.Pass(nil, nil)
	if !checked {
		t.Fatal("the re-read logged no warning about the symlink")
	}
	if alive {
		t.Fatal("the previous scan's entries were still alive while the directory was re-read")
	}
}

// TestAPlanKeepsItsRowsThroughTheNextPass: a plan's report makes its rows from
// its pass's snapshot as it is written; the next plan, over a changed dir,
// must not change them.
func TestAPlanKeepsItsRowsThroughTheNextPass(t *testing.T) {
	d, cfg := readOnlyDaemon(t)
	d.Pass(nil, nil) // a pass without detail first
	first := d.Plan()
	var before bytes.Buffer
	if err := first.WriteJSON(&before); err != nil {
		t.Fatal(err)
	}
	logs := cfg.Streams[0].Dir
	// As many segments as before (a buffer of the same size), in another order.
	if err := os.Rename(filepath.Join(logs, "app-000001.log"), filepath.Join(logs, "app-000009.log")); err != nil {
		t.Fatal(err)
	}
	second := d.Plan()
	var after, next bytes.Buffer
	if err := first.WriteJSON(&after); err != nil {
		t.Fatal(err)
	}
	if err := second.WriteJSON(&next); err != nil {
		t.Fatal(err)
	}
	if after.String() != before.String() {
		t.Fatalf("the first plan's rows changed with the second pass:\n%s\nwas\n%s", after.String(), before.String())
	}
	if !strings.Contains(next.String(), "app-000009.log") || strings.Contains(before.String(), "app-000009.log") {
		t.Fatalf("the second plan does not see the change:\n%s", next.String())
	}
}

// The snapshot is made over the scanner's own list of segments, not a copy of
// it (112 bytes a segment, kept between passes: 11 MB at 100,000), and a
// tick that re-reads nothing classifies that same list again. A plan's rows
// are that list too, which the daemon then lets go: a later pass, one that
// re-reads another dir only or one vouched unchanged, makes lists of its own
// and leaves the rows as they are.
func TestTheSnapshotIsTheScansList(t *testing.T) {
	d, cfg := readOnlyDaemon(t)
	shared := func(segs []model.Segment) bool { return &segs[0] == &d.last["app"].Segments[0] }
	d.Pass(nil, nil)
	if !shared(d.lastStreams[0].Segments) {
		t.Fatal("the snapshot copied the scan's segments")
	}
	d.Pass(nil, map[string]bool{cfg.Streams[0].Dir: true})
	if !d.last["app"].Reused || !shared(d.lastStreams[0].Segments) {
		t.Fatalf("a tick that re-read nothing: reused %v, shared %v", d.last["app"].Reused, shared(d.lastStreams[0].Segments))
	}
	if got := d.lastStreams[0].Segments[4].State; got != model.Active {
		t.Fatalf("the newest segment, classified again: %s", got)
	}
	plan := d.Plan()
	if len(plan.Streams[0].segs) != 5 || len(d.last) != 0 || d.lastStreams != nil {
		t.Fatalf("after a plan of %d rows the daemon keeps %d scans", len(plan.Streams[0].segs), len(d.last))
	}
	var before, after bytes.Buffer
	if err := plan.WriteJSON(&before); err != nil {
		t.Fatal(err)
	}
	// A pass that re-reads only another stream's dir, then one vouched
	// unchanged: neither classifies the plan's rows again.
	d.Pass(map[string]bool{cfg.Streams[1].Dir: true}, nil)
	d.Pass(nil, map[string]bool{cfg.Streams[0].Dir: true})
	if d.last["app"].Reused || shared(plan.Streams[0].segs) {
		t.Fatal("a pass after a plan reused the list the plan's rows are")
	}
	if err := plan.WriteJSON(&after); err != nil {
		t.Fatal(err)
	}
	if after.String() != before.String() {
		t.Fatalf("the plan's rows changed with the next passes:\n%s\nwas\n%s", after.String(), before.String())
	}
}

// TestTheHistoryIsInBeforeItIsUsed: Open loads the growth history while the
// caller goes on (to recover, to scan); whatever asks for rates waits for it,
// and an unusable history is a warning and a fresh start, as before.
func TestTheHistoryIsInBeforeItIsUsed(t *testing.T) {
	cfg, _ := testConfig(t)
	d := openDaemon(t, cfg, Options{})
	d.Pass(nil, nil)
	if err := d.SaveHistory(); err != nil {
		t.Fatal(err)
	}
	closeDaemon(t, d)
	for range 20 {
		d := openDaemon(t, cfg, Options{})
		if n := d.rates().Segments(); n != 5 {
			t.Fatalf("right after Open the tracker knows %d segments, want the history's 5", n)
		}
		closeDaemon(t, d)
	}
	if err := os.WriteFile(filepath.Join(cfg.StateDir, historyName), []byte("LCDGROW2 not a history"), 0o600); err != nil {
		t.Fatal(err)
	}
	d = openDaemon(t, cfg, Options{})
	if n := d.rates().Segments(); n != 0 {
		t.Fatalf("an unusable history gave %d segments", n)
	}
	if r := d.Pass(nil, nil); r.Streams[0].SegmentCount != 5 {
		t.Fatalf("after an unusable history the pass sees %d segments", r.Streams[0].SegmentCount)
	}
}

// TestOnceSavesTheHistoryWithoutItsScan: once lets go of its pass (the scans
// the daemon and the scanner keep, the snapshot) before it encodes the growth
// history, so the encoding reuses that memory (at 100,000 segments a fresh
// once peaked 72 -> 59 MiB); the history it saves is whole.
func TestOnceSavesTheHistoryWithoutItsScan(t *testing.T) {
	cfg, _ := testConfig(t)
	d := openDaemon(t, cfg, Options{})
	if _, err := d.Once(); err != nil {
		t.Fatal(err)
	}
	if len(d.last) != 0 || d.lastStreams != nil {
		t.Errorf("after once the daemon still holds %d scans, %d snapshot streams", len(d.last), len(d.lastStreams))
	}
	if r := d.scanner.Scan(time.Now(), nil, map[string]bool{cfg.Streams[0].Dir: true}); r[0].Reused {
		t.Error("after once the scanner still keeps a scan to reuse")
	}
	closeDaemon(t, d)
	d = openDaemon(t, cfg, Options{ReadOnly: true})
	if n := d.rates().Segments(); n != 5 {
		t.Fatalf("the history once saved knows %d segments, want 5", n)
	}
}

// TestTheDaemonsPlanHasEachRowOnce: the control socket's plan copies the
// last pass's rows; from a daemon whose reports carry their snapshot's
// segments (plan's), the copy must not carry them as well.
func TestTheDaemonsPlanHasEachRowOnce(t *testing.T) {
	d, _ := readOnlyDaemon(t)
	d.Plan()
	var b bytes.Buffer
	if err := d.planNow().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), `"name": "app-000003.log"`); n != 1 {
		t.Fatalf("app-000003.log is %d rows of the daemon's plan, want 1:\n%s", n, b.String())
	}
}

// TestOrphanSweepOfASharedDir: at start the temporary files no journaled op
// explains are removed from every managed dir and every stream's cold subdir,
// by a few workers; a dir that two streams share is swept once, a cold dir
// they share is opened once for both subdirs, and each file is reported once.
// The same whether the sweep runs from Recover or after the first pass of
// once or run (which saw temporary names there).
func TestOrphanSweepOfASharedDir(t *testing.T) {
	for _, how := range []string{"Recover", "Once", "Run"} {
		t.Run(how, func(t *testing.T) { testOrphanSweepOfASharedDir(t, how) })
	}
}

func testOrphanSweepOfASharedDir(t *testing.T, how string) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`state_dir: %s/state
load: {enabled: false}
archive: {cold_dir: %s/cold}
streams:
  - {name: a, dir: %s, pattern: "a-*.log"}
  - {name: b, dir: %s/, pattern: "b-*.log"}
`, dir, dir, logs, logs)))
	if err != nil {
		t.Fatal(err)
	}
	const hot = 40
	var colds []string
	for i := range hot {
		if err := os.WriteFile(filepath.Join(logs, fmt.Sprintf("%so-%d", fsx.TempPrefix, i)), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, stream := range []string{"a", "b"} {
		sub := filepath.Join(dir, "cold", stream)
		if err := os.MkdirAll(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, fsx.TempPrefix+"o-cold"), []byte("half an archive"), 0o600); err != nil {
			t.Fatal(err)
		}
		colds = append(colds, sub)
	}
	core, logged := observer.New(zap.WarnLevel)
	ready := make(chan struct{}, 1)
	d := openDaemon(t, cfg, Options{Logger: zap.New(core), Notify: func(s string) {
		if s == "READY=1" {
			ready <- struct{}{}
		}
	}})
	switch how {
	case "Recover":
		if err := d.Recover(); err != nil {
			t.Fatal(err)
		}
	case "Once":
		if _, err := d.Once(); err != nil {
			t.Fatal(err)
		}
	case "Run":
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx, nil, nil) }()
		<-ready // after the first cycle
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	said := map[string]int{}
	for _, e := range logged.FilterMessage("removed a temporary file no journaled operation explains").All() {
		m := e.ContextMap()
		said[m["dir"].(string)+"/"+m["file"].(string)]++
	}
	left := 0
	for _, d := range append(colds, logs) {
		ents, _ := os.ReadDir(d)
		left += len(ents)
	}
	if len(said) != hot+len(colds) || left != 0 {
		t.Fatalf("%d files reported removed, %d left, want %d and 0", len(said), left, hot+len(colds))
	}
	for f, n := range said {
		if n != 1 {
			t.Errorf("%s reported removed %d times", f, n)
		}
	}
}

// The start-up sweep skips a managed dir only when every stream in it was
// listed whole by the first pass without a temporary name.
func TestListedWithoutTemps(t *testing.T) {
	res := func(name, dir string, noTemps bool) scanner.Result {
		return scanner.Result{Stream: config.Stream{Name: name, Dir: dir}, NoTemps: noTemps}
	}
	got := listedWithoutTemps(map[string]scanner.Result{
		"a": res("a", "/l/shared", true), "b": res("b", "/l/shared/", false),
		"c": res("c", "/l/clean/", true), "d": res("d", "/l/temps", false),
	})
	if len(got) != 1 || !got["/l/clean"] {
		t.Fatalf("got %v, want only /l/clean", got)
	}
}
