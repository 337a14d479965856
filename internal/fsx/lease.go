package fsx

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLeaseUnsupported means a read lease cannot be taken here (the filesystem does
// not support leases, or the caller neither owns the file nor has CAP_LEASE).
var ErrLeaseUnsupported = errors.New("fsx: read leases unavailable")

// HeldForWrite reports whether some process has name open for writing. It takes
// a read lease (F_SETLEASE F_RDLCK on an O_RDONLY fd), which the kernel refuses
// with EAGAIN exactly when the file is open for writing anywhere, and releases it
// at once. It returns ErrLeaseUnsupported when leases cannot answer; callers then
// fall back to ProcWriters, or fail closed.
func (d *Dir) HeldForWrite(name string, want Stat) (bool, error) {
	f, err := d.OpenRead(name, want)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fd := int(f.Fd())
	switch _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); {
	case err == nil:
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK); err != nil {
			return false, fmt.Errorf("release lease on %s: %w", f.Name(), err)
		}
		return false, nil
	case errors.Is(err, unix.EAGAIN):
		return true, nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM), errors.Is(err, unix.ENOLCK):
		return false, fmt.Errorf("lease %s: %w (%v)", f.Name(), ErrLeaseUnsupported, err)
	default:
		return false, fmt.Errorf("lease %s: %w", f.Name(), err)
	}
}

// FileID identifies a file by device and inode.
type FileID struct{ Dev, Ino uint64 }

// ProcWriters lists the files that any process visible in procRoot (normally
// "/proc") has open for writing, from /proc/PID/fdinfo flags. It is the fallback
// for filesystems without leases; processes it cannot see (other users without
// privilege, other PID namespaces) are missed, which is why leases come first.
func ProcWriters(procRoot string) (map[FileID]bool, error) {
	pids, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", procRoot, err)
	}
	out := map[FileID]bool{}
	for _, p := range pids {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		infoDir := filepath.Join(procRoot, p.Name(), "fdinfo")
		fds, err := os.ReadDir(infoDir)
		if err != nil {
			continue // the process exited, or is not ours to see
		}
		for _, fd := range fds {
			flags, ok := fdFlags(filepath.Join(infoDir, fd.Name()))
			if !ok || flags&unix.O_ACCMODE == unix.O_RDONLY {
				continue
			}
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(procRoot, p.Name(), "fd", fd.Name()), &st); err != nil {
				continue
			}
			out[FileID{st.Dev, st.Ino}] = true
		}
	}
	return out, nil
}

func fdFlags(path string) (int, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return parseFdinfoFlags(bufio.NewScanner(f))
}

// parseFdinfoFlags reads the octal "flags:" line of a /proc/PID/fdinfo/FD file.
func parseFdinfoFlags(sc *bufio.Scanner) (int, bool) {
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "flags:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			return int(n), err == nil
		}
	}
	return 0, false
}
