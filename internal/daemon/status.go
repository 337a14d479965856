package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/control"
)

// Status is what `status --json` prints: the running daemon's own account of
// itself (README "status").
type Status struct {
	Version         string       `json:"version"`
	PID             int          `json:"pid"`
	Started         string       `json:"started"`
	UptimeSeconds   float64      `json:"uptime_seconds"`
	LastPass        string       `json:"last_pass"`
	LastPassSeconds float64      `json:"last_pass_seconds"` // its duration
	ScanInterval    float64      `json:"scan_interval_seconds"`
	Load            float64      `json:"load"`
	Streams         []StreamLine `json:"streams"`
	Jobs            []JobLine    `json:"jobs"`   // in flight
	Recent          []JobLine    `json:"recent"` // the last finished, newest last
	ColdTiers       []TierLine   `json:"cold_tiers"`
	Journal         JournalLine  `json:"journal"`
}

// StreamLine is one stream of a Status.
type StreamLine struct {
	Name           string   `json:"name"`
	Error          string   `json:"error,omitempty"`
	HotBytes       int64    `json:"hot_bytes"`
	CapBytes       int64    `json:"cap_bytes"`
	PredictedBytes float64  `json:"predicted_bytes"`
	GrowthRate     float64  `json:"growth_rate"`
	Segments       int      `json:"segments"`
	OverCap        bool     `json:"over_cap"`
	Actions        []Action `json:"actions"`  // decided by the last pass
	Deferred       []Action `json:"deferred"` // decided and held back, with the reason
	Notes          []string `json:"notes"`
	ShrunkBytes    int64    `json:"shrunk_bytes"`
}

// JobLine is a running or finished job.
type JobLine struct {
	Op       string   `json:"op"` // compact|archive
	Stream   string   `json:"stream"`
	Segments []string `json:"segments"`
	Output   string   `json:"output"`
	Started  string   `json:"started"`
	Seconds  float64  `json:"seconds,omitempty"` // how long it took (finished jobs)
	Result   string   `json:"result,omitempty"`  // ok|abandoned|failed (finished jobs)
	Error    string   `json:"error,omitempty"`
}

// TierLine is one cold dir.
type TierLine struct {
	Path  string `json:"path"`
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
	Found string `json:"found,omitempty"` // an object store: what the start-up probe found (If-None-Match honoured?)
}

// JournalLine is the intent journal's health.
type JournalLine struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	Pending int    `json:"pending"` // operations not yet done
}

// status builds the Status from the last pass (on the loop's goroutine).
func (d *Daemon) statusNow() *Status {
	now := d.opts.Now()
	st := &Status{Version: d.opts.Version, PID: os.Getpid(), Started: d.started.UTC().Format(time.RFC3339),
		UptimeSeconds: now.Sub(d.started).Seconds(), ScanInterval: d.cfg.ScanInterval.Seconds(),
		Streams: []StreamLine{}, Jobs: []JobLine{}, Recent: []JobLine{}, ColdTiers: []TierLine{}}
	if r := d.lastReport; r != nil {
		st.LastPass, st.LastPassSeconds, st.Load = r.Time, d.lastPass.Seconds(), r.Load
		for _, s := range r.Streams {
			st.Streams = append(st.Streams, StreamLine{Name: s.Name, Error: s.Error, HotBytes: s.HotBytes,
				CapBytes: s.CapBytes, PredictedBytes: s.PredictedBytes, GrowthRate: s.GrowthRate,
				Segments: s.SegmentCount, OverCap: s.OverCap, Actions: s.Actions, Deferred: s.Deferred,
				Notes: s.Notes, ShrunkBytes: d.shrunkBytes[s.Name]})
		}
	}
	if d.exec != nil {
		st.Jobs, st.Recent = d.exec.jobs()
	}
	for _, p := range sortedTiers(d.tiers) {
		t := d.tiers[p]
		msg := t.status()
		t.mu.Lock()
		found := t.found
		t.mu.Unlock()
		st.ColdTiers = append(st.ColdTiers, TierLine{Path: p, Up: msg == "", Error: msg, Found: found})
	}
	st.Journal = JournalLine{OK: d.journalErr == nil && d.journal != nil, Pending: len(d.pending)}
	if d.journalErr != nil {
		st.Journal.Error = d.journalErr.Error()
	}
	return st
}

// planNow is the last pass's report with a row per segment (on the loop's
// goroutine: the snapshot it reads is the loop's).
func (d *Daemon) planNow() *Report {
	if d.lastReport == nil {
		return nil
	}
	r := *d.lastReport
	r.Source, r.PID = "daemon", os.Getpid()
	r.Streams = slices.Clone(r.Streams)
	for i := range r.Streams {
		if i < len(d.lastStreams) && d.lastStreams[i].Config.Name == r.Streams[i].Name {
			r.Streams[i].Segments = segmentRows(d.lastStreams[i]) // copied: the loop's next pass rebuilds the snapshot
			r.Streams[i].segs = nil
		}
	}
	return &r
}

// ask runs fn on the loop's goroutine (which owns the daemon's state) and
// returns its answer, or an error when the loop does not take it within 10 s
// (stalled, or busy with a long pass).
func (d *Daemon) ask(ctx context.Context, fn func() any) (any, error) {
	reply := make(chan any, 1)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case d.asks <- func() { reply <- fn() }:
	case <-ctx.Done():
		return nil, fmt.Errorf("the daemon's main loop did not answer: %w", ctx.Err())
	}
	select {
	case v := <-reply:
		return v, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("the daemon's main loop did not answer: %w", ctx.Err())
	}
}

