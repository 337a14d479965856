package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
)

// perStreamFamilies are the families with a series per stream (or per stream
// and result/state), and the ones next to them that a pass or a job sets.
var perStreamFamilies = map[string]bool{
	"logcompactd_stream_hot_bytes": true, "logcompactd_stream_growth_bytes_per_second": true,
	"logcompactd_stream_predicted_bytes": true, "logcompactd_stream_cap_bytes": true,
	"logcompactd_stream_segments": true, "logcompactd_stream_over_cap_unarchivable": true,
	"logcompactd_stream_deferred_actions": true, "logcompactd_compactions_total": true,
	"logcompactd_archivals_total": true, "logcompactd_shrunk_bytes_total": true,
	"logcompactd_job_bytes_total": true, "logcompactd_deferred_actions": true,
}

func exposition(t *testing.T, d *Daemon) string {
	t.Helper()
	mfs, err := d.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if perStreamFamilies[mf.GetName()] {
			if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
				t.Fatal(err)
			}
		}
	}
	return b.String()
}

// The per-stream series, exactly as scraped: after a pass (a stream that
// cannot be scanned shows its cap only), after jobs and a shrink, and after a
// reload that removed a stream (its gauges go, its counters stay: a counter
// never goes back). The text is the contract dashboards and alert rules read.
func TestPerStreamSeriesAsScraped(t *testing.T) {
	d, cfg := readOnlyDaemon(t)
	d.Pass(nil, nil)
	d.metrics.job("compact", "app", "ok", 1000, time.Second)
	d.metrics.job("compact", "app", "ok", 500, time.Second)
	d.metrics.job("archive", "gone", "abandoned", 7, time.Second)
	d.metrics.job("archive", "app", "failed", 0, time.Second)
	d.metrics.shrank("app", 42)
	afterJobs := exposition(t, d)
	reloaded := *cfg
	reloaded.Streams = cfg.Streams[1:]
	d.apply(&reloaded)
	d.Pass(nil, nil)
	afterReload := exposition(t, d)
	for _, c := range []struct{ what, got, golden string }{
		{"after a pass and jobs", afterJobs, "metrics-after-jobs.txt"},
		{"after a reload without stream app", afterReload, "metrics-after-reload.txt"},
	} {
		golden := filepath.Join("testdata", c.golden)
		if os.Getenv("LCD_UPDATE_GOLDEN") != "" {
			if err := os.WriteFile(golden, []byte(c.got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if c.got != string(want) {
			t.Errorf("%s: got\n%s\nwant (%s)\n%s", c.what, c.got, golden, want)
		}
	}
}

// Counters carry a created timestamp (the protobuf exposition, for
// created-timestamp zero ingestion), as client_golang's own counters do.
func TestPerStreamCountersHaveACreatedTimestamp(t *testing.T) {
	d, _ := readOnlyDaemon(t)
	mfs, err := d.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		switch mf.GetName() {
		case "logcompactd_compactions_total", "logcompactd_archivals_total", "logcompactd_shrunk_bytes_total", "logcompactd_job_bytes_total":
			for _, m := range mf.GetMetric() {
				if m.GetCounter().GetCreatedTimestamp() == nil {
					t.Errorf("%s %v: no created timestamp", mf.GetName(), m.GetLabel())
				}
				n++
			}
		}
	}
	if n < 10 {
		t.Fatalf("%d counters seen", n)
	}
}
