package fsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The operation layer. Every change logcompactd makes to a managed or cold
// directory is one journaled operation run here, from Begin to Done:
//
//	lease the inputs (found by identity) -> Begin -> stage a temp output
//	(Created) -> produce its bytes -> mtime, fsync, size -> verify -> re-check
//	the inputs -> publish without replacing -> Commit -> find every input
//	(Removing) -> remove each by identity -> fsync -> Done
//
// and every failure before Commit discards what the op created (its inputs were
// never touched). A kind of operation (merge, archive) brings only a function
// that produces the output's bytes into a writer, and optionally a check of the
// finished output against its inputs (VerifyFunc); where the output goes is a
// Publisher. Recover is the one recovery for every kind.

// Errors of an operation abandoned with its inputs intact.
var (
	ErrInputChanged = errors.New("fsx: an input changed during the operation")
	ErrFsync        = errors.New("fsx: fsync of the output failed")
	ErrVerify       = errors.New("fsx: the output does not verify")
	// ErrInputMissing means a committed op's input is no longer in its
	// directory: the op stays in the journal, for the operator to look at.
	ErrInputMissing = errors.New("fsx: a committed operation's input is not in its directory")
)

// Publisher is where an operation's output appears. A local directory (*Dir) is
// one; an object store is another (stage to a local temp, publish = an upload
// that never overwrites, verify = the stored object's size and checksum,
// discard = delete what the op uploaded).
type Publisher interface {
	// Path names the destination in the journal; recovery resolves it again.
	Path() string
	// Stage creates the temporary output exclusively, born private, then with
	// the owner, group and mode of like.
	Stage(temp string, like Stat) (*os.File, Stat, error)
	// Publish makes temp — size bytes with CRC-32C crc, as verified — visible
	// as name without replacing anything, durably.
	Publish(temp, name string, size int64, crc uint32) error
	// Verify reports whether name is the created output with size bytes whose
	// checksum is crc.
	Verify(name string, created FileRef, size int64, crc uint32) bool
	// Open opens the published output for reading (a kind's VerifyFunc).
	Open(name string, created FileRef) (io.ReadCloser, error)
	// Discard removes the op's staged or published output — temp, or the
	// created file wherever it now is — durably.
	Discard(temp, name string, created *FileRef) error
	// Published reports whether the op's output may be visible (anything but
	// the staged temp): then only a verified commit may decide about it.
	Published(temp, name string, created *FileRef) bool
}

// Stage implements Publisher.
func (d *Dir) Stage(temp string, like Stat) (*os.File, Stat, error) {
	return d.CreateOutput(temp, like)
}

// Publish implements Publisher: rename without replacing, then fsync d (the
// rename keeps the bytes the layer verified: size and crc are not needed).
func (d *Dir) Publish(temp, name string, _ int64, _ uint32) error {
	if err := d.RenameNoReplace(temp, name); err != nil {
		return err
	}
	return d.Sync()
}

// Open implements Publisher.
func (d *Dir) Open(name string, created FileRef) (io.ReadCloser, error) {
	created.Name = name
	at, st, err := d.Locate(created)
	if err != nil {
		return nil, err
	}
	return d.OpenRead(at, st)
}

// Discard implements Publisher. The created file is found by identity wherever
// it is (published, renamed since by a writer, or under the name a crashed
// removal left); without a created identity, whatever regular file is at temp
// is removed: temp names are random and journaled before creation, so nobody
// else's file can be there.
func (d *Dir) Discard(temp, name string, created *FileRef) error {
	if created == nil {
		if err := d.Unlink(temp, Stat{}); err != nil {
			return err
		}
		return d.Sync()
	}
	ref := *created
	ref.Name = temp
	for try := 0; ; try++ {
		at, _, err := d.Locate(ref)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return err
		}
		err = d.Unlink(at, created.Stat())
		if errors.Is(err, ErrChanged) && try < captureRetries {
			continue // renamed between finding and removing
		}
		if err != nil {
			return err
		}
		break
	}
	return d.Sync()
}

// Published implements Publisher.
func (d *Dir) Published(temp, name string, created *FileRef) bool {
	if created == nil {
		_, err := d.Stat(name)
		return err == nil // unknown identity: anything at the name may be it
	}
	ref := *created
	ref.Name = name
	at, _, err := d.Locate(ref)
	return err == nil && at != temp
}

