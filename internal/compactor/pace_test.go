package compactor

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"
)

// fakeClock advances only when a waiter asks it to wait: After(d) moves time by d
// and fires at once, so a pacer's schedule plays out instantly and exactly.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now = c.now.Add(d)
	t := c.now
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- t
	return ch
}

func copyThrough(t *testing.T, p *Pacer, c *fakeClock, total, chunk int) time.Duration {
	start := c.Now()
	for done := 0; done < total; done += chunk {
		if err := p.Wait(context.Background(), chunk); err != nil {
			t.Fatal(err)
		}
	}
	return c.Now().Sub(start)
}

func TestPacerScalesWithLoadAndKeepsAFloor(t *testing.T) {
	const MiB = 1 << 20
	cases := []struct {
		name string
		load float64
		want time.Duration // to copy 64 MiB at max_rate 16 MiB/s
	}{
		{"an idle host copies at max_rate", 0, 4 * time.Second},
		{"at load 0.5 copies take twice as long", 0.5, 8 * time.Second},
		{"at load 1 copies still finish, at the floor of 1% of max_rate", 1, 400 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeClock{now: time.Unix(0, 0)}
			p := NewPacer(16*MiB, MiB, c)
			p.SetLoad(tc.load)
			got := copyThrough(t, p, c, 64*MiB, MiB)
			// The first bucketful (1/8 s of budget) rides the initial burst.
			if math.Abs(got.Seconds()-tc.want.Seconds()) > tc.want.Seconds()/32+0.2 {
				t.Fatalf("64 MiB took %v, want about %v", got, tc.want)
			}
		})
	}
}

func TestPacerChargesLargeRequestsInFull(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	p := NewPacer(1<<20, 1<<20, c) // 1 MiB/s: bucket of 128 KiB
	if got := copyThrough(t, p, c, 16<<20, 8<<20); got < 15*time.Second || got > 16*time.Second {
		t.Fatalf("16 MiB in 8 MiB requests at 1 MiB/s took %v, want about 16 s", got)
	}
}

func TestPacerUnlimitedAndCancel(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	p := NewPacer(0, 1<<20, c)
	if d := copyThrough(t, p, c, 100<<20, 1<<20); d != 0 {
		t.Fatalf("unlimited pacer delayed %v", d)
	}
	p = NewPacer(1<<20, 1<<20, realClock{})
	_ = p.Wait(context.Background(), 1<<20) // drain the burst
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ctx, 1<<20); err == nil {
		t.Fatal("Wait ignored a cancelled context")
	}
}
