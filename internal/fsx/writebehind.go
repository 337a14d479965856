package fsx

import (
	"os"

	"golang.org/x/sys/unix"
)

const (
	// WriteBehindBytes is how much a job writes between requests to the kernel to
	// start writing its output to disk. Small requests keep a paced job's writes
	// as even as its pace: a writer's write+fdatasync every 2 ms beside a
	// 64 MiB/s stream of writes, on the virtio disk measured, read 0.4-0.6 ms at
	// p99 with 256 KiB requests, 4 ms with 1 MiB ones (from ~600 MB written on).
	WriteBehindBytes = 256 << 10
	// WriteBehindLag is how much of the output may be in flight (dirty or under
	// writeback) before the job waits for the oldest of it.
	WriteBehindLag = 8 << 20
)

// WriteBehind keeps a job's output from piling up in the page cache (what
// Pebble calls bytes_per_sync): every WriteBehindBytes written it starts
// writeback of the new range (sync_file_range WRITE, asynchronous), and waits
// for the writeback of what lies more than WriteBehindLag behind
// (WAIT_BEFORE). The disk then sees the job's writes at the job's paced rate,
// with at most ~WriteBehindLag outstanding, and the final fsync has little left
// to flush — instead of a burst of the whole output that stalls every other
// writer's fsync on the same disk. Waiting only for old ranges keeps the copy and
// the disk working in parallel. It is advisory: durability still comes from the
// fsync; a file that does not support sync_file_range just skips it.
//
// Use it as the io.Writer in front of the file (then it counts what passes), or
// call Advance after writing to the file by other means (copy_file_range).
type WriteBehind struct {
	f       *os.File
	size    int64 // bytes written through Write
	started int64 // writeback requested for [0, started)
	off     bool
}

// Write writes p to the file and advances.
func (w *WriteBehind) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.size += int64(n)
	w.Advance(w.size)
	return n, err
}

// NewWriteBehind starts tracking f, whose first start bytes are already written.
func NewWriteBehind(f *os.File, start int64) *WriteBehind {
	return &WriteBehind{f: f, size: start, started: start}
}

// Advance tells how many bytes the file holds now.
func (w *WriteBehind) Advance(size int64) {
	if w == nil || w.off || size-w.started < WriteBehindBytes {
		return
	}
	fd := int(w.f.Fd())
	if old := w.started - WriteBehindLag; old > 0 {
		if err := unix.SyncFileRange(fd, 0, old, unix.SYNC_FILE_RANGE_WAIT_BEFORE); err != nil {
			w.off = true
			return
		}
	}
	if err := unix.SyncFileRange(fd, w.started, size-w.started, unix.SYNC_FILE_RANGE_WRITE); err != nil {
		w.off = true // ESPIPE, EINVAL, ENOSYS: not for this file; the fsync does it all
		return
	}
	w.started = size
}
