// Package fsx is the file-safety layer: every access logcompactd makes to a managed,
// cold or state directory goes through a directory fd opened once with O_NOFOLLOW,
// and through *at calls on single names relative to it. Nothing is resolved by
// path twice, no symlink is followed, and opening a name never blocks (FIFOs) nor
// opens a device: a name is opened O_PATH first, checked, then reopened.
//
// It is not a general file library: it does exactly what the daemon needs and
// nothing more, so that the places that can change the disk are few and visible.
package fsx

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// TempPrefix starts every temporary name logcompactd creates. IsTemp is the one
// predicate for such names; the scanner ignores them whatever the stream patterns.
const TempPrefix = ".logcompactd-tmp-"

var tempPrefix = []byte(TempPrefix)

// IsTemp reports whether name is one of logcompactd's temporary names.
func IsTemp(name string) bool { return strings.HasPrefix(name, TempPrefix) }

var tempSeq atomic.Uint64

// TempName returns a fresh temporary name: the prefix, the pid, a sequence number.
func TempName() string {
	return TempPrefix + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(tempSeq.Add(1), 10)
}

// Dir is a directory opened once by path; all later access is relative to its fd.
type Dir struct {
	fd   int
	path string // for messages only; never resolved again
	dev  uint64
	ino  uint64
	mnt  uint64 // mount ID, 0 when the kernel does not report it
	// local: whether its filesystem is one where every change to an entry is
	// made by this kernel (ChangeTime); 0 until asked, then localYes/localNo.
	local atomic.Int32

	// beforeCapture, in tests only, runs between finding a file and capturing
	// it: where a writer's rename races the capture.
	beforeCapture func(name string)
}

// OpenDir opens the directory at path, resolving it one component at a time
// from "/" so that nobody but root (or the caller) can redirect it: every
// directory on the way must be owned by root or the caller and writable by
// nobody else — or, like /tmp, sticky (others may add entries there, but not
// replace ours); a symlink on the way is followed only if root or the caller
// owns it (it sits in such a directory, so its owner is who made it), and the
// last component must be a directory itself, not a symlink. So a managed, cold
// or state dir reached through a directory another user can write (who could
// swap a component for a symlink, before start or while running) is refused.
func OpenDir(path string) (*Dir, error) { return openDir(path, nil) }

// Opener opens many directories as OpenDir does, walking and checking the
// directories on the way that their paths share once, not once per path: at
// 1,000 stream dirs under /var/log/app, OpenDir opened and checked the same
// four directories 4,000 times. A directory found safe to be in stays open
// (the fd pins it) until Close. Its owner or mode can be changed only by root
// or its owner, whom the check trusts anyway, so one check holds for the
// Opener's life; keep one for a batch (a config check, a scan), not longer.
// The zero Opener is ready (Close it); the nil *Opener opens as OpenDir. Not
// safe for concurrent use.
type Opener struct {
	// checked: a directory reached from "/" without a symlink or "..", by its
	// path, found safe to be in (openDirSecure's check), and its fd. Made by
	// the first one kept: a scan that opens nothing allocates nothing.
	checked map[string]int
}

// Open opens the directory at path as OpenDir does.
func (o *Opener) Open(path string) (*Dir, error) { return openDir(path, o) }

// Close closes the directories the Opener kept; the ones it returned stay open.
func (o *Opener) Close() {
	if o == nil {
		return
	}
	for _, fd := range o.checked {
		unix.Close(fd)
	}
	clear(o.checked)
}

// keep holds fd, the checked directory at path, unless o holds one there.
func (o *Opener) keep(path string, fd int) bool {
	if _, ok := o.checked[path]; ok {
		return false
	}
	if o.checked == nil {
		o.checked = map[string]int{}
	}
	o.checked[path] = fd
	return true
}

func openDir(path string, o *Opener) (*Dir, error) {
	fd, err := openDirSecure(path, o)
	if err != nil {
		return nil, &os.PathError{Op: "open dir", Path: path, Err: err}
	}
	st, err := fstat(fd)
	if err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat dir", Path: path, Err: err}
	}
	return &Dir{fd: fd, path: path, dev: st.Dev, ino: st.Ino, mnt: st.MntID}, nil
}

// ErrUnsafePath means a directory on the way to a configured dir could be
// changed by another user.
var ErrUnsafePath = errors.New("fsx: reached through a directory another user can change")

