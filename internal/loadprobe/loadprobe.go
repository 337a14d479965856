// Package loadprobe measures system load as one number L in [0,1]:
//
//	L = max(CPU busy fraction, PSI cpu/io/memory "some avg10" / 100, load1 / CPUs)
//
// each clamped to [0,1], sampled every Interval and smoothed (EWMA, weight 0.5 on
// the newest sample). CPU times and the load average come from gopsutil v4; PSI
// from /proc/pressure where the kernel has it. I/O (sample) is separate from the
// parsing and arithmetic (parsePSI, busyFraction, Combine), which are tested on
// fixtures.
package loadprobe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/load"
	"go.uber.org/zap"
)

// Options configure a Probe. The zero value samples every 5s from /proc.
type Options struct {
	Enabled  bool          // false: L is always 0 and nothing is sampled
	Interval time.Duration // sampling period; default 5s
	ProcRoot string        // where pressure/ lives; default "/proc"
	Logger   *zap.Logger
}

// Signals are the normalised inputs of L, each in [0,1] (PSI fields are -1 when
// the kernel has no /proc/pressure).
type Signals struct {
	CPU    float64 `json:"cpu"`
	Load1  float64 `json:"load1_per_cpu"`
	PSICPU float64 `json:"psi_cpu"`
	PSIIO  float64 `json:"psi_io"`
	PSIMem float64 `json:"psi_memory"`
}

// Combine is L for one set of signals: the largest, clamped to [0,1].
func Combine(s Signals) float64 {
	l := 0.0
	for _, v := range []float64{s.CPU, s.Load1, s.PSICPU, s.PSIIO, s.PSIMem} {
		if !math.IsNaN(v) && v > l {
			l = v
		}
	}
	return math.Min(l, 1)
}

// Probe samples load in its own goroutine between Start and Close.
type Probe struct {
	opts  Options
	log   *zap.Logger
	ncpu  int
	stop  chan struct{}
	wg    sync.WaitGroup
	close sync.Once

	mu struct {
		sync.Mutex
		l       float64
		signals Signals
		prev    *cpu.TimesStat
		primed  bool
	}
}

// New returns a probe; call Start to begin sampling.
func New(o Options) *Probe {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	n, err := cpu.Counts(true)
	if err != nil || n < 1 {
		n = runtime.NumCPU()
	}
	return &Probe{opts: o, log: o.Logger, ncpu: n, stop: make(chan struct{})}
}

// Start takes a first sample and samples every Interval until Close.
func (p *Probe) Start() {
	if !p.opts.Enabled {
		return
	}
	p.Sample()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.Sample()
			}
		}
	}()
}

// Close stops sampling and waits for the goroutine. Safe to call twice.
func (p *Probe) Close() {
	p.close.Do(func() { close(p.stop); p.wg.Wait() })
}

// Load is the current smoothed L in [0,1] (0 when disabled).
func (p *Probe) Load() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.l
}

// Signals are the latest raw signals.
func (p *Probe) Signals() Signals {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.signals
}

// Sample reads every signal once and folds it into L. The CPU busy fraction is
// measured since the previous Sample (0 on the first).
func (p *Probe) Sample() {
	if !p.opts.Enabled {
		return
	}
	s := Signals{PSICPU: -1, PSIIO: -1, PSIMem: -1}
	times, err := cpu.TimesWithContext(context.Background(), false)
	var cur *cpu.TimesStat
	if err == nil && len(times) > 0 {
		cur = &times[0]
	}
	if avg, err := load.AvgWithContext(context.Background()); err == nil {
		s.Load1 = clamp(avg.Load1 / float64(p.ncpu))
	}
	for _, r := range []struct {
		name string
		dst  *float64
	}{{"cpu", &s.PSICPU}, {"io", &s.PSIIO}, {"memory", &s.PSIMem}} {
		if v, err := readPSI(filepath.Join(p.opts.ProcRoot, "pressure", r.name)); err == nil {
			*r.dst = v
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur != nil && p.mu.prev != nil {
		s.CPU = busyFraction(*p.mu.prev, *cur)
	}
	p.mu.prev = cur
	l := Combine(s)
	if p.mu.primed {
		l = 0.5*l + 0.5*p.mu.l
	}
	p.mu.l, p.mu.signals, p.mu.primed = l, s, true
}

// busyFraction is the share of CPU time between two readings that was not idle
// or waiting for I/O, in [0,1].
func busyFraction(a, b cpu.TimesStat) float64 {
	total := func(t cpu.TimesStat) float64 {
		// guest time is already counted in user time on Linux
		return t.User + t.Nice + t.System + t.Idle + t.Iowait + t.Irq + t.Softirq + t.Steal
	}
	idle := func(t cpu.TimesStat) float64 { return t.Idle + t.Iowait }
	dt := total(b) - total(a)
	if dt <= 0 {
		return 0
	}
	return clamp(((dt) - (idle(b) - idle(a))) / dt)
}

func readPSI(path string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parsePSI(f)
}

// parsePSI reads "some avg10=1.23 avg60=... total=..." and returns avg10/100.
func parsePSI(r io.Reader) (float64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "some" {
			continue
		}
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(f, "avg10="); ok {
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, fmt.Errorf("parse psi avg10 %q: %w", v, err)
				}
				return clamp(x / 100), nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("psi: no \"some avg10=\" field")
}

func clamp(x float64) float64 {
	if math.IsNaN(x) || x < 0 {
		return 0
	}
	return math.Min(x, 1)
}