// VerifyFunc checks a kind's finished output, read from out, against its
// inputs and its commit (sizes and checksums). It runs after the fsync, before
// publishing, and again in recovery before a committed op removes its inputs.
type VerifyFunc func(out io.Reader, ins []FileRef, c *Commit) error

// Runner runs operations through the journal. The daemon builds one.
type Runner struct {
	Journal *Journal
	Leases  *Leases
	Hooks
	// Verify holds the per-kind output checks; a kind without one is verified by
	// size and checksum only.
	Verify map[OpKind]VerifyFunc

	mu      sync.Mutex
	running map[uint64]bool // ops begun by Run or Move and not returned yet: Recover leaves them alone
}

// begin journals op's Begin and marks it running, atomically with respect to
// Recover's look at what is pending.
func (r *Runner) begin(op Op) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, err := r.Journal.Begin(op)
	if err == nil {
		if r.running == nil {
			r.running = map[uint64]bool{}
		}
		r.running[id] = true
	}
	return id, err
}

func (r *Runner) end(id uint64) {
	r.mu.Lock()
	delete(r.running, id)
	r.mu.Unlock()
}

// idle returns the pending ops that no Run or Move of this process is working on.
func (r *Runner) idle() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Op
	for _, op := range r.Journal.Pending() {
		if !r.running[op.ID] {
			out = append(out, op)
		}
	}
	return out
}

// Idle reports how many pending ops no running job owns (recovery's work).
func (r *Runner) Idle() int { return len(r.idle()) }

func (r *Runner) step(kind OpKind, s string) { r.Step(string(kind) + ":" + s) }

// Input is one leased input of a running operation.
type Input struct {
	Ref   FileRef // as journaled
	Name  string  // where it was found when leased
	File  *os.File
	lease *Lease
	ahead int64 // ReadAhead has asked the kernel for what lies before ahead (0: not called)
}

// Broken reports whether a writer opened the input since it was leased.
func (in *Input) Broken() bool { return in.lease.Broken() }

// ReadAhead is for a paced job, which reads its input a step at a time: it
// says the job reads step bytes at off next, and asks the kernel to start
// reading that step and the one after it, less what it was asked for already
// (POSIX_FADV_WILLNEED, which returns without waiting; the kernel may read
// less of a large range). Its first call also turns the kernel's own
// read-ahead off for this open file (POSIX_FADV_RANDOM): on a device whose
// read_ahead_kb is large (8 MiB on the virtio disks measured) the kernel
// otherwise reads a paced job's input in bursts of that size, and every other
// writer's fsync on the disk waits behind each burst (fgbench: a ~10 ms
// append stall every 8 MiB of a merge at 64 MiB/s). Two steps ahead keeps the
// job's reads as small and as even as its pace, and still ahead of the copy.
// A job that skipped a hole, or became paced midway (a reload), asks from
// where it reads, not for what lies behind. Advisory: an error only leaves
// the kernel's defaults.
func (in *Input) ReadAhead(off, step int64) {
	end := min(off+2*step, in.Ref.Size)
	from := max(off, in.ahead)
	if end <= from {
		return
	}
	fd := int(in.File.Fd())
	if in.ahead == 0 { // the first call that asks for anything
		_ = unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM)
	}
	_ = unix.Fadvise(fd, from, end-from, unix.FADV_WILLNEED)
	in.ahead = end
}

// Output is the staged output of a running operation. Bytes written through
// Write are counted and checksummed; bytes copied in the kernel (CopyFrom) are
// not, and the producer must then take the checksum by reading back (ReadAt).
type Output struct {
	f      *os.File
	wb     *WriteBehind
	n      int64
	crc    uint32
	copied bool
	holes  bool // a hole was left: the file's size is set at the end
	// flushing is closed when the fsync Flush started has returned.
	flushing chan struct{}
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	n, err := o.wb.Write(p)
	o.n += int64(n)
	o.crc = UpdateChecksum(o.crc, p[:n])
	return n, err
}

