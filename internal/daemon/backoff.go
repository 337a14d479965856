package daemon

import "time"

// Back-off bounds: the first retry after a failure waits backoffMin, each
// further failure doubles the wait, up to backoffMax.
const (
	backoffMin = time.Second
	backoffMax = 5 * time.Minute
)

// backoff spaces out retries of something that keeps failing (a full cold dir,
// ENOSPC on hot): 1 s, doubling to 5 min; only a success resets it — being able
// to open a directory is not a success. It also says when a failure is worth a
// log line: the first time an error is seen, not each time it repeats (the
// repeats are counted and reported with the next change). Not safe for
// concurrent use; its owner locks.
type backoff struct {
	wait    time.Duration
	next    time.Time
	err     error
	repeats int // failures with the same error since it was logged
}

// ready reports whether a new attempt may start now.
func (b *backoff) ready(now time.Time) bool { return b.err == nil || !now.Before(b.next) }

// fail records a failure at now. It returns whether the error is new (log it)
// and how often the previous one repeated since it was logged.
func (b *backoff) fail(now time.Time, err error) (isNew bool, repeated int) {
	b.wait = min(max(2*b.wait, backoffMin), backoffMax)
	b.next = now.Add(b.wait)
	if b.err != nil && b.err.Error() == err.Error() {
		b.repeats++
		b.err = err
		return false, b.repeats
	}
	repeated, b.repeats, b.err = b.repeats, 0, err
	return true, repeated
}

// succeed records a success: the next failure starts from backoffMin again.
// It returns whether it was failing before, and how often the last error
// repeated since it was logged.
func (b *backoff) succeed() (wasFailing bool, repeated int) {
	wasFailing, repeated = b.err != nil, b.repeats
	*b = backoff{}
	return wasFailing, repeated
}
