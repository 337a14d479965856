package daemon

import (
	"runtime"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/model"
)

// metrics are the Prometheus metrics of a running daemon (README "Metrics";
// the names are a contract). The gauges are set from each pass's snapshot and
// report — what the daemon decided, not a second computation — and the
// counters where jobs end. All are safe to update from any goroutine.
type metrics struct {
	reg *prometheus.Registry

	hot, growth, predicted, capB *prometheus.GaugeVec // stream
	segments                     *prometheus.GaugeVec // stream, state
	overCap                      *prometheus.GaugeVec // stream
	deferred                     *prometheus.GaugeVec // reason
	streamDeferred               *prometheus.GaugeVec // stream
	compactions, archivals       *prometheus.CounterVec
	jobBytes                     *prometheus.CounterVec
	jobDuration                  *prometheus.HistogramVec
	shrunk                       *prometheus.CounterVec
	coldUp                       *prometheus.GaugeVec // cold_dir
	load, passDuration, lastPass prometheus.Gauge
	scanInterval, journalOK      prometheus.Gauge
	pending                      prometheus.Gauge
}

func newMetrics(version string) *metrics {
	const ns = "logcompactd"
	gv := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help})
	}
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	m := &metrics{
		reg:       prometheus.NewRegistry(),
		hot:       gv("stream_hot_bytes", "Bytes in the stream's segments in its hot dir.", "stream"),
		growth:    gv("stream_growth_bytes_per_second", "The stream's smoothed growth rate.", "stream"),
		predicted: gv("stream_predicted_bytes", "Hot bytes predicted at now + archive.time_to_archive.", "stream"),
		capB:      gv("stream_cap_bytes", "archive.max_hot_bytes of the stream.", "stream"),
		segments:  gv("stream_segments", "Segments of the stream by state.", "stream", "state"),
		overCap: gv("stream_over_cap_unarchivable",
			"1 while the stream's hot bytes are over its cap and nothing can be archived.", "stream"),
		deferred: gv("deferred_actions", "Actions decided by the last pass and held back, by reason.", "reason"),
		streamDeferred: gv("stream_deferred_actions",
			"Actions of the stream decided by the last pass and held back (load).", "stream"),
		compactions: cv("compactions_total",
			"Merges finished, by result: ok, abandoned (a writer changed an input; inputs intact), failed.", "stream", "result"),
		archivals: cv("archivals_total",
			"Archivals finished, by result: ok, abandoned (a writer changed the segment), failed.", "stream", "result"),
		jobBytes: cv("job_bytes_total", "Input bytes of finished jobs, by op (compact, archive).", "op"),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "job_duration_seconds",
			Help: "Duration of jobs, by op.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"op"}),
		shrunk: cv("shrunk_bytes_total",
			"Bytes that vanished from segments that got smaller (copytruncate, truncation).", "stream"),
		coldUp:       gv("cold_tier_up", "1 when the cold dir is usable, 0 while archival to it backs off.", "cold_dir"),
		load:         g("system_load_ratio", "The load ratio L (0..1) the last pass decided with."),
		passDuration: g("pass_duration_seconds", "Duration of the last pass (scan, predict, plan)."),
		lastPass:     g("last_pass_timestamp_seconds", "Unix time of the last pass."),
		scanInterval: g("scan_interval_seconds", "scan_interval: a pass is due at least this often."),
		journalOK:    g("journal_ok", "1 when the intent journal is usable; 0: merging and archival are off."),
		pending:      g("journal_pending_operations", "Operations in the intent journal not yet done."),
	}
	build := gv("build_info", "The running version.", "version", "goversion")
	build.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.hot, m.growth, m.predicted, m.capB, m.segments, m.overCap, m.deferred, m.streamDeferred, m.compactions,
		m.archivals, m.jobBytes, m.jobDuration, m.shrunk, m.coldUp, m.load, m.passDuration, m.lastPass,
		m.scanInterval, m.journalOK, m.pending, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, op := range []string{"compact", "archive"} {
		m.jobBytes.WithLabelValues(op)
		m.jobDuration.WithLabelValues(op)
	}
	return m
}