// CopyFrom appends up to n bytes of in from *off, in the kernel where it can
// (copy_file_range: no copy through user space, a reflink where the filesystem
// can), else through a buffer; it advances *off and returns the count. A hole
// in the input (SEEK_DATA) stays a hole in the output: it is skipped whole,
// not read — the count can then pass n (holes cost no I/O to pace).
func (o *Output) CopyFrom(in *Input, off *int64, n int) (int, error) {
	o.copied = true
	end := *off + int64(n)
	if data, ok := nextData(in.File, *off, max(end, in.Ref.Size)); ok && data > *off {
		hole := data - *off
		if _, err := o.f.Seek(hole, io.SeekCurrent); err != nil {
			return 0, err
		}
		o.n += hole
		*off = data
		o.holes = true
		return int(hole), nil
	}
	if h := nextHole(in.File, *off, end); h > *off {
		n = int(h - *off)
	}
	k, err := unix.CopyFileRange(int(in.File.Fd()), off, int(o.f.Fd()), nil, n, 0)
	if err != nil && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
		buf := make([]byte, min(n, 1<<20))
		k, err = in.File.ReadAt(buf, *off)
		if k > 0 {
			if _, werr := o.f.Write(buf[:k]); werr != nil {
				return 0, werr
			}
			*off += int64(k)
		}
		if err == io.EOF {
			err = nil
		}
	}
	if err != nil {
		return 0, err
	}
	o.n += int64(k)
	o.wb.Advance(o.n)
	return k, nil
}

// Flush starts writing the output to disk in the background, for a producer
// that has written everything and still has CPU work to do (copyRaw's
// read-back pass): that work and the disk then run at the same time, and the
// fsync that follows has little left to wait for. It changes no guarantee:
// the operation still fsyncs after producing, and nothing is committed
// before. Calling it twice does nothing more.
func (o *Output) Flush() {
	if o.flushing != nil {
		return
	}
	ch := make(chan struct{})
	o.flushing = ch
	go func() {
		defer close(ch)
		_ = o.f.Sync() // its error, if any, is the later fsync's to report
	}()
}

// waitFlush waits for Flush's fsync, if one was started.
func (o *Output) waitFlush() {
	if o.flushing != nil {
		<-o.flushing
	}
}

// ReadAt reads back what the output holds.
func (o *Output) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }

// Checksum reads back what the output holds (its holes computed, not read).
func (o *Output) Checksum() (uint32, error) { return ChecksumFile(o.f, o.n) }

// Size is the number of bytes written so far.
func (o *Output) Size() int64 { return o.n }

// Sum is the checksum of everything written, when it is known (nothing was
// copied in the kernel).
func (o *Output) Sum() (uint32, bool) { return o.crc, !o.copied }

// ProduceFunc writes an operation's output from its inputs, in order, and
// returns its commit: OutSize and OutCRC of the output (taken by reading back
// when bytes were copied in the kernel), InputCRCs, Newlines.
type ProduceFunc func(ctx context.Context, out *Output, ins []*Input) (Commit, error)

// Spec is one operation to run.
type Spec struct {
	Kind    OpKind
	Stream  string
	Src     *Dir      // the inputs' directory (a managed dir)
	SrcPath string    // Src as configured: journaled, so recovery finds it
	Dst     Publisher // where the output goes (Src itself for a merge)
	Inputs  []FileRef // in order, as planned: identity, size, mtime; Name is where each was seen
	Output  string    // the name to publish under; never replaces anything
	Produce ProduceFunc
	// Keep leaves the inputs in place after the commit (keep_inactive); FinishDue
	// removes them later.
	Keep bool
	// Staged, if set, is told the output's identity once it is staged: under its
	// temporary name, before it is published under a name a scan reads (an
	// identity survives the rename).
	Staged func(FileRef)
}

// Result describes an operation that committed.
type Result struct {
	Output FileRef // the published output: identity, size, mtime
	Commit Commit
	Read   int64 // bytes of the inputs
	Kept   bool  // inputs left inactive (Spec.Keep)
}

