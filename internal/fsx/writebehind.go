package fsx

import (
	"os"

	"golang.org/x/sys/unix"
)

// WriteBehindBytes is how much a job may write before it asks the kernel to
// start writing it to disk.
const WriteBehindBytes = 1 << 20

// WriteBehind keeps a job's output from piling up in the page cache (what
// Pebble calls bytes_per_sync): every WriteBehindBytes written it waits for the
// writeback it started last time and starts writeback of everything written
// since (sync_file_range WAIT_BEFORE|WRITE over the file so far). The disk then
// sees the job's writes at the job's paced rate, and the final fsync has little
// left to flush, instead of a burst of the whole output that stalls every other
// writer's fsync on the same disk. It is advisory: durability still comes from
// the fsync; a filesystem without sync_file_range just skips it.
type WriteBehind struct {
	f      *os.File
	synced int64
	off    bool
}

// NewWriteBehind starts tracking f, whose first start bytes are already written.
func NewWriteBehind(f *os.File, start int64) *WriteBehind {
	return &WriteBehind{f: f, synced: start}
}

// Advance tells how many bytes the file holds now.
func (w *WriteBehind) Advance(size int64) {
	if w == nil || w.off || size-w.synced < WriteBehindBytes {
		return
	}
	err := unix.SyncFileRange(int(w.f.Fd()), 0, size, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE)
	if err != nil {
		w.off = true // ESPIPE, EINVAL, ENOSYS: not for this file; the fsync does it all
		return
	}
	w.synced = size
}