// handler serves the control socket: /v1/status, /v1/plan, /metrics.
func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	answer := func(fn func() any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			v, err := d.ask(r.Context(), fn)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			if v == nil {
				http.Error(w, "no pass has finished yet", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			writeJSON(w, v)
		}
	}
	mux.Handle("GET /v1/status", answer(func() any { return d.statusNow() }))
	mux.Handle("GET /v1/plan", answer(func() any {
		if r := d.planNow(); r != nil {
			return r
		}
		return nil
	}))
	mux.Handle("GET /metrics", d.metricsHandler())
	return mux
}

func (d *Daemon) metricsHandler() http.Handler {
	return promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(d.log)})
}

func writeJSON(w io.Writer, v any) {
	if r, ok := v.(*Report); ok {
		_ = r.WriteJSON(w) // the same bytes, a third of the time at 100,000 rows
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serveControl starts the control socket and, if configured, metrics.listen.
// Neither is fatal: the daemon's work does not depend on being watched.
func (d *Daemon) serveControl(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var done []chan struct{}
	serve := func(what string, l net.Listener, h http.Handler) {
		ch := make(chan struct{})
		done = append(done, ch)
		go func() {
			defer close(ch)
			if err := control.Serve(ctx, l, h); err != nil {
				d.log.Error(what+" stopped", zap.Error(err))
			}
		}()
	}
	path := control.SocketPath(d.cfg.StateDir)
	if l, err := control.Listen(path); err != nil {
		d.log.Error("no control socket: plan and status cannot ask this daemon", zap.Error(err))
	} else {
		serve("control socket", l, d.handler())
	}
	if addr := d.cfg.Metrics.Listen; addr != "" {
		if l, err := net.Listen("tcp", addr); err != nil {
			d.log.Error("cannot serve metrics.listen", zap.String("listen", addr), zap.Error(err))
		} else {
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", d.metricsHandler())
			serve("metrics.listen", l, mux)
			d.log.Info("serving /metrics", zap.String("listen", l.Addr().String()))
		}
	}
	return func() {
		cancel()
		for _, ch := range done {
			<-ch
		}
	}
}

// WriteTable writes the status for people.
func (st *Status) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "logcompactd %s, pid %d, up %s (since %s)\n", st.Version, st.PID,
		(time.Duration(st.UptimeSeconds) * time.Second).String(), st.Started)
	if st.LastPass == "" {
		fmt.Fprintln(w, "no pass finished yet")
	} else {
		fmt.Fprintf(w, "last pass %s, took %s (scan_interval %s), system load L=%.2f\n", st.LastPass,
			time.Duration(st.LastPassSeconds*float64(time.Second)).Round(time.Microsecond),
			time.Duration(st.ScanInterval*float64(time.Second)), st.Load)
	}
	j := "ok"
	if !st.Journal.OK {
		j = "NOT OK: merging and archival are off: " + st.Journal.Error
	}
	fmt.Fprintf(w, "journal %s, %d operations pending\n", j, st.Journal.Pending)
	for _, t := range st.ColdTiers {
		if t.Up {
			fmt.Fprintf(w, "cold %s up\n", t.Path)
			if t.Found != "" {
				fmt.Fprintf(w, "  %s\n", t.Found)
			}
		} else {
			fmt.Fprintf(w, "cold %s DOWN: %s\n", t.Path, t.Error)
		}
	}
	for _, s := range st.Streams {
		fmt.Fprintf(w, "\nstream %s\n", s.Name)
		if s.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", s.Error)
			continue
		}
		fmt.Fprintf(w, "  hot %s of %s cap, predicted %s, growth %s/s, %d segments\n", Bytes(float64(s.HotBytes)),
			Bytes(float64(s.CapBytes)), Bytes(s.PredictedBytes), Bytes(s.GrowthRate), s.Segments)
		if s.OverCap {
			fmt.Fprintln(w, "  !! over the cap and nothing can be archived")
		}
		for _, a := range s.Actions {
			fmt.Fprintf(w, "  decided %s %s => %s: %s\n", a.Kind, listNames(a.Segments), quoteName(a.Output), a.Reason)
		}
		for _, a := range s.Deferred {
			fmt.Fprintf(w, "  deferred %s %s: %s\n", a.Kind, listNames(a.Segments), a.Reason)
		}
		if len(s.Actions) == 0 {
			for _, n := range s.Notes {
				fmt.Fprintf(w, "  %s\n", n)
			}
		}
		if s.ShrunkBytes > 0 {
			fmt.Fprintf(w, "  %s vanished from segments that shrank (copytruncate?)\n", Bytes(float64(s.ShrunkBytes)))
		}
	}
	fmt.Fprintf(w, "\n%d jobs running\n", len(st.Jobs))
	for _, jb := range st.Jobs {
		fmt.Fprintf(w, "  %s %s %s => %s since %s\n", jb.Op, jb.Stream, listNames(jb.Segments), quoteName(jb.Output), jb.Started)
	}
	if len(st.Recent) > 0 {
		fmt.Fprintf(w, "last %d jobs\n", len(st.Recent))
	}
	for _, jb := range st.Recent {
		line := fmt.Sprintf("  %s %s %s %s => %s in %.3fs", jb.Result, jb.Op, jb.Stream, listNames(jb.Segments), quoteName(jb.Output), jb.Seconds)
		if jb.Error != "" {
			line += ": " + jb.Error
		}
		fmt.Fprintln(w, line)
	}
	return nil
}