// Run runs one operation. A nil error means committed and finished (or kept).
// An error with res.Output.Name set means committed — the output is published —
// but not finished: the op stays in the journal (see ErrInputMissing) and the
// error says why. Any other error means abandoned: inputs intact, nothing of the
// op visible (unless the journal itself failed: then nothing more is touched,
// and recovery decides at the next start).
func (r *Runner) Run(ctx context.Context, s Spec) (res Result, err error) {
	r.step(s.Kind, "start")
	if dup, ok := duplicateInput(s.Inputs); ok {
		// A scan that raced a writer's renames saw one file under two names: a
		// merge of both would hold its bytes twice.
		return res, fmt.Errorf("%w: %q and %q are the same file (renamed during the scan)", ErrInputChanged, dup[0], dup[1])
	}
	ins, err := r.leaseAll(s.Kind, s.Src, s.Inputs)
	defer releaseAll(ins)
	if err != nil {
		return res, err
	}
	op := Op{Kind: s.Kind, Stream: s.Stream, Dir: s.SrcPath, Output: s.Output, Temp: tempName(tempStaged), Inputs: s.Inputs}
	if s.Dst != Publisher(s.Src) {
		op.Dest = s.Dst.Path()
	}
	if op.ID, err = r.begin(op); err != nil {
		return res, err
	}
	defer r.end(op.ID)
	r.step(s.Kind, "begun")

	published := false
	abort := func(cause error) (Result, error) {
		if jerr := r.Journal.Err(); jerr != nil {
			return Result{}, errors.Join(cause, jerr) // touch nothing more: recovery decides
		}
		name := ""
		if published {
			name = op.Output
		}
		if err := s.Dst.Discard(op.Temp, name, op.Created); err != nil {
			// Leave the op pending: recovery finishes the clean-up.
			return Result{}, errors.Join(cause, fmt.Errorf("clean up abandoned %s: %w", s.Kind, err))
		}
		return Result{}, errors.Join(cause, r.Journal.Done(op.ID))
	}

	f, st, err := s.Dst.Stage(op.Temp, ins[0].lease.Stat)
	if err != nil {
		return abort(err)
	}
	defer f.Close()
	created := RefOf(op.Temp, st)
	if err := r.Journal.Created(op.ID, created); err != nil {
		return abort(err)
	}
	op.Created = &created
	if s.Staged != nil {
		s.Staged(created)
	}
	r.step(s.Kind, "created")

	out := &Output{f: f, wb: NewWriteBehind(f, 0)}
	defer out.waitFlush() // before the file is closed, on every path
	c, err := s.Produce(ctx, out, ins)
	out.waitFlush()
	if err != nil {
		return abort(err)
	}
	r.step(s.Kind, "produced")
	if out.holes {
		if err := f.Truncate(out.n); err != nil { // a trailing hole still counts
			return abort(err)
		}
	}
	last := s.Inputs[len(s.Inputs)-1].MtimeNs
	if err := setTimes(f, last); err != nil {
		return abort(fmt.Errorf("set output mtime: %w", err))
	}
	if err := f.Sync(); err != nil {
		return abort(fmt.Errorf("%w: %v", ErrFsync, err)) // final for this output: it is discarded
	}
	if fst, err := Fstat(f); err != nil || fst.Size != c.OutSize {
		return abort(fmt.Errorf("%w: %d bytes after fsync, %d written (%v)", ErrVerify, fst.Size, c.OutSize, err))
	}
	r.step(s.Kind, "synced")
	if v := r.Verify[s.Kind]; v != nil {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return abort(err)
		}
		if err := v(f, s.Inputs, &c); err != nil {
			return abort(fmt.Errorf("%w: %v", ErrVerify, err))
		}
	}
	r.step(s.Kind, "verified")
	if err := recheck(s.Src, ins); err != nil {
		return abort(err)
	}
	r.step(s.Kind, "rechecked")
	if err := ctx.Err(); err != nil {
		return abort(err)
	}
	if _, local := s.Dst.(*Dir); !local {
		// An upload: its size and checksum are the intent's too, journaled
		// before a byte leaves (the object's mark ties it to this op).
		u := Upload{Size: c.OutSize, CRC: c.OutCRC}
		if err := r.Journal.Upload(op.ID, u); err != nil {
			return abort(err)
		}
		op.Upload = &u
		r.step(s.Kind, "upload-journaled")
	}
	if err := s.Dst.Publish(op.Temp, op.Output, c.OutSize, c.OutCRC); err != nil {
		// Renamed, unless the name was taken (then nothing happened); a failed
		// fsync after the rename leaves it published.
		published = !errors.Is(err, ErrExists)
		return abort(err)
	}
	published = true
	r.step(s.Kind, "published")
	c.AtNs = r.Clock().UnixNano()
	if err := r.Journal.Commit(op.ID, c); err != nil {
		return abort(err)
	}
	op.Commit = &c
	r.step(s.Kind, "committed")
	var read int64
	for _, in := range ins {
		read += in.Ref.Size
	}
	res = Result{Output: RefOf(op.Output, st), Commit: c, Read: read, Kept: s.Keep}
	res.Output.Size, res.Output.MtimeNs = c.OutSize, last
	if s.Keep {
		return res, nil
	}
	// The leases are still held: a writer that opens an input from here on is
	// seen (Broken), and the input it writes to is not removed.
	return res, r.finish(s.Src, op, false, ins)
}