func openDirSecure(path string, o *Opener) (int, error) {
	if !strings.HasPrefix(path, "/") {
		return -1, fmt.Errorf("not an absolute path")
	}
	euid := uint32(os.Geteuid())
	trusted := func(uid uint32) bool { return uid == 0 || uid == euid }
	todo := splitPath(path)
	// cur is the directory we are in: where, for messages and o's keys. It is
	// owned unless o keeps it; checked if it is one of o's (already found safe).
	cur, where, owned, checked := -1, "/", true, false
	release := func() {
		if owned {
			unix.Close(cur)
		}
	}
	straight := o != nil && !slices.Contains(todo, "..") // where is a prefix of path, a key for o
	for k := len(todo) - 1; straight && k >= 0; k-- {
		key := "/" + strings.Join(todo[:k], "/")
		if fd, ok := o.checked[key]; ok {
			cur, where, owned, checked, todo = fd, key, false, true, todo[k:]
			break
		}
	}
	if cur < 0 {
		var err error
		if cur, err = unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return -1, err
		}
	}
	for hops := 0; len(todo) > 0; {
		name := todo[0]
		todo = todo[1:]
		// The directory we are in decides who could have put name there.
		if !checked {
			st, err := fstat(cur)
			if err != nil {
				release()
				return -1, err
			}
			if !trusted(st.UID) || (st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0) {
				release()
				return -1, fmt.Errorf("%w: %s (uid %d, mode %#o)", ErrUnsafePath, where, st.UID, st.Mode&0o7777)
			}
			if straight && o.keep(where, cur) {
				owned = false
			}
		}
		checked = false
		if name == ".." {
			next, err := unix.Openat(cur, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			release()
			if err != nil {
				return -1, err
			}
			cur, owned, where = next, true, where+"/.."
			continue
		}
		last := len(todo) == 0
		next, err := unix.Openat(cur, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			release()
			cur, owned, where = next, true, strings.TrimSuffix(where, "/")+"/"+name
			continue
		}
		if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
			release()
			return -1, err
		}
		// A symlink (or not a directory at all).
		var x unix.Statx_t
		if serr := unix.Statx(cur, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_UID, &x); serr != nil || x.Mode&unix.S_IFMT != unix.S_IFLNK || last {
			release()
			if last || serr == nil && x.Mode&unix.S_IFMT != unix.S_IFLNK {
				return -1, fmt.Errorf("not a directory (or a symlink): %w", err)
			}
			return -1, err
		}
		if !trusted(x.Uid) {
			release()
			return -1, fmt.Errorf("%w: %s/%s is a symlink owned by uid %d", ErrUnsafePath, where, name, x.Uid)
		}
		if hops++; hops > 40 {
			release()
			return -1, unix.ELOOP
		}
		buf := make([]byte, unix.PathMax)
		n, rerr := unix.Readlinkat(cur, name, buf)
		if rerr != nil {
			release()
			return -1, rerr
		}
		straight = false // where is no longer a prefix of path
		target := string(buf[:n])
		todo = append(splitPath(target), todo...)
		if strings.HasPrefix(target, "/") {
			release()
			if cur, err = unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
				return -1, err
			}
			owned, where = true, "/"
		}
	}
	// cur is owned: a walk from one of o's directories has at least one name
	// left (the lookup above stops short of path), and each name ends in a
	// directory opened here.
	return cur, nil
}

// splitPath splits a path into its components, without empty ones and ".".
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// OnSameMount reports whether st (an entry of d) lives on d's own mount: the
// same mount ID where the kernel reports it (overlayfs gives files the
// underlying filesystem's st_dev, so devices alone would refuse every file
// there), else the same device. A file bind-mounted over an entry fails this.
func (d *Dir) OnSameMount(st Stat) bool {
	if d.mnt != 0 && st.MntID != 0 {
		return st.MntID == d.mnt
	}
	return st.Dev == d.dev
}

// StillAt checks that d is still the directory at path: not deleted (it has
// links), and path, opened again without following a symlink in its last
// component, leads to the same device and inode.
func (d *Dir) StillAt(path string) error {
	st, err := fstat(d.fd)
	if err != nil {
		return &os.PathError{Op: "stat dir", Path: d.path, Err: err}
	}
	if st.Nlink == 0 {
		return fmt.Errorf("%s was deleted", d.path)
	}
	now, err := OpenDir(path)
	if err != nil {
		return err
	}
	defer now.Close()
	if now.dev != d.dev || now.ino != d.ino {
		return fmt.Errorf("%s is no longer the directory opened at start (replaced)", path)
	}
	return nil
}

