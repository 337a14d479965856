package daemon

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestColdTierBackOffDoublesUntilASuccess: a cold dir that opens fine but
// where every archival fails (full) is retried after 1 s, 2 s, 4 s, ... up to
// 5 min — opening the directory is not a success — and only an archival that
// works starts over from 1 s. (It used to stay at 1 s: 28 retries in 30 s.)
func TestColdTierBackOffDoublesUntilASuccess(t *testing.T) {
	c := newColdTier(t.TempDir(), zap.NewNop())
	defer c.close()
	now := time.Unix(1_700_000_000, 0)
	full := errors.New("no space left on device")
	var waits []time.Duration
	for i := 0; i < 11; i++ {
		if _, err := c.open(now); err != nil {
			t.Fatalf("attempt %d: open refused after the wait: %v", i, err)
		}
		c.fail(now, full)
		waits = append(waits, c.b.wait)
		if _, err := c.open(now.Add(c.b.wait - time.Millisecond)); err == nil {
			t.Fatalf("attempt %d: open allowed before the wait of %s was over", i, c.b.wait)
		}
		now = now.Add(c.b.wait)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, w := range want {
		if waits[i] != w*time.Second {
			t.Fatalf("waits %v, want %v seconds", waits, want)
		}
	}
	c.succeeded()
	c.fail(now, full)
	if c.b.wait != time.Second {
		t.Fatalf("after a success the wait is %s, want 1s", c.b.wait)
	}
}

// TestBackoffLogsARepeatedErrorOnce: the same error again is not new (no log
// line), and the count of repeats comes with the next change.
func TestBackoffLogsARepeatedErrorOnce(t *testing.T) {
	var b backoff
	now := time.Unix(0, 0)
	if isNew, _ := b.fail(now, errors.New("ENOSPC")); !isNew {
		t.Fatal("first failure not new")
	}
	for i := 0; i < 5; i++ {
		if isNew, _ := b.fail(now, errors.New("ENOSPC")); isNew {
			t.Fatal("a repeat counted as new")
		}
	}
	if isNew, repeated := b.fail(now, errors.New("EIO")); !isNew || repeated != 5 {
		t.Fatalf("a new error: new %v, repeated %d; want true, 5", isNew, repeated)
	}
	if was, _ := b.succeed(); !was || !b.ready(now) {
		t.Fatal("succeed did not reset")
	}
}