// observePass sets the gauges from one pass: its snapshot and its report.
func (m *metrics) observePass(d *Daemon, streams []*model.Stream, r *Report, took time.Duration, now time.Time) {
	m.load.Set(r.Load)
	m.passDuration.Set(took.Seconds())
	m.lastPass.Set(float64(now.UnixNano()) / 1e9)
	m.scanInterval.Set(d.cfg.ScanInterval.Seconds())
	deferred := map[string]int{"load": 0}
	for i, s := range streams {
		name := s.Config.Name
		if s.Err != "" {
			continue // the last values stay: a stream that cannot be scanned did not empty
		}
		m.hot.WithLabelValues(name).Set(float64(s.HotBytes))
		m.growth.WithLabelValues(name).Set(s.GrowthRate)
		m.predicted.WithLabelValues(name).Set(s.PredictedBytes)
		var by [len(segmentStates)]int
		for _, seg := range s.Segments {
			for k, st := range segmentStates {
				if seg.State == st {
					by[k]++
					break
				}
			}
		}
		for k, st := range segmentStates {
			m.segments.WithLabelValues(name, string(st)).Set(float64(by[k]))
		}
		over := 0.0
		if i < len(r.Streams) && r.Streams[i].OverCap {
			over = 1
		}
		m.overCap.WithLabelValues(name).Set(over)
		if i < len(r.Streams) {
			deferred["load"] += len(r.Streams[i].Deferred)
			m.streamDeferred.WithLabelValues(name).Set(float64(len(r.Streams[i].Deferred)))
		}
	}
	for reason, n := range deferred {
		m.deferred.WithLabelValues(reason).Set(float64(n))
	}
	ok := 1.0
	if d.journalErr != nil || (d.journal == nil && !d.opts.ReadOnly) {
		ok = 0
	}
	m.journalOK.Set(ok)
	m.pending.Set(float64(len(d.pending)))
	for _, p := range sortedTiers(d.tiers) {
		up := 1.0
		if d.tiers[p].status() != "" {
			up = 0
		}
		m.coldUp.WithLabelValues(p).Set(up)
	}
}

// segmentStates are the values of stream_segments' state label.
var segmentStates = [...]model.State{model.Active, model.Closed, model.Consolidated, model.Inactive}

// configure sets what follows from the config alone, once per config (Open,
// reload) rather than every pass: the per-stream and per-tier gauges start
// over (a reload may remove streams), the caps are set, and every stream's
// counters exist from the start (at 0) so that rates and alerts see them.
func (m *metrics) configure(cfg *config.Config) {
	for _, v := range []*prometheus.GaugeVec{m.hot, m.growth, m.predicted, m.capB, m.segments, m.overCap, m.streamDeferred, m.coldUp} {
		v.Reset()
	}
	for _, s := range cfg.Streams {
		m.capB.WithLabelValues(s.Name).Set(float64(s.Archive.MaxHotBytes))
		m.shrunk.WithLabelValues(s.Name)
		for _, res := range []string{"ok", "abandoned", "failed"} {
			m.compactions.WithLabelValues(s.Name, res)
			m.archivals.WithLabelValues(s.Name, res)
		}
	}
}

// job counts a finished job.
func (m *metrics) job(op, stream, result string, bytes int64, took time.Duration) {
	c := m.compactions
	if op == "archive" {
		c = m.archivals
	}
	c.WithLabelValues(stream, result).Inc()
	if result == "ok" {
		m.jobBytes.WithLabelValues(op).Add(float64(bytes))
		m.jobDuration.WithLabelValues(op).Observe(took.Seconds())
	}
}

// shrank counts bytes that vanished from a stream's shrinking segments.
func (m *metrics) shrank(stream string, bytes int64) {
	m.shrunk.WithLabelValues(stream).Add(float64(bytes))
}

// names lists the registered metric families (tests, docs).
func (m *metrics) names() []string {
	mfs, _ := m.reg.Gather()
	var out []string
	for _, mf := range mfs {
		out = append(out, mf.GetName())
	}
	sort.Strings(out)
	return out
}

// writeTextfile rewrites metrics.textfile (atomically: a temporary file in the
// same dir renamed over it, so node_exporter never reads half a file, even
// after a kill -9), at most once a second unless force.
func (d *Daemon) writeTextfile(force bool) {
	path := d.cfg.Metrics.Textfile
	if path == "" || d.opts.ReadOnly {
		return
	}
	now := d.opts.Now()
	if !force && now.Sub(d.textfileAt) < time.Second {
		return
	}
	d.textfileAt = now
	err := prometheus.WriteToTextfile(path, d.metrics.reg)
	switch {
	case err != nil && err.Error() != d.textfileErr:
		d.log.Warn("cannot write metrics.textfile (said once until it changes)", zap.String("textfile", path), zap.Error(err))
		d.textfileErr = err.Error()
	case err == nil && d.textfileErr != "":
		d.log.Info("metrics.textfile written again", zap.String("textfile", path))
		d.textfileErr = ""
	}
}
