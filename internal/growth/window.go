// Package growth learns how fast segments and streams grow and predicts their size
// at a horizon. It is pure: every function takes the time it should use, nothing
// reads a clock or the disk (persistence encodes to and from bytes).
package growth

import (
	"math"
	"time"
)

// Options shape every window. The zero value is replaced by the defaults.
type Options struct {
	Window     time.Duration // samples older than this are dropped; default 30m
	Alpha      float64       // weight decay per interval, newest first: (1-Alpha)^k; default 0.3
	MaxSamples int           // samples kept per window (memory bound); default 16
}

func (o Options) withDefaults() Options {
	if o.Window <= 0 {
		o.Window = 30 * time.Minute
	}
	if o.Alpha <= 0 || o.Alpha > 1 {
		o.Alpha = 0.3
	}
	if o.MaxSamples < 3 {
		o.MaxSamples = 16
	}
	return o
}

// sample is one observation of a monotone counter (a segment's size, or a
// stream's bytes appended so far) at a time in ns since the epoch.
type sample struct {
	t int64
	v int64
}

// Window is a sliding window of samples of a counter that only grows.
//
// Invariants: samples are in time order with non-decreasing values; at most
// MaxSamples are kept; samples[0] is the newest sample at or before now−Window
// once history is that long (so the window spans at least Window); a decrease of
// the counter restarts the window. Memory: 16 bytes per sample, at most
// 16×MaxSamples (256 with the default) plus the slice header; an idle counter
// keeps 2 samples, because consecutive zero-growth intervals are merged.
type Window struct {
	samples []sample
}

// Add records value v at time at. It returns true when v is below the last value:
// a foreign event (truncation, replacement) that restarts the window.
func (w *Window) Add(at time.Time, v int64, o Options) (restarted bool) {
	o = o.withDefaults()
	t := at.UnixNano()
	n := len(w.samples)
	if n > 0 && t < w.samples[n-1].t {
		return false // out of order (clock step back): ignore
	}
	if n > 0 && v < w.samples[n-1].v {
		w.samples = append(w.samples[:0], sample{t, v})
		return true
	}
	minGap := int64(o.Window) / int64(o.MaxSamples)
	switch {
	case n >= 2 && (t-w.samples[n-2].t < minGap ||
		(v == w.samples[n-1].v && w.samples[n-1].v == w.samples[n-2].v)):
		// Too close to the previous kept sample, or extending a zero-growth run:
		// move the newest sample forward instead of keeping another.
		w.samples[n-1] = sample{t, v}
	default:
		w.samples = append(w.samples, sample{t, v})
	}
	if len(w.samples) > o.MaxSamples {
		// Merge the two oldest intervals by dropping the oldest interior sample.
		w.samples = append(w.samples[:1], w.samples[2:]...)
	}
	edge := t - int64(o.Window)
	drop := 0
	for drop+1 < len(w.samples) && w.samples[drop+1].t <= edge {
		drop++
	}
	if drop > 0 {
		w.samples = append(w.samples[:0], w.samples[drop:]...)
	}
	return false
}

// Rate is the smoothed growth in units per second: over the intervals between
// consecutive samples, newest first (k = 0, 1, ...), each weighted (1−α)^k,
//
//	rate = Σ wₖ·Δvₖ / Σ wₖ·Δtₖ
//
// which is the EWMA of the interval rates when intervals are equal, and lets a
// short interval count only as much as its duration. Worked example, α = 0.3:
// intervals (newest first) of 10 s with +1000 B, 10 s with +3000 B give
// (1·1000 + 0.7·3000) / (1·10 + 0.7·10) = 3100/17 ≈ 182 B/s, below the plain
// average of 200 B/s because the newer, slower interval weighs more.
// Never negative (a decrease restarts the window); 0 with fewer than 2 samples.
func (w *Window) Rate(o Options) float64 {
	o = o.withDefaults()
	var num, den float64
	weight := 1.0
	for i := len(w.samples) - 1; i > 0; i-- {
		dt := float64(w.samples[i].t-w.samples[i-1].t) / 1e9
		dv := float64(w.samples[i].v - w.samples[i-1].v)
		num += weight * dv
		den += weight * dt
		weight *= 1 - o.Alpha
	}
	if den <= 0 || num <= 0 {
		return 0
	}
	return num / den
}

// flat reports whether every sample holds the same value: the rate is 0 and
// stays 0 until the value changes.
func (w *Window) flat() bool {
	for i := 1; i < len(w.samples); i++ {
		if w.samples[i].v != w.samples[0].v {
			return false
		}
	}
	return true
}

// last is the time of the newest sample, in ns since the epoch.
func (w *Window) last() (int64, bool) {
	if len(w.samples) == 0 {
		return 0, false
	}
	return w.samples[len(w.samples)-1].t, true
}

// Len is the number of samples kept.
func (w *Window) Len() int { return len(w.samples) }

// Predict returns size + rate × horizon, the forecast at now + horizon.
func Predict(size int64, rate float64, horizon time.Duration) float64 {
	if rate <= 0 || math.IsNaN(rate) {
		return float64(size)
	}
	return float64(size) + rate*horizon.Seconds()
}