// leaseAll finds every input by identity and takes a read lease on it, so that
// no process opens it for writing unseen while the op runs.
// duplicateInput finds two inputs that are one file (same device and inode).
func duplicateInput(refs []FileRef) (names [2]string, found bool) {
	seen := make(map[FileID]string, len(refs))
	for _, ref := range refs {
		id := FileID{Dev: ref.Dev, Ino: ref.Ino}
		if prev, ok := seen[id]; ok {
			return [2]string{prev, ref.Name}, true
		}
		seen[id] = ref.Name
	}
	return names, false
}

func (r *Runner) leaseAll(kind OpKind, d *Dir, refs []FileRef) ([]*Input, error) {
	ins := make([]*Input, 0, len(refs))
	for i, ref := range refs {
		in, err := r.lease(d, ref)
		if err != nil {
			return ins, err
		}
		ins = append(ins, in)
		r.step(kind, fmt.Sprintf("leased:%d", i))
	}
	return ins, nil
}

func (r *Runner) lease(d *Dir, ref FileRef) (*Input, error) {
	for try := 0; ; try++ {
		name, _, err := d.Locate(ref)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: %w", ErrInputChanged, err)
		}
		if err != nil {
			return nil, err
		}
		l, err := r.Leases.Take(d, name, ref.Stat())
		if (errors.Is(err, ErrChanged) || errors.Is(err, unix.ENOENT)) && try < captureRetries {
			continue // renamed between Locate and the open: look again
		}
		if err != nil {
			return nil, fmt.Errorf("open input %q: %w", name, err)
		}
		if !ref.Matches(l.Stat) || l.Stat.Sealed {
			_ = l.Release()
			return nil, fmt.Errorf("input %q: %w (since the scan; or made immutable or append-only)", name, ErrInputChanged)
		}
		return &Input{Ref: ref, Name: name, File: l.File, lease: l}, nil
	}
}

func releaseAll(ins []*Input) {
	for _, in := range ins {
		_ = in.lease.Release()
	}
}

// recheck makes sure, right before publishing, that every input is still the
// file that was read (not opened for writing, same size and mtime, one link)
// and still in its directory, under whatever name.
func recheck(d *Dir, ins []*Input) error {
	for _, in := range ins {
		if in.Broken() {
			return fmt.Errorf("input %q: %w", in.Name, ErrLeaseBroken)
		}
		st, err := Fstat(in.File)
		if err != nil || !in.Ref.Matches(st) || st.Nlink != 1 || st.Sealed {
			return fmt.Errorf("input %q: %w", in.Name, ErrInputChanged)
		}
		if _, _, err := d.Locate(in.Ref); err != nil {
			return fmt.Errorf("input %q: %w: %v", in.Name, ErrInputChanged, err)
		}
	}
	return nil
}

// finish removes the inputs of a committed op from d wherever they now are, by
// identity, then journals Done. First every input must be found, unchanged
// (size and mtime as journaled): one that is missing or changed leaves the op
// pending with an error naming it. Once all are found, Removing is journaled;
// from then on an input that is gone was removed by this op. With torn (the
// journal lost its last record, which may have been this op's Removing), a
// missing input is taken as removed: the output was verified against the
// commit, so its bytes are there. Idempotent: recovery and FinishDue call it too.
func (r *Runner) finish(d *Dir, op Op, torn bool, held []*Input) error {
	err := r.removeInputs(d, op, torn, held)
	if err != nil && op.Blocked == "" && !errors.Is(err, ErrJournalFailed) {
		// Said once: the op stays pending, its inputs inactive (kept out of
		// every run), and a later attempt that fails again is not reported.
		if jerr := r.Journal.Blocked(op.ID, err.Error()); jerr != nil {
			return errors.Join(err, jerr)
		}
	}
	return err
}