// OnlyOurs refuses a directory that anyone but the caller's user could change
// (delete or replace what it holds): owned by another user, or writable by
// group or others — unless shared, and sticky: then others may add entries of
// their own but not remove the caller's (like /tmp). The cold tier's rule.
func (d *Dir) OnlyOurs(shared bool) error {
	st, err := fstat(d.fd)
	if err != nil {
		return &os.PathError{Op: "stat dir", Path: d.path, Err: err}
	}
	if int(st.UID) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by uid %d: its owner could delete what it holds", d.path, st.UID, os.Geteuid())
	}
	if st.Mode&0o022 != 0 && !(shared && st.Mode&unix.S_ISVTX != 0) {
		return fmt.Errorf("%s is writable by group or others (mode %#o): they could delete or replace what it holds", d.path, st.Mode&0o7777)
	}
	return nil
}

// Path is the path the directory was opened by, for messages.
func (d *Dir) Path() string { return d.path }

// Dev is the device of the directory itself.
func (d *Dir) Dev() uint64 { return d.dev }

// ChangeTime reads the directory's status change time (ctime, ns). The kernel
// moves it to the present whenever an entry is added, removed or renamed in
// the directory. It says ok=false where that cannot be counted on: where the
// directory's entries may change without this kernel making the change (NFS,
// CIFS, FUSE, 9p, an overlay's lower layers...) or it cannot be asked. Only
// the local filesystems below are trusted, each known to set a directory's
// ctime on every create, link, unlink and rename (POSIX asks it of rename).
func (d *Dir) ChangeTime() (ns int64, ok bool) {
	if d.local.Load() == 0 {
		v := int32(localNo)
		var s unix.Statfs_t
		if unix.Fstatfs(d.fd, &s) == nil {
			switch uint32(s.Type) {
			case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC, unix.F2FS_SUPER_MAGIC:
				v = localYes
			}
		}
		d.local.Store(v)
	}
	if d.local.Load() != localYes {
		return 0, false
	}
	var x unix.Statx_t
	if err := unix.Statx(d.fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_CTIME, &x); err != nil || x.Mask&unix.STATX_CTIME == 0 {
		return 0, false
	}
	return x.Ctime.Sec*1e9 + int64(x.Ctime.Nsec), true
}

const (
	localYes = 1
	localNo  = 2
)

// Close releases the directory fd. It is safe to call twice.
func (d *Dir) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// Names lists the directory's entries (without . and ..), read through the fd.
func (d *Dir) Names() ([]string, error) {
	// A fresh open of "." rather than a dup: a dup shares its offset with every
	// other dup, and jobs list the same directory concurrently.
	nfd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open dir", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(nfd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.path, err)
	}
	return names, nil
}

// Kind classifies a directory entry for the scanner.
type Kind uint8

const (
	Regular Kind = iota
	Symlink
	FIFO
	Socket
	Device
	Directory
	Other
)

func (k Kind) String() string {
	return [...]string{"regular file", "symlink", "fifo", "socket", "device", "directory", "other"}[k]
}

// Stat is what the scanner needs to know of one entry. Times are ns since the
// epoch: the struct holds no pointer and is 80 bytes (a scanner keeps one per
// segment; with time.Time it was 112, and the GC had to scan it).
type Stat struct {
	Kind    Kind
	Sealed  bool // immutable or append-only (chattr +i / +a): it can be neither renamed nor removed
	Dev     uint64
	Ino     uint64
	Nlink   uint32
	Mode    uint32 // permission bits
	UID     uint32
	GID     uint32
	Size    int64
	Blocks  int64 // allocated 512-byte blocks: far fewer than Size/512 means sparse
	MtimeNs int64
	CtimeNs int64
	Btime   int64  // birth time in ns since the epoch, 0 when the filesystem does not report it
	MntID   uint64 // mount ID, 0 when the kernel does not report it
}

// Mtime is the modification time.
func (s Stat) Mtime() time.Time { return time.Unix(0, s.MtimeNs) }

func kindOf(mode uint32) Kind {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return Regular
	case unix.S_IFLNK:
		return Symlink
	case unix.S_IFIFO:
		return FIFO
	case unix.S_IFSOCK:
		return Socket
	case unix.S_IFCHR, unix.S_IFBLK:
		return Device
	case unix.S_IFDIR:
		return Directory
	}
	return Other
}

const statxMask = unix.STATX_TYPE | unix.STATX_MODE | unix.STATX_NLINK | unix.STATX_UID | unix.STATX_GID |
	unix.STATX_INO | unix.STATX_SIZE | unix.STATX_BLOCKS | unix.STATX_MTIME | unix.STATX_CTIME | unix.STATX_BTIME | unix.STATX_MNT_ID

