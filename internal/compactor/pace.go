package compactor

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Clock is the time source of the pacer; tests pass a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Pacer is the one token bucket shared by every copy: it lets bytes through at
// max_rate × (1 − L), never below Floor, so a busy host slows copies down but a
// started job always finishes. Copies call Wait before each chunk.
type Pacer struct {
	clock Clock
	mu    sync.Mutex
	lim   *rate.Limiter
	max   float64 // bytes/s, 0 = unlimited
	floor float64
	burst int
}

// NewPacer returns a pacer for maxRate bytes/s (0 = unlimited). Its bucket holds
// an eighth of a second of budget (64 KiB to maxBurst bytes), so an idle pacer
// does not let a large first chunk through for free. The floor is 1% of
// maxRate, at least 64 KiB/s.
func NewPacer(maxRate float64, maxBurst int, clock Clock) *Pacer {
	if clock == nil {
		clock = realClock{}
	}
	burst := maxBurst
	if maxRate > 0 {
		burst = int(min(max(maxRate/8, 64<<10), float64(maxBurst)))
	}
	p := &Pacer{clock: clock, burst: burst, max: maxRate, floor: max(maxRate/100, 64<<10)}
	p.lim = rate.NewLimiter(rate.Inf, burst)
	p.SetLoad(0)
	return p
}

// Limited reports whether a max_rate applies.
func (p *Pacer) Limited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max > 0
}

// SetMax changes max_rate (on reload).
func (p *Pacer) SetMax(maxRate float64, load float64) {
	p.mu.Lock()
	p.max, p.floor = maxRate, max(maxRate/100, 64<<10)
	p.mu.Unlock()
	p.SetLoad(load)
}

// SetLoad rescales the rate for system load L in [0,1].
func (p *Pacer) SetLoad(load float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.max <= 0 {
		p.lim.SetLimitAt(p.clock.Now(), rate.Inf)
		return
	}
	r := max(p.max*(1-min(max(load, 0), 1)), p.floor)
	p.lim.SetLimitAt(p.clock.Now(), rate.Limit(r))
}

// Wait blocks until n bytes may be copied, or ctx ends. Large n is charged in
// bucket-sized steps, all of it.
func (p *Pacer) Wait(ctx context.Context, n int) error {
	for n > 0 {
		p.mu.Lock()
		step := min(n, p.burst)
		now := p.clock.Now()
		r := p.lim.ReserveN(now, step)
		p.mu.Unlock()
		n -= step
		d := r.DelayFrom(now)
		if d <= 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			continue
		}
		select {
		case <-p.clock.After(d):
		case <-ctx.Done():
			r.CancelAt(p.clock.Now())
			return ctx.Err()
		}
	}
	return ctx.Err()
}
