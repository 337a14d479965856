package fsx

import "time"

// Hooks are what a journaled job needs besides the disk: a clock, and a hook
// called at every named step of its protocol ("merge:committed", ...), which
// tests use to crash or pause there. The zero value uses time.Now and no hook.
type Hooks struct {
	Now   func() time.Time
	Fault func(point string)
}

// Step reports reaching a named step.
func (h Hooks) Step(point string) {
	if h.Fault != nil {
		h.Fault(point)
	}
}

// Clock returns the current time.
func (h Hooks) Clock() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}
