package fsx

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrWriting means a process has the file open for writing: the lease was refused.
var ErrWriting = errors.New("fsx: open for writing by another process")

// ErrLeaseBroken means a process opened a leased file for writing during a job.
var ErrLeaseBroken = errors.New("fsx: a writer opened the file during the job")

// Leases hands out read leases and tells their holders when the kernel asks for
// one back. The kernel signals a lease break with SIGIO to the owner process; a
// signal does not say which fd, so on every SIGIO each held lease is asked with
// F_GETLEASE whether it is being broken. Start it once; Close stops it.
type Leases struct {
	sig  chan os.Signal
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu struct {
		sync.Mutex
		held map[*Lease]struct{}
	}
}

// NewLeases starts listening for SIGIO.
func NewLeases() *Leases {
	l := &Leases{sig: make(chan os.Signal, 1), done: make(chan struct{})}
	l.mu.held = map[*Lease]struct{}{}
	signal.Notify(l.sig, syscall.SIGIO)
	l.wg.Add(1)
	go l.loop()
	return l
}

func (l *Leases) loop() {
	defer l.wg.Done()
	for {
		select {
		case <-l.done:
			return
		case <-l.sig:
			l.Poll()
		}
	}
}

// Poll checks every held lease for a pending break and releases broken ones at
// once (so the writer's open proceeds). Called on SIGIO; callable any time.
func (l *Leases) Poll() {
	l.mu.Lock()
	held := make([]*Lease, 0, len(l.mu.held))
	for h := range l.mu.held {
		held = append(held, h)
	}
	l.mu.Unlock()
	for _, h := range held {
		h.check()
	}
}

// Close stops listening. Held leases stay valid until released. Safe to call twice.
func (l *Leases) Close() {
	l.once.Do(func() {
		signal.Stop(l.sig)
		close(l.done)
		l.wg.Wait()
	})
}

// Lease is a read lease held on an open input file.
type Lease struct {
	File   *os.File
	Stat   Stat
	owner  *Leases
	mu     sync.Mutex
	broken bool
	closed bool
}

// Take opens name (checked to be the file want) and takes a read lease on it.
// It fails with ErrWriting when some process has it open for writing.
func (l *Leases) Take(d *Dir, name string, want Stat) (*Lease, error) {
	f, err := d.OpenRead(name, want)
	if err != nil {
		return nil, err
	}
	fd := uintptr(f.Fd())
	if _, err := unix.FcntlInt(fd, unix.F_SETOWN, os.Getpid()); err != nil {
		f.Close()
		return nil, fmt.Errorf("set lease owner on %s: %w", f.Name(), err)
	}
	if _, err := unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) {
			return nil, fmt.Errorf("lease %s: %w", f.Name(), ErrWriting)
		}
		return nil, fmt.Errorf("lease %s: %w (%v)", f.Name(), ErrLeaseUnsupported, err)
	}
	st, err := Fstat(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	h := &Lease{File: f, Stat: st, owner: l}
	l.mu.Lock()
	l.mu.held[h] = struct{}{}
	l.mu.Unlock()
	return h, nil
}

func (h *Lease) check() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.broken {
		return
	}
	t, err := unix.FcntlInt(h.File.Fd(), unix.F_GETLEASE, 0)
	if err != nil || t != unix.F_RDLCK {
		// Being broken (the target type is F_UNLCK): give it back now.
		h.broken = true
		_, _ = unix.FcntlInt(h.File.Fd(), unix.F_SETLEASE, unix.F_UNLCK)
	}
}

// Broken reports whether a writer has opened the file since the lease was taken.
// It polls the kernel too, so it is right even if SIGIO was coalesced.
func (h *Lease) Broken() bool {
	h.check()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.broken
}

// Release gives the lease back and closes the file. Safe to call twice.
func (h *Lease) Release() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.owner.mu.Lock()
	delete(h.owner.mu.held, h)
	h.owner.mu.Unlock()
	_, _ = unix.FcntlInt(h.File.Fd(), unix.F_SETLEASE, unix.F_UNLCK)
	return h.File.Close()
}
