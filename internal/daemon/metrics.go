package daemon

import (
	"runtime"
	"sort"
	"sync"
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

	streams                      *streamMetrics       // every series with a stream label
	deferred                     *prometheus.GaugeVec // reason
	jobBytes                     *prometheus.CounterVec
	jobDuration                  *prometheus.HistogramVec
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
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		streams:  newStreamMetrics(ns),
		deferred: gv("deferred_actions", "Actions decided by the last pass and held back, by reason.", "reason"),
		jobBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "job_bytes_total",
			Help: "Input bytes of finished jobs, by op (compact, archive)."}, []string{"op"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "job_duration_seconds",
			Help: "Duration of jobs, by op.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"op"}),
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
	m.reg.MustRegister(m.streams, m.deferred, m.jobBytes, m.jobDuration, m.coldUp, m.load, m.passDuration, m.lastPass,
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
	m.streams.mu.Lock()
	for i, s := range streams {
		if s.Err != "" {
			continue // the last values stay: a stream that cannot be scanned did not empty
		}
		g := m.streams.gauge(s.Config.Name)
		g.passed = true
		g.hot, g.growth, g.predicted = float64(s.HotBytes), s.GrowthRate, s.PredictedBytes
		g.segments = [len(segmentStates)]float64{}
		for _, seg := range s.Segments {
			for k, st := range segmentStates {
				if seg.State == st {
					g.segments[k]++
					break
				}
			}
		}
		g.overCap, g.deferred = 0, 0
		if i < len(r.Streams) {
			if r.Streams[i].OverCap {
				g.overCap = 1
			}
			deferred["load"] += len(r.Streams[i].Deferred)
			g.deferred = float64(len(r.Streams[i].Deferred))
		}
	}
	m.streams.mu.Unlock()
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
	m.coldUp.Reset()
	m.streams.mu.Lock()
	defer m.streams.mu.Unlock()
	clear(m.streams.gauges)
	for _, s := range cfg.Streams {
		m.streams.gauge(s.Name).capB = float64(s.Archive.MaxHotBytes)
		m.streams.count(s.Name)
	}
}

// job counts a finished job.
func (m *metrics) job(op, stream, result string, bytes int64, took time.Duration) {
	m.streams.mu.Lock()
	c := &m.streams.count(stream).compactions
	if op == "archive" {
		c = &m.streams.count(stream).archivals
	}
	for k, r := range jobResults {
		if r == result {
			c[k]++
		}
	}
	m.streams.mu.Unlock()
	if result == "ok" {
		m.jobBytes.WithLabelValues(op).Add(float64(bytes))
		m.jobDuration.WithLabelValues(op).Observe(took.Seconds())
	}
}

// shrank counts bytes that vanished from a stream's shrinking segments.
func (m *metrics) shrank(stream string, bytes int64) {
	m.streams.mu.Lock()
	m.streams.count(stream).shrunk += float64(bytes)
	m.streams.mu.Unlock()
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

// jobResults are the values of the result label of compactions_total and
// archivals_total.
var jobResults = [...]string{"ok", "abandoned", "failed"}

// streamMetrics holds every series with a stream label as plain numbers, and
// makes them into metrics only when scraped. As prometheus vectors the 17
// series of a stream kept ~10 KB of labels, hashes and atomics per stream: 10
// MB of a daemon's resident set at 1,000 streams. The exposition is the same.
type streamMetrics struct {
	mu     sync.Mutex
	gauges map[string]*streamGauges // set by passes; a reload starts them over
	counts map[string]*streamCounts // never reset: a counter does not go back

	hot, growth, predicted, capB, segments, overCap, deferred *prometheus.Desc
	compactions, archivals, shrunk                            *prometheus.Desc
}

type streamGauges struct {
	capB                   float64 // from the config: set before any pass
	passed                 bool    // a pass scanned the stream: the rest are set
	hot, growth, predicted float64
	segments               [len(segmentStates)]float64
	overCap, deferred      float64
}

type streamCounts struct {
	compactions, archivals [len(jobResults)]float64
	shrunk                 float64
	created                time.Time // exposed as the counters' created timestamp, as vectors did
}

func newStreamMetrics(ns string) *streamMetrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, append([]string{"stream"}, labels...), nil)
	}
	return &streamMetrics{
		gauges:    map[string]*streamGauges{},
		counts:    map[string]*streamCounts{},
		hot:       d("stream_hot_bytes", "Bytes in the stream's segments in its hot dir."),
		growth:    d("stream_growth_bytes_per_second", "The stream's smoothed growth rate."),
		predicted: d("stream_predicted_bytes", "Hot bytes predicted at now + archive.time_to_archive."),
		capB:      d("stream_cap_bytes", "archive.max_hot_bytes of the stream."),
		segments:  d("stream_segments", "Segments of the stream by state.", "state"),
		overCap:   d("stream_over_cap_unarchivable", "1 while the stream's hot bytes are over its cap and nothing can be archived."),
		deferred:  d("stream_deferred_actions", "Actions of the stream decided by the last pass and held back (load)."),
		compactions: d("compactions_total",
			"Merges finished, by result: ok, abandoned (a writer changed an input; inputs intact), failed.", "result"),
		archivals: d("archivals_total",
			"Archivals finished, by result: ok, abandoned (a writer changed the segment), failed.", "result"),
		shrunk: d("shrunk_bytes_total", "Bytes that vanished from segments that got smaller (copytruncate, truncation)."),
	}
}

// gauge and count return a stream's entry, made if new; mu is held.
func (s *streamMetrics) gauge(stream string) *streamGauges {
	g := s.gauges[stream]
	if g == nil {
		g = &streamGauges{}
		s.gauges[stream] = g
	}
	return g
}

func (s *streamMetrics) count(stream string) *streamCounts {
	c := s.counts[stream]
	if c == nil {
		c = &streamCounts{created: time.Now()}
		s.counts[stream] = c
	}
	return c
}

// Describe implements prometheus.Collector.
func (s *streamMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.hot, s.growth, s.predicted, s.capB, s.segments, s.overCap, s.deferred,
		s.compactions, s.archivals, s.shrunk} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the series as of now, made at scrape time.
func (s *streamMetrics) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, created time.Time, labels ...string) {
		ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(d, prometheus.CounterValue, v, created, labels...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, g := range s.gauges {
		gauge(s.capB, g.capB, name)
		if !g.passed {
			continue
		}
		gauge(s.hot, g.hot, name)
		gauge(s.growth, g.growth, name)
		gauge(s.predicted, g.predicted, name)
		for k, st := range segmentStates {
			gauge(s.segments, g.segments[k], name, st.String())
		}
		gauge(s.overCap, g.overCap, name)
		gauge(s.deferred, g.deferred, name)
	}
	for name, c := range s.counts {
		for k, r := range jobResults {
			counter(s.compactions, c.compactions[k], c.created, name, r)
			counter(s.archivals, c.archivals[k], c.created, name, r)
		}
		counter(s.shrunk, c.shrunk, c.created, name)
	}
}