// Sparse reports whether a file of size bytes with blocks allocated 512-byte
// blocks is mostly holes: at least 1 MiB, less than half of it on disk. Such a
// file is copied with its holes and archived as it is: compressing it would
// read every byte of its holes (zeros), terabytes for a large sparse file.
func Sparse(size, blocks int64) bool { return size >= 1<<20 && blocks*512 < size/2 }

func fromStatx(x *unix.Statx_t) Stat {
	st := Stat{
		Kind:    kindOf(uint32(x.Mode)),
		Dev:     unix.Mkdev(x.Dev_major, x.Dev_minor),
		Ino:     x.Ino,
		Nlink:   x.Nlink,
		Mode:    uint32(x.Mode) & 0o7777,
		UID:     x.Uid,
		GID:     x.Gid,
		Size:    int64(x.Size),
		Blocks:  int64(x.Blocks),
		MtimeNs: x.Mtime.Sec*1e9 + int64(x.Mtime.Nsec),
		CtimeNs: x.Ctime.Sec*1e9 + int64(x.Ctime.Nsec),
	}
	if x.Mask&unix.STATX_BTIME != 0 {
		st.Btime = x.Btime.Sec*1e9 + int64(x.Btime.Nsec)
	}
	if x.Mask&unix.STATX_MNT_ID != 0 {
		st.MntID = x.Mnt_id
	}
	const sealed = unix.STATX_ATTR_IMMUTABLE | unix.STATX_ATTR_APPEND
	st.Sealed = x.Attributes&x.Attributes_mask&sealed != 0
	return st
}

// Stat stats name inside the directory without following a symlink.
func (d *Dir) Stat(name string) (Stat, error) {
	var x unix.Statx_t
	if err := unix.Statx(d.fd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT, statxMask, &x); err != nil {
		return Stat{}, &os.PathError{Op: "stat", Path: d.path + "/" + name, Err: err}
	}
	return fromStatx(&x), nil
}

// Statfs reports the filesystem holding the directory: total and available bytes.
func (d *Dir) Statfs() (total, avail uint64, err error) {
	var s unix.Statfs_t
	if err := unix.Fstatfs(d.fd, &s); err != nil {
		return 0, 0, &os.PathError{Op: "statfs", Path: d.path, Err: err}
	}
	return s.Blocks * uint64(s.Bsize), s.Bavail * uint64(s.Bsize), nil
}

// ErrChanged means the name no longer refers to the file that was checked.
var ErrChanged = errors.New("fsx: file changed identity")

// ErrNotRegular means the name is not a single-link regular file on the directory's mount.
var ErrNotRegular = errors.New("fsx: not a single-link regular file on the directory's device")

// OpenRead opens name for reading, safely: the name is opened O_PATH|O_NOFOLLOW
// (which opens neither a FIFO nor a device), checked to be the regular, single-link
// file on this directory's device with the identity of want (when want.Ino != 0),
// and only then reopened for reading through /proc/self/fd.
func (d *Dir) OpenRead(name string, want Stat) (*os.File, error) {
	pfd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.path + "/" + name, Err: err}
	}
	defer unix.Close(pfd)
	var x unix.Statx_t
	if err := unix.Statx(pfd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, statxMask, &x); err != nil {
		return nil, &os.PathError{Op: "stat", Path: d.path + "/" + name, Err: err}
	}
	st := fromStatx(&x)
	if st.Kind != Regular || st.Nlink != 1 || !d.OnSameMount(st) {
		return nil, &os.PathError{Op: "open", Path: d.path + "/" + name, Err: ErrNotRegular}
	}
	if want.Ino != 0 && (st.Ino != want.Ino || st.Dev != want.Dev) {
		return nil, &os.PathError{Op: "open", Path: d.path + "/" + name, Err: ErrChanged}
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "reopen", Path: d.path + "/" + name, Err: err}
	}
	return os.NewFile(uintptr(fd), d.path+"/"+name), nil
}

// Clone returns a Dir on a duplicate of the fd, owned (and closed) by the caller,
// so that a job keeps its directory even if the scanner reopens or closes its own.
func (d *Dir) Clone() (*Dir, error) {
	fd, err := unix.FcntlInt(uintptr(d.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "dup dir", Path: d.path, Err: err}
	}
	return &Dir{fd: fd, path: d.path, dev: d.dev, ino: d.ino, mnt: d.mnt}, nil
}
