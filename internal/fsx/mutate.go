package fsx

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// RandomTempName returns a temporary name with 64 random bits, so that nobody
// can plant a file under it before it is journaled and created.
func RandomTempName() string { return tempName(tempAside) }

// What a temporary name holds, by the letter after TempPrefix. It decides what
// may happen to one that no journaled op explains (its journal was lost with a
// deleted state dir): a staged output or a file taken to be deleted may go; a
// segment taken to be moved is the only copy of its bytes and stays.
const (
	tempStaged = 'o' // an op's output before it is published
	tempDelete = 'd' // a file taken from its name to be removed
	tempMove   = 'm' // a segment taken from its name to be moved to the cold tier
	tempAside  = 'x' // anything else
)

func tempName(kind byte) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return TempPrefix + string(kind) + "-" + hex.EncodeToString(b[:])
}

// RemoveOrphanTemps removes from d the temporary files no op explains: staged
// outputs and files taken to be deleted, each only if it is a regular file
// and explained(name, stat) is false. Others (a segment taken to be moved,
// names of another form) are left and returned, for the operator. It fsyncs d
// when it removed something.
func (d *Dir) RemoveOrphanTemps(explained func(name string, st Stat) bool) (removed, left []string, err error) {
	// Only the temporary names are made strings: at start-up every managed
	// dir is listed here, and 100,000 segment names were 100,000 allocations.
	var names []string
	if err := d.EachEntry(func(name []byte, _ uint64) {
		if bytes.HasPrefix(name, tempPrefix) {
			names = append(names, string(name))
		}
	}); err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		st, serr := d.Stat(n)
		if serr != nil || st.Kind != Regular || explained(n, st) {
			continue
		}
		rest := n[len(TempPrefix):]
		if len(rest) < 2 || rest[1] != '-' || (rest[0] != tempStaged && rest[0] != tempDelete) {
			left = append(left, n)
			continue
		}
		if uerr := d.unlink(n); uerr != nil {
			err = errors.Join(err, uerr)
			continue
		}
		removed = append(removed, n)
	}
	if len(removed) > 0 {
		err = errors.Join(err, d.Sync())
	}
	return removed, left, err
}

// CreateOutput creates name exclusively in d (O_EXCL|O_NOFOLLOW, read-write so
// the caller can verify what it wrote), mode 0600, then
// gives it the owner, group and mode of like. At no instant is it more readable
// than like: it is born root-private and only narrowed or widened to like's mode
// after the owner is set.
func (d *Dir) CreateOutput(name string, like Stat) (*os.File, Stat, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, Stat{}, &os.PathError{Op: "create", Path: d.path + "/" + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path+"/"+name)
	fail := func(op string, err error) (*os.File, Stat, error) {
		f.Close()
		return nil, Stat{}, errors.Join(&os.PathError{Op: op, Path: f.Name(), Err: err}, d.Unlink(name, Stat{}))
	}
	if err := unix.Fchmod(fd, 0o600&like.Mode); err != nil {
		return fail("chmod", err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Fchown(fd, int(like.UID), int(like.GID)); err != nil {
			return fail("chown", err)
		}
	}
	if err := unix.Fchmod(fd, like.Mode&0o777); err != nil {
		return fail("chmod", err)
	}
	st, err := fstat(fd)
	if err != nil {
		return fail("stat", err)
	}
	return f, st, nil
}

func fstat(fd int) (Stat, error) {
	var x unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, statxMask, &x); err != nil {
		return Stat{}, err
	}
	return fromStatx(&x), nil
}

// Fstat stats an open file.
func Fstat(f *os.File) (Stat, error) {
	st, err := fstat(int(f.Fd()))
	if err != nil {
		return Stat{}, &os.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	return st, nil
}

// ErrExists means the target name of a rename already exists.
var ErrExists = errors.New("fsx: target exists")

// RenameNoReplace renames from to to inside d without ever replacing a file.
// It does not fsync d; the caller does before depending on the rename.
func (d *Dir) RenameNoReplace(from, to string) error {
	if err := unix.Renameat2(d.fd, from, d.fd, to, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("rename %s to %s in %s: %w", from, to, d.path, ErrExists)
		}
		return &os.PathError{Op: "rename", Path: d.path + "/" + from, Err: err}
	}
	return nil
}

// Unlink removes name from d if it still is the file want (same device, inode and
// generation, a regular file); with want.Ino == 0 it removes whatever regular file
// is there (a temporary name of logcompactd's own). A missing name is not an
// error. With an identity the check is made on the very file removed: the name
// is first taken away (renamed to a fresh temporary name), what was taken is
// checked, and a file that is not want is given its name back (ErrChanged). It
// does not fsync d.
func (d *Dir) Unlink(name string, want Stat) error {
	st, err := d.Stat(name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Kind != Regular {
		return &os.PathError{Op: "unlink", Path: d.path + "/" + name, Err: ErrNotRegular}
	}
	if want.Ino == 0 {
		return d.unlink(name)
	}
	if st.Dev != want.Dev || st.Ino != want.Ino || st.Btime != want.Btime {
		return &os.PathError{Op: "unlink", Path: d.path + "/" + name, Err: ErrChanged} // not even touched
	}
	temp := tempName(tempDelete)
	kept, _, err := d.take(name, temp, func(got Stat) bool {
		return got.Kind == Regular && got.Dev == want.Dev && got.Ino == want.Ino && got.Btime == want.Btime
	})
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return err // not ErrChanged: the file could not be given its name back, the error says where it is
	case !kept:
		return &os.PathError{Op: "unlink", Path: d.path + "/" + name, Err: ErrChanged}
	}
	return d.unlink(temp)
}

// Exists reports whether name exists in d (of any kind), without following it.
func (d *Dir) Exists(name string) (bool, error) {
	_, err := d.Stat(name)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

// Sub opens (creating it with perm when missing) the subdirectory name of d,
// without following a symlink.
func (d *Dir) Sub(name string, perm uint32) (*Dir, error) {
	if err := unix.Mkdirat(d.fd, name, perm); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, &os.PathError{Op: "mkdir", Path: d.path + "/" + name, Err: err}
	}
	return d.OpenSub(name)
}

// OpenSub opens the existing subdirectory name of d without following a
// symlink; a missing one fails with an error satisfying errors.Is(err,
// os.ErrNotExist).
func (d *Dir) OpenSub(name string) (*Dir, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open dir", Path: d.path + "/" + name, Err: err}
	}
	st, err := fstat(fd)
	if err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat dir", Path: d.path + "/" + name, Err: err}
	}
	return &Dir{fd: fd, path: d.path + "/" + name, dev: st.Dev, ino: st.Ino, mnt: st.MntID}, nil
}

// Ino is the inode of the directory itself.
func (d *Dir) Ino() uint64 { return d.ino }

// MoveTo renames name in d to to in dst without replacing anything. Across
// filesystems it fails with an error satisfying errors.Is(err, unix.EXDEV).
// It fsyncs neither directory.
func (d *Dir) MoveTo(name string, dst *Dir, to string) error {
	if err := unix.Renameat2(d.fd, name, dst.fd, to, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("move %s to %s/%s: %w", name, dst.path, to, ErrExists)
		}
		return &os.PathError{Op: "move", Path: d.path + "/" + name, Err: err}
	}
	return nil
}
