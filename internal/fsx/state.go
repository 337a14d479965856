package fsx

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// EnsureStateDir creates the state dir 0700 when it is missing and refuses an
// existing one that is a symlink, not a directory, not owned by the caller, or
// writable by group or others.
func EnsureStateDir(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		// Create it only below a directory nobody else can redirect.
		parent := filepath.Dir(path)
		for {
			if _, err := os.Lstat(parent); err == nil || parent == "/" {
				break
			}
			parent = filepath.Dir(parent)
		}
		d, perr := OpenDir(parent)
		if perr != nil {
			return fmt.Errorf("create state dir: %w", perr)
		}
		d.Close()
		if err := os.MkdirAll(path, 0o700); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		fi, err = os.Lstat(path)
	}
	if err != nil {
		return fmt.Errorf("stat state dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state dir %s is not a directory (or is a symlink)", path)
	}
	d, err := OpenDir(path)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	defer d.Close()
	if err := d.OnlyOurs(false); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return nil
}

// ErrLocked means another instance holds the state dir's lock.
var ErrLocked = errors.New("fsx: another instance holds the lock")

// Lock takes an exclusive, non-blocking flock on name in d (created 0600). The lock
// is held until the returned file is closed or the process exits.
func (d *Dir) Lock(name string) (*os.File, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open lock", Path: d.path + "/" + name, Err: err}
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s/%s: %w", d.path, name, ErrLocked)
		}
		return nil, &os.PathError{Op: "lock", Path: d.path + "/" + name, Err: err}
	}
	return os.NewFile(uintptr(fd), d.path+"/"+name), nil
}

// ReadFile reads name from d without following a symlink. A missing file returns
// an error satisfying errors.Is(err, os.ErrNotExist).
func (d *Dir) ReadFile(name string) ([]byte, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.path + "/" + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path+"/"+name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "read", Path: f.Name(), Err: ErrNotRegular}
	}
	return io.ReadAll(f)
}

// ReplaceFile durably replaces name in d with data: it writes a temporary file
// (O_EXCL, perm), fsyncs it, renames it over name and fsyncs d. A crash leaves
// either the old content or the new, never a mix; a stray temp file is removed by
// RemoveTemps. Used only for the daemon's own state files.
func (d *Dir) ReplaceFile(name string, data []byte, perm uint32) error {
	tmp := TempName()
	fd, err := unix.Openat(d.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return &os.PathError{Op: "create", Path: d.path + "/" + tmp, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path+"/"+tmp)
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return errors.Join(fmt.Errorf("write %s: %w", f.Name(), werr), d.unlink(tmp))
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		return errors.Join(&os.PathError{Op: "rename", Path: d.path + "/" + name, Err: err}, d.unlink(tmp))
	}
	return d.Sync()
}

// Sync fsyncs the directory itself, making renames and unlinks in it durable.
func (d *Dir) Sync() error {
	if err := unix.Fsync(d.fd); err != nil {
		return &os.PathError{Op: "fsync dir", Path: d.path, Err: err}
	}
	return nil
}

func (d *Dir) unlink(name string) error {
	if err := unix.Unlinkat(d.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "unlink", Path: d.path + "/" + name, Err: err}
	}
	return nil
}

// RemoveTemps removes logcompactd's temporary files from d (state dir use only:
// in managed dirs, recovery decides what a temp file is).
func (d *Dir) RemoveTemps() error {
	names, err := d.Names()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if IsTemp(n) {
			errs = append(errs, d.unlink(n))
		}
	}
	return errors.Join(errs...)
}
