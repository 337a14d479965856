package loadprobe

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParsePSI(t *testing.T) {
	v, err := parsePSI(strings.NewReader("some avg10=72.50 avg60=40.10 avg300=12.00 total=1\nfull avg10=60.00 avg60=0 avg300=0 total=0\n"))
	if err != nil || v != 0.725 {
		t.Fatalf("parsePSI = %v %v", v, err)
	}
	if _, err := parsePSI(strings.NewReader("full avg10=1.00\n")); err == nil {
		t.Fatal("a file without a some line was accepted")
	}
	if _, err := parsePSI(strings.NewReader("some avg10=x\n")); err == nil {
		t.Fatal("a malformed avg10 was accepted")
	}
}

func TestFixturePressureFiles(t *testing.T) {
	cases := []struct {
		name, root  string
		io, atLeast float64
	}{
		{"an idle machine's pressure adds nothing", "testdata/idle", 0, 0},
		{"io stalls 72.5% of the time: L is at least 0.725", "testdata/stalled", 0.725, 0.725},
		{"a kernel without PSI leaves the PSI signals out", "testdata/nopsi", -1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := New(Options{Enabled: true, ProcRoot: c.root})
			p.Sample()
			s := p.Signals()
			if s.PSIIO != c.io {
				t.Fatalf("psi io = %v, want %v", s.PSIIO, c.io)
			}
			if l := p.Load(); l < c.atLeast || l > 1 {
				t.Fatalf("L = %v, want in [%v, 1]", l, c.atLeast)
			}
		})
	}
}

func TestCombineAndBusyFraction(t *testing.T) {
	if l := Combine(Signals{CPU: 0.2, Load1: 3, PSICPU: -1, PSIIO: 0.1, PSIMem: -1}); l != 1 {
		t.Fatalf("Combine clamps to 1, got %v", l)
	}
	if l := Combine(Signals{CPU: 0.2, Load1: 0.1, PSICPU: -1, PSIIO: -1, PSIMem: 0.4}); l != 0.4 {
		t.Fatalf("Combine = %v, want the max 0.4", l)
	}
	a := cpu.TimesStat{User: 10, System: 10, Idle: 80}
	b := cpu.TimesStat{User: 40, System: 20, Idle: 140}
	if f := busyFraction(a, b); f != 0.4 {
		t.Fatalf("busyFraction = %v, want 0.4 (40 busy of 100)", f)
	}
	if f := busyFraction(b, a); f != 0 {
		t.Fatalf("busyFraction backwards = %v", f)
	}
}

func TestDisabledProbeIsZero(t *testing.T) {
	p := New(Options{Enabled: false, ProcRoot: "testdata/stalled"})
	p.Start()
	defer p.Close()
	p.Sample()
	if l := p.Load(); l != 0 {
		t.Fatalf("disabled probe L = %v", l)
	}
}

// TestLoadRisesUnderARealBusyLoop burns every CPU and waits (with a deadline) for
// the probe to report L above 0.5.
func TestLoadRisesUnderARealBusyLoop(t *testing.T) {
	p := New(Options{Enabled: true, Interval: 50 * time.Millisecond})
	p.Start()
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n := runtime.NumCPU()
	for i := 0; i < n; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			x := 0
			for ctx.Err() == nil {
				for j := 0; j < 1e5; j++ {
					x += j
				}
			}
			_ = x
		}()
	}
	defer func() {
		cancel()
		for i := 0; i < n; i++ {
			<-done
		}
	}()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if l := p.Load(); l > 0.5 {
				t.Logf("L = %.2f under %d busy loops (signals %+v)", l, n, p.Signals())
				return
			}
		case <-deadline:
			t.Fatalf("L = %.2f after 20 s of %d busy loops (signals %+v)", p.Load(), n, p.Signals())
		}
	}
}