func (r *Runner) removeInputs(d *Dir, op Op, torn bool, held []*Input) error {
	if !op.Removing && !torn {
		var missing []string
		for _, in := range op.Inputs {
			name, st, err := d.Locate(in)
			switch {
			case errors.Is(err, ErrNotFound):
				missing = append(missing, in.Name)
			case err != nil:
				return fmt.Errorf("%s op %d: find input %q: %w", op.Kind, op.ID, in.Name, err)
			case !in.Matches(st):
				return fmt.Errorf("%s op %d: input %q (now %q) changed after the commit: %w; left in the journal", op.Kind, op.ID, in.Name, name, ErrInputChanged)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s op %d: %w: %q; the op stays in the journal", op.Kind, op.ID, ErrInputMissing, missing)
		}
		if err := r.Journal.Removing(op.ID); err != nil {
			return err
		}
		r.step(op.Kind, "removing")
	}
	for i, in := range op.Inputs {
		var lease *Lease
		if held != nil {
			lease = held[i].lease
		}
		if err := r.removeOne(d, in, lease); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%s op %d: remove input %q: %w", op.Kind, op.ID, in.Name, err)
		}
		r.step(op.Kind, fmt.Sprintf("removed:%d", i))
	}
	if err := d.Sync(); err != nil {
		return err
	}
	r.step(op.Kind, "inputs-synced")
	if err := r.Journal.Done(op.ID); err != nil {
		return err
	}
	r.step(op.Kind, "done")
	return nil
}

// removeOne removes a committed input wherever it is, unless a process has it
// open for writing: with the job's own lease (held) or one taken now, the input
// is captured, and only removed if the lease was not broken — a writer that
// opened it before the capture sees it put back, and the op stays pending; one
// that opens the name after the capture does not find this file.
func (r *Runner) removeOne(d *Dir, in FileRef, held *Lease) error {
	lease := held
	if lease == nil {
		for try := 0; ; try++ {
			name, _, err := d.Locate(in)
			if err != nil {
				return err
			}
			l, err := r.Leases.Take(d, name, in.Stat())
			if (errors.Is(err, ErrChanged) || errors.Is(err, unix.ENOENT)) && try < captureRetries {
				continue // renamed meanwhile
			}
			if errors.Is(err, ErrLeaseUnsupported) {
				break // no leases here: the scan's /proc check is all there is
			}
			if errors.Is(err, ErrWriting) {
				return fmt.Errorf("%w: open for writing after the commit", ErrInputChanged)
			}
			if err != nil {
				return err
			}
			lease = l
			defer l.Release()
			break
		}
	}
	accept := func(st Stat) bool { return in.Matches(st) && (lease == nil || !lease.Broken()) }
	_, err := d.RemoveFile(in, accept)
	if errors.Is(err, ErrChanged) {
		return fmt.Errorf("%w: changed, or opened for writing, after the commit: %v", ErrInputChanged, err)
	}
	return err
}

// MoveSpec moves one input into another directory by rename (same filesystem,
// bytes as they are): no copy, no temp output.
type MoveSpec struct {
	Stream  string
	Src     *Dir
	SrcPath string
	Dst     *Dir
	DstPath string
	Input   FileRef
	Output  string
}

// ErrCrossDevice means a move's directories are on different mounts: copy instead.
var ErrCrossDevice = errors.New("fsx: source and destination are on different mounts")

// Move runs a move: lease the input; Begin (with the temporary name it will be
// captured under); capture it (rename to the temp, check identity); rename it
// into Dst without replacing; fsync both directories; Done. Across mounts it
// puts the input back and fails with ErrCrossDevice.
func (r *Runner) Move(ctx context.Context, s MoveSpec) error {
	const kind = KindMove
	r.step(kind, "start")
	ins, err := r.leaseAll(kind, s.Src, []FileRef{s.Input})
	defer releaseAll(ins)
	if err != nil {
		return err
	}
	op := Op{Kind: kind, Stream: s.Stream, Dir: s.SrcPath, Dest: s.DstPath, Output: s.Output, Temp: tempName(tempMove), Inputs: []FileRef{s.Input}}
	if op.ID, err = r.begin(op); err != nil {
		return err
	}
	defer r.end(op.ID)
	r.step(kind, "begun")
	if err := ctx.Err(); err != nil {
		return errors.Join(err, r.Journal.Done(op.ID))
	}
	name, err := s.Src.capture(s.Input, op.Temp, func(st Stat) bool { return s.Input.Matches(st) && !ins[0].Broken() })
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrChanged) {
			err = fmt.Errorf("%w: %w", ErrInputChanged, err)
		}
		if jerr := r.Journal.Err(); jerr != nil {
			return errors.Join(err, jerr)
		}
		return errors.Join(err, r.Journal.Done(op.ID))
	}
	r.step(kind, "captured")
	if err := s.Src.MoveTo(op.Temp, s.Dst, op.Output); err != nil {
		if perr := s.Src.putBack(op.Temp, name); perr != nil {
			return errors.Join(err, perr) // pending: recovery puts it back
		}
		if errors.Is(err, unix.EXDEV) {
			err = fmt.Errorf("%w: %w", ErrCrossDevice, err)
		}
		return errors.Join(err, s.Src.Sync(), r.Journal.Done(op.ID))
	}
	r.step(kind, "moved")
	if err := errors.Join(s.Dst.Sync(), s.Src.Sync()); err != nil {
		return err // recovery sees the move done and finishes
	}
	r.step(kind, "synced")
	if err := r.Journal.Done(op.ID); err != nil {
		return err
	}
	r.step(kind, "done")
	return nil
}

