package fsx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Files are known by identity, not by name: writers rename segments while
// logcompactd works on them (logrotate's numbered scheme renames every rotated
// file at each rotation). Locate finds a journaled file wherever it now is in its
// directory, and every step that renames or removes an input first takes the name
// away atomically (a rename to a fresh temporary name), checks that what it took
// is the journaled file, and only then acts — so a rename by a writer between the
// check and the act is seen and retried, and never makes it act on another file.

// ErrNotFound means a journaled file is no longer anywhere in its directory.
var ErrNotFound = errors.New("fsx: file not found in its directory")

// captureRetries bounds how often a capture that took the wrong file (a writer
// renamed between finding and capturing) starts over.
const captureRetries = 100

// Locate returns the current name and stat of the file r in d: at r.Name if it
// is still there, else the name that now has its identity (device, inode, birth
// time). Temporary names count: a capture interrupted by a crash leaves the file
// under one. It fails with ErrNotFound when no entry of d is r.
func (d *Dir) Locate(r FileRef) (string, Stat, error) {
	if st, err := d.Stat(r.Name); err == nil && r.SameFile(st) {
		return r.Name, st, nil
	}
	names, err := d.namesWithInode(r.Ino)
	if err != nil {
		return "", Stat{}, err
	}
	for _, n := range names {
		if st, err := d.Stat(n); err == nil && r.SameFile(st) {
			return n, st, nil
		}
	}
	// Some filesystems (overlayfs over several layers, some FUSE) report other
	// inode numbers in directory entries than in stat: ask stat before giving up.
	all, err := d.Names()
	if err != nil {
		return "", Stat{}, err
	}
	for _, n := range all {
		if st, err := d.Stat(n); err == nil && r.SameFile(st) {
			return n, st, nil
		}
	}
	return "", Stat{}, fmt.Errorf("%s in %s (inode %d): %w", quote(r.Name), d.path, r.Ino, ErrNotFound)
}

// namesWithInode lists the entries of d whose directory entry carries inode ino,
// from the entries themselves (getdents): no stat per name.
func (d *Dir) namesWithInode(ino uint64) ([]string, error) {
	var out []string
	err := d.EachEntry(func(name []byte, i uint64) {
		if i == ino {
			out = append(out, string(name))
		}
	})
	return out, err
}

// direntBufs: a scan lists every directory twice; a fresh 64 KiB buffer each
// time was 128 MB to allocate and clear at 1,000 directories.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// EachEntry calls fn with the name and inode number of every entry of d but
// "." and "..", straight from getdents: no stat per name. name is only valid
// during the call.
func (d *Dir) EachEntry(fn func(name []byte, ino uint64)) error {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open dir", Path: d.path, Err: err}
	}
	defer unix.Close(fd)
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return &os.PathError{Op: "getdents", Path: d.path, Err: err}
		}
		if n <= 0 {
			return nil
		}
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return &os.PathError{Op: "getdents", Path: d.path, Err: io.ErrUnexpectedEOF}
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := name; !(len(s) == 1 && s[0] == '.') && !(len(s) == 2 && s[0] == '.' && s[1] == '.') {
				fn(name, binary.NativeEndian.Uint64(b[0:8]))
			}
			b = b[reclen:]
		}
	}
}

// capture takes the file r away from its name in d: it locates r, renames that
// name to temp without replacing anything, and checks that what the rename took
// is r. If a writer renamed another file into the name in between, the capture
// put it back and starts over. It returns the name r had. On ErrNotFound nothing
// was changed. accept(st) may refuse the found file (it is r, but changed): it is
// then put back and capture fails with ErrChanged.
func (d *Dir) capture(r FileRef, temp string, accept func(Stat) bool) (string, error) {
	for try := 0; ; try++ {
		name, st, err := d.Locate(r)
		if err != nil {
			return "", err
		}
		if name == temp { // captured by an earlier, interrupted attempt
			if accept != nil && !accept(st) {
				return "", fmt.Errorf("%s in %s: %w", quote(temp), d.path, ErrChanged)
			}
			return name, nil
		}
		if d.beforeCapture != nil {
			d.beforeCapture(name)
		}
		kept, got, err := d.take(name, temp, func(st Stat) bool { return r.SameFile(st) && (accept == nil || accept(st)) })
		if errors.Is(err, unix.ENOENT) && try < captureRetries {
			continue // renamed away between Locate and here: look again
		}
		if err != nil {
			return "", err
		}
		if kept {
			return name, nil
		}
		if r.SameFile(got) {
			return "", fmt.Errorf("%s in %s: %w", quote(name), d.path, ErrChanged)
		}
		if try >= captureRetries {
			return "", fmt.Errorf("capture %s in %s: renamed under us %d times", quote(name), d.path, try)
		}
	}
}

// take takes the file at name away from it atomically (a rename to temp that
// never replaces) and keeps it there if keep says so of what was taken; else
// it gives the file its name back (putBack). It returns what it took; an error
// satisfying errors.Is(err, unix.ENOENT) means nothing was at name.
func (d *Dir) take(name, temp string, keep func(Stat) bool) (kept bool, got Stat, err error) {
	if err := unix.Renameat2(d.fd, name, d.fd, temp, unix.RENAME_NOREPLACE); err != nil {
		return false, Stat{}, &os.PathError{Op: "take", Path: d.path + "/" + name, Err: err}
	}
	got, err = d.Stat(temp)
	if err == nil && keep(got) {
		return true, got, nil
	}
	if perr := d.putBack(temp, name); perr != nil {
		return false, got, perr // not taken back under its name: the error says where it is
	}
	return false, got, nil
}

// putBack returns a file a capture took by mistake to its name. Should a writer
// have put a new file under that name meanwhile (a whole rotation within
// microseconds), neither file may be lost: the taken one gets a name of its own
// next to it, and the error says where.
func (d *Dir) putBack(temp, name string) error {
	err := unix.Renameat2(d.fd, temp, d.fd, name, unix.RENAME_NOREPLACE)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "put back", Path: d.path + "/" + name, Err: err}
	}
	aside := name + ".logcompactd-kept-" + RandomTempName()[len(TempPrefix):]
	if err := unix.Renameat2(d.fd, temp, d.fd, aside, unix.RENAME_NOREPLACE); err != nil {
		return &os.PathError{Op: "put back", Path: d.path + "/" + temp, Err: err}
	}
	return fmt.Errorf("a writer reused %s in %s while it was checked: its former file is kept as %s", quote(name), d.path, quote(aside))
}

// RemoveFile removes the file r from d wherever it now is in d: it is captured
// (see capture) under a fresh temporary name, checked to be r and accepted by
// accept, and only then unlinked. It returns the name r had. It fails with
// ErrNotFound when r is not in d, and with ErrChanged when accept refuses it (r
// stays where it was). It does not fsync d.
func (d *Dir) RemoveFile(r FileRef, accept func(Stat) bool) (string, error) {
	temp := tempName(tempDelete)
	name, err := d.capture(r, temp, accept)
	if err != nil {
		return "", err
	}
	// temp is ours and holds r: nobody else can have put anything there.
	if err := unix.Unlinkat(d.fd, temp, 0); err != nil {
		return "", &os.PathError{Op: "unlink", Path: d.path + "/" + temp, Err: err}
	}
	return name, nil
}

func quote(name string) string { return fmt.Sprintf("%q", name) }