// Resolver gives recovery the directories an op journaled, only where they are
// configured.
type Resolver struct {
	Src func(path string) (*Dir, error)      // a managed dir
	Dst func(path string) (Publisher, error) // a destination (a stream's cold subdir)
	// KeepUntil is when a committed op's inputs may be removed (keep_inactive);
	// nil: at once.
	KeepUntil func(op Op) int64
}

// RecoverStats counts what recovery did.
type RecoverStats struct {
	RolledBack int // abandoned: output removed, inputs intact
	Finished   int // committed (or moved): inputs removed
	Inactive   int // committed, inputs kept for keep_inactive
	Stuck      int // left pending: logged, for later or for the operator
	// Blocked lists the ops that were already blocked before and still are
	// (their reason was reported when it first happened; it is not an error
	// again).
	Blocked []Op
}

// Recover brings every unfinished op that no running job owns (all of them at
// start) to one of the two end states of the on-disk promise, for every kind,
// and is itself idempotent (a crash inside it
// is repaired by running it again):
//
//   - not committed: discard the temp and, if it was published, the output
//     (each only if it is the file the op created); the inputs were not touched;
//   - committed, output verified (identity, size, checksum, the kind's check):
//     remove the inputs by identity (finish) — unless keep_inactive holds them;
//   - committed but the output does not verify: roll back if every input is
//     intact, else touch nothing and report;
//   - a move: done if the destination holds the input, rolled forward if the
//     input is under the temp name it was captured as, else nothing happened.
func (r *Runner) Recover(res Resolver) (RecoverStats, error) {
	var st RecoverStats
	var errs []error
	for _, op := range r.idle() {
		out, err := r.recoverOne(res, op)
		if err != nil {
			out = stuck
			if op.Blocked != "" && op.Commit != nil {
				st.Blocked = append(st.Blocked, op)
			} else {
				errs = append(errs, err)
			}
		}
		switch out {
		case rolledBack:
			st.RolledBack++
		case finished:
			st.Finished++
		case inactive:
			st.Inactive++
		default:
			st.Stuck++
		}
	}
	return st, errors.Join(errs...)
}

type outcome int

const (
	stuck outcome = iota
	rolledBack
	finished
	inactive
)

func (r *Runner) recoverOne(res Resolver, op Op) (outcome, error) {
	src, err := res.Src(op.Dir)
	if err != nil {
		return stuck, fmt.Errorf("recover %s op %d in %s: %w", op.Kind, op.ID, op.Dir, err)
	}
	dst := Publisher(src)
	if op.Dest != "" {
		if dst, err = res.Dst(op.Dest); err != nil {
			return stuck, fmt.Errorf("recover %s op %d: %s unavailable, left for later: %w", op.Kind, op.ID, op.Dest, err)
		}
	}
	if op.Kind == KindMove {
		d, ok := dst.(*Dir)
		if !ok {
			return stuck, fmt.Errorf("move op %d: %s is not a directory", op.ID, op.Dest)
		}
		return r.recoverMove(src, d, op)
	}
	switch {
	case op.Commit == nil && !inputsIntact(src, op) && dst.Published(op.Temp, op.Output, op.Created):
		// Never delete what may be the only copy: without a readable commit the
		// output cannot be verified, and some input is gone or changed.
		return stuck, fmt.Errorf("%s op %d in %s: not committed, and some inputs are gone or changed: its output %q may hold their only copy; left for the operator", op.Kind, op.ID, op.Dir, op.Output)
	case op.Commit == nil:
		return rolledBack, r.rollback(dst, op)
	case res.KeepUntil != nil && r.Clock().UnixNano() < res.KeepUntil(op):
		return inactive, nil
	case r.verifyCommitted(dst, op):
		return finished, r.finish(src, op, r.Journal.Torn(), nil)
	case inputsIntact(src, op):
		return rolledBack, r.rollback(dst, op)
	}
	return stuck, fmt.Errorf("%s op %d in %s: committed output %q does not verify and some inputs are gone: left for the operator", op.Kind, op.ID, op.Dir, op.Output)
}

func (r *Runner) rollback(dst Publisher, op Op) error {
	if err := dst.Discard(op.Temp, op.Output, op.Created); err != nil {
		return fmt.Errorf("roll back %s op %d: %w", op.Kind, op.ID, err)
	}
	r.step(op.Kind, "recover-discarded")
	if err := r.Journal.Done(op.ID); err != nil {
		return err
	}
	r.step(op.Kind, "recover-done")
	return nil
}

// verifyCommitted checks a committed op's output: the file it created, with the
// committed size and checksum, and the kind's own check.
func (r *Runner) verifyCommitted(dst Publisher, op Op) bool {
	if op.Created == nil || !dst.Verify(op.Output, *op.Created, op.Commit.OutSize, op.Commit.OutCRC) {
		return false
	}
	v := r.Verify[op.Kind]
	if v == nil {
		return true
	}
	f, err := dst.Open(op.Output, *op.Created)
	if err != nil {
		return false
	}
	defer f.Close()
	return v(f, op.Inputs, op.Commit) == nil
}

func inputsIntact(d *Dir, op Op) bool {
	for _, in := range op.Inputs {
		_, st, err := d.Locate(in)
		if err != nil || !in.Matches(st) {
			return false
		}
	}
	return true
}

func (r *Runner) recoverMove(src, dst *Dir, op Op) (outcome, error) {
	in := op.Inputs[0]
	if st, err := dst.Stat(op.Output); err == nil && in.SameFile(st) {
		if err := errors.Join(dst.Sync(), src.Sync()); err != nil {
			return stuck, err
		}
		r.step(op.Kind, "recover-synced")
		return finished, r.Journal.Done(op.ID)
	}
	name, _, err := src.Locate(in)
	if err != nil {
		return stuck, fmt.Errorf("move op %d: %q is in neither %s nor %s: left for the operator: %w", op.ID, in.Name, op.Dir, op.Dest, err)
	}
	if name != op.Temp || op.Temp == "" {
		return rolledBack, r.Journal.Done(op.ID) // never captured, or put back
	}
	// Captured but not moved: finish the move the journal announced.
	out := finished
	if err := src.MoveTo(op.Temp, dst, op.Output); err != nil {
		if perr := src.putBack(op.Temp, in.Name); perr != nil {
			return stuck, errors.Join(err, perr)
		}
		out = rolledBack
	}
	r.step(op.Kind, "recover-moved")
	if err := errors.Join(dst.Sync(), src.Sync()); err != nil {
		return stuck, err
	}
	r.step(op.Kind, "recover-synced")
	return out, r.Journal.Done(op.ID)
}

// FinishDue finishes committed ops whose inputs were kept (keep_inactive) once
// KeepUntil has passed: verify the output, then remove the inputs. Ops not
// committed (running jobs) and ops not kept are left alone.
func (r *Runner) FinishDue(res Resolver, kept func(op Op) bool) (int, error) {
	n := 0
	var errs []error
	for _, op := range r.idle() {
		if op.Commit == nil || op.Blocked != "" || !kept(op) || (res.KeepUntil != nil && r.Clock().UnixNano() < res.KeepUntil(op)) {
			continue
		}
		src, err := res.Src(op.Dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dst := Publisher(src)
		if op.Dest != "" {
			if dst, err = res.Dst(op.Dest); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if !r.verifyCommitted(dst, op) {
			errs = append(errs, fmt.Errorf("%s op %d: output %q does not verify: inputs kept", op.Kind, op.ID, op.Output))
			continue
		}
		if err := r.finish(src, op, false, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// setTimes sets an open file's access and modification times to the
// nanosecond (unix.Futimes keeps microseconds: an output a hair older than its
// last input could sort before a segment that preceded it). Like Futimes and
// glibc's futimens fallback it names the file by /proc/self/fd.
func setTimes(f *os.File, ns int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), ts, 0)
}
