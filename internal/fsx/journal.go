package fsx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// The intent journal: an append-only file in the state dir. Every record is
//
//	magic "LJ" | payload length uint32 | CRC-32C(payload) uint32 | payload
//
// and is fsynced before the step it announces. Payloads are a type byte and
// fields (uvarints; byte strings with a uvarint length, so any name is stored
// losslessly). On open, a bad record at the end is a torn write and is truncated
// away; a bad record followed by any good record is a corrupt middle: OpenJournal
// returns ErrJournalCorrupt and the caller must not take destructive actions.

// ErrJournalCorrupt means the journal is damaged before its end.
var ErrJournalCorrupt = errors.New("fsx: intent journal corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	recBegin    byte = 1
	recCreated  byte = 2
	recCommit   byte = 3
	recDone     byte = 4
	recRemoving byte = 5
	recBlocked  byte = 6
	recUpload   byte = 7
	headerLen        = 10
)

// OpKind names the protocol an operation follows. The names are stored in the
// journal; only this package reads or writes them.
type OpKind string

const (
	// KindMerge: inputs concatenated into a new output in their own directory.
	KindMerge OpKind = "merge"
	// KindArchive: one input copied (compressed, or as it is) into the cold tier.
	KindArchive OpKind = "archive"
	// KindMove: one input renamed into the cold tier (same filesystem, as it is).
	KindMove OpKind = "move"
)

// ErrJournalFailed means an append to the journal failed (a write or an fsync):
// its state on disk is unknown, so it takes no further record. Only a restart,
// whose recovery re-reads what did reach the disk, makes it usable again.
var ErrJournalFailed = errors.New("fsx: intent journal append failed; restart to recover")

// FileRef identifies a file: its name in the op's dir and its identity.
type FileRef struct {
	Name    string
	Dev     uint64
	Ino     uint64
	Gen     int64 // birth time in ns, 0 if unknown
	Size    int64
	MtimeNs int64
}

// RefOf makes a FileRef from a name and a Stat.
func RefOf(name string, st Stat) FileRef {
	return FileRef{Name: name, Dev: st.Dev, Ino: st.Ino, Gen: st.Btime, Size: st.Size, MtimeNs: st.MtimeNs}
}

// Matches reports whether st is the same file (identity), unchanged (size, mtime).
func (r FileRef) Matches(st Stat) bool {
	return r.SameFile(st) && st.Size == r.Size && st.MtimeNs == r.MtimeNs
}

// SameFile reports whether st has r's identity (device, inode, generation).
func (r FileRef) SameFile(st Stat) bool {
	return st.Kind == Regular && st.Dev == r.Dev && st.Ino == r.Ino && st.Btime == r.Gen
}

// Op is one journaled operation and what is known of its progress.
type Op struct {
	ID      uint64
	Kind    OpKind
	Stream  string
	Dir     string // the managed dir's path, as configured
	Dest    string // where Output and Temp live when not in Dir (archive: the cold subdir)
	Output  string
	Temp    string
	Inputs  []FileRef
	Created *FileRef // the temp file's identity, once created
	// Upload is the staged output's size and CRC-32C, journaled before it is
	// sent to a destination that is not a directory (an object store).
	Upload *Upload
	Commit *Commit
	// Removing is journaled after a commit once every input was found: from then
	// on an input that is gone was removed by the op itself.
	Removing bool
	// Blocked says why a committed op could not finish (an input missing,
	// changed, or that cannot be removed), once: later attempts that fail the
	// same way are not reported again, and the journal does not grow with them.
	Blocked string
}

// Upload is what an op is about to send to an object store.
type Upload struct {
	Size int64
	CRC  uint32
}

// InputsInactive reports whether the op's inputs are committed into its output
// and wait only to be removed (a merge after its commit).
func (op Op) InputsInactive() bool { return op.Kind == KindMerge && op.Commit != nil }

// OutputInSource is the identity of an unfinished op's output when it lives among
// its inputs (a merge), else nil.
func (op Op) OutputInSource() *FileRef {
	if op.Kind == KindMerge {
		return op.Created
	}
	return nil
}

// Commit is recorded once the output is durable, verified and visible.
type Commit struct {
	OutSize   int64
	OutCRC    uint32
	InputCRCs []uint32
	Newlines  []uint32 // indexes of text inputs after which a newline was inserted
	AtNs      int64
}

// Journal is the open intent journal. Safe for concurrent use.
type Journal struct {
	d      *Dir
	name   string
	mu     sync.Mutex
	f      *os.File
	next   uint64
	ops    map[uint64]*Op
	good   int64 // length of the records known written
	failed error // set by a failed append: final
	torn   bool  // a damaged last record was cut off when the journal was opened

	// writeFault, in tests only, makes an append fail (as ENOSPC would) after
	// writing the first n bytes of its record.
	writeFault func(record int) (n int, err error)
}

// Torn reports whether opening the journal cut off a damaged last record: the
// last thing some op announced is unknown. Recovery then finishes a committed
// op whose output verifies even when some of its inputs are already gone (its
// Removing record may be what was lost), instead of leaving it pending.
func (j *Journal) Torn() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.torn
}

// OpenJournal opens (creating 0600) the journal name in d and replays it.
func OpenJournal(d *Dir, name string) (*Journal, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDWR|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open journal", Path: d.path + "/" + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path+"/"+name)
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read journal: %w", err)
	}
	j := &Journal{d: d, name: name, f: f, ops: map[uint64]*Op{}, next: 1}
	good, err := j.replay(data)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if good < len(data) {
		j.torn = true
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, fmt.Errorf("truncate torn journal tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("fsync journal: %w", err)
		}
	}
	if _, err := f.Seek(int64(good), io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	j.good = int64(good)
	return j, nil
}

// ReadJournal replays the journal name in d without changing it (for `plan`).
// A missing journal has no pending ops.
func ReadJournal(d *Dir, name string) ([]Op, error) {
	data, err := d.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	j := &Journal{ops: map[uint64]*Op{}, next: 1}
	if _, err := j.replay(data); err != nil {
		return nil, err
	}
	return j.Pending(), nil
}

// replay applies every good record and returns the length of the good prefix.
func (j *Journal) replay(data []byte) (int, error) {
	off := 0
	for off < len(data) {
		payload, n, ok := readRecord(data[off:])
		if !ok {
			// Torn tail, unless some good record follows.
			for k := off + 1; k+headerLen <= len(data); k++ {
				if data[k] == 'L' && data[k+1] == 'J' {
					if _, _, ok := readRecord(data[k:]); ok {
						return 0, fmt.Errorf("%w: bad record at offset %d followed by good records", ErrJournalCorrupt, off)
					}
				}
			}
			return off, nil
		}
		if err := j.apply(payload); err != nil {
			return 0, fmt.Errorf("%w: record at offset %d: %v", ErrJournalCorrupt, off, err)
		}
		off += n
	}
	return off, nil
}

func readRecord(b []byte) (payload []byte, n int, ok bool) {
	if len(b) < headerLen || b[0] != 'L' || b[1] != 'J' {
		return nil, 0, false
	}
	l := binary.BigEndian.Uint32(b[2:6])
	if uint64(l) > uint64(len(b)-headerLen) {
		return nil, 0, false
	}
	p := b[headerLen : headerLen+int(l)]
	if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(b[6:10]) {
		return nil, 0, false
	}
	return p, headerLen + int(l), true
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("short record")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint decodes binary.AppendVarint's zig-zag encoding.
func (d *dec) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *dec) bytes() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errors.New("short record")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *dec) ref() FileRef {
	return FileRef{Name: d.bytes(), Dev: d.uvarint(), Ino: d.uvarint(), Gen: d.varint(), Size: d.varint(), MtimeNs: d.varint()}
}

type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(s string)   { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) ref(r FileRef) {
	e.bytes(r.Name)
	e.uvarint(r.Dev)
	e.uvarint(r.Ino)
	e.varint(r.Gen)
	e.varint(r.Size)
	e.varint(r.MtimeNs)
}

func (j *Journal) apply(p []byte) error {
	if len(p) == 0 {
		return errors.New("empty record")
	}
	d := &dec{b: p[1:]}
	id := d.uvarint()
	switch p[0] {
	case recBegin:
		op := &Op{ID: id, Kind: OpKind(d.bytes()), Stream: d.bytes(), Dir: d.bytes(), Dest: d.bytes(), Output: d.bytes(), Temp: d.bytes()}
		n := d.uvarint()
		for i := uint64(0); i < n && d.err == nil; i++ {
			op.Inputs = append(op.Inputs, d.ref())
		}
		if op.Kind == KindArchive && op.Temp == "" {
			op.Kind = KindMove // written before moves had their own kind
		}
		if d.err == nil {
			j.ops[id] = op
		}
	case recCreated:
		r := d.ref()
		if op := j.ops[id]; op != nil && d.err == nil {
			op.Created = &r
		}
	case recCommit:
		c := &Commit{OutSize: d.varint(), OutCRC: uint32(d.uvarint()), AtNs: d.varint()}
		n := d.uvarint()
		for i := uint64(0); i < n && d.err == nil; i++ {
			c.InputCRCs = append(c.InputCRCs, uint32(d.uvarint()))
		}
		n = d.uvarint()
		for i := uint64(0); i < n && d.err == nil; i++ {
			c.Newlines = append(c.Newlines, uint32(d.uvarint()))
		}
		if op := j.ops[id]; op != nil && d.err == nil {
			op.Commit = c
		}
	case recUpload:
		u := &Upload{Size: d.varint(), CRC: uint32(d.uvarint())}
		if op := j.ops[id]; op != nil && d.err == nil {
			op.Upload = u
		}
	case recRemoving:
		if op := j.ops[id]; op != nil && d.err == nil {
			op.Removing = true
		}
	case recBlocked:
		why := d.bytes()
		if op := j.ops[id]; op != nil && d.err == nil {
			op.Blocked = why
		}
	case recDone:
		if d.err == nil {
			delete(j.ops, id)
		}
	default:
		return fmt.Errorf("unknown record type %d", p[0])
	}
	if d.err != nil {
		return d.err
	}
	if id >= j.next {
		j.next = id + 1
	}
	return nil
}

func frame(payload []byte) []byte {
	out := make([]byte, headerLen, headerLen+len(payload))
	out[0], out[1] = 'L', 'J'
	binary.BigEndian.PutUint32(out[2:6], uint32(len(payload)))
	binary.BigEndian.PutUint32(out[6:10], crc32.Checksum(payload, castagnoli))
	return append(out, payload...)
}

// append writes one record and applies it; durable says whether it must reach
// the disk before append returns (fsync). A failed write or fsync is final:
// the journal takes no further record (see ErrJournalFailed).
func (j *Journal) append(payload []byte, durable bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed != nil {
		return j.failed
	}
	if j.f == nil {
		return errors.New("fsx: journal closed")
	}
	rec := frame(payload)
	var err error
	if j.writeFault != nil {
		n, ferr := j.writeFault(len(rec))
		if ferr != nil {
			_, _ = j.f.Write(rec[:n])
			err = ferr
		}
	}
	if err == nil {
		_, err = j.f.Write(rec)
	}
	if err != nil {
		j.failed = fmt.Errorf("%w: append: %v", ErrJournalFailed, err)
		// Leave no partial record behind if the file lets us (best effort: the
		// next start truncates a torn tail anyway).
		_ = j.f.Truncate(j.good)
		return j.failed
	}
	if durable {
		if err := j.f.Sync(); err != nil {
			j.failed = fmt.Errorf("%w: fsync: %v", ErrJournalFailed, err)
			return j.failed
		}
	}
	j.good += int64(len(rec))
	return j.apply(payload)
}

// Err is non-nil once an append has failed: from then on the journal takes no
// record, and no destructive step may be taken until a restart has recovered.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

func encodeBegin(id uint64, op *Op) []byte {
	e := &enc{b: []byte{recBegin}}
	e.uvarint(id)
	e.bytes(string(op.Kind))
	e.bytes(op.Stream)
	e.bytes(op.Dir)
	e.bytes(op.Dest)
	e.bytes(op.Output)
	e.bytes(op.Temp)
	e.uvarint(uint64(len(op.Inputs)))
	for _, r := range op.Inputs {
		e.ref(r)
	}
	return e.b
}

func encodeCreated(id uint64, r FileRef) []byte {
	e := &enc{b: []byte{recCreated}}
	e.uvarint(id)
	e.ref(r)
	return e.b
}

func encodeUpload(id uint64, u *Upload) []byte {
	e := &enc{b: []byte{recUpload}}
	e.uvarint(id)
	e.varint(u.Size)
	e.uvarint(uint64(u.CRC))
	return e.b
}

func encodeCommit(id uint64, c *Commit) []byte {
	e := &enc{b: []byte{recCommit}}
	e.uvarint(id)
	e.varint(c.OutSize)
	e.uvarint(uint64(c.OutCRC))
	e.varint(c.AtNs)
	e.uvarint(uint64(len(c.InputCRCs)))
	for _, v := range c.InputCRCs {
		e.uvarint(uint64(v))
	}
	e.uvarint(uint64(len(c.Newlines)))
	for _, v := range c.Newlines {
		e.uvarint(uint64(v))
	}
	return e.b
}

// Begin journals a new operation and returns its id.
func (j *Journal) Begin(op Op) (uint64, error) {
	j.mu.Lock()
	id := j.next
	j.next++
	j.mu.Unlock()
	return id, j.append(encodeBegin(id, &op), true)
}

// Created journals the identity of the op's temporary output.
func (j *Journal) Created(id uint64, r FileRef) error { return j.append(encodeCreated(id, r), true) }

// Upload journals the size and CRC-32C of the output about to be uploaded.
func (j *Journal) Upload(id uint64, u Upload) error { return j.append(encodeUpload(id, &u), true) }

// Commit journals that the op's output is durable, verified and in place.
func (j *Journal) Commit(id uint64, c Commit) error { return j.append(encodeCommit(id, &c), true) }

// Removing journals that every input of a committed op was found and is about
// to be removed.
func (j *Journal) Removing(id uint64) error { return j.append(encodeID(recRemoving, id), true) }

// Done journals that the op is finished (or abandoned with its inputs intact).
// It is not fsynced: every end state is one recovery recognises and finishes
// again idempotently, so losing a Done record costs a re-check, never a byte;
// the next durable record, or Close, makes it durable.
func (j *Journal) Done(id uint64) error { return j.append(encodeID(recDone, id), false) }

// Blocked journals why a committed op cannot finish for now. Not fsynced: it
// only keeps a repeated failure from being reported (and journaled) again.
func (j *Journal) Blocked(id uint64, why string) error {
	return j.append(encodeBlocked(id, why), false)
}

func encodeBlocked(id uint64, why string) []byte {
	e := &enc{b: encodeID(recBlocked, id)}
	e.bytes(why)
	return e.b
}

func encodeID(typ byte, id uint64) []byte {
	e := &enc{b: []byte{typ}}
	e.uvarint(id)
	return e.b
}

// Pending returns copies of the unfinished ops, oldest first.
func (j *Journal) Pending() []Op {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Op, 0, len(j.ops))
	for _, op := range j.ops {
		c := *op
		out = append(out, c)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// Compact rewrites the journal with only the pending ops, atomically, when it
// has grown past limit bytes.
func (j *Journal) Compact(limit int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed != nil {
		return j.failed
	}
	fi, err := j.f.Stat()
	if err != nil || fi.Size() < limit {
		return err
	}
	if err := j.rewrite(j.d); err != nil {
		// The rename may have happened: the open file may be the old,
		// unlinked journal. Appending there would be appending nowhere.
		j.failed = fmt.Errorf("%w: compact: %v", ErrJournalFailed, err)
		return j.failed
	}
	return nil
}

// MoveTo writes the journal anew in d (its pending ops, as Compact does),
// durably, and appends there from now on: what a daemon does when its state
// dir was deleted under it, so that the record of half-done work (committed
// merges whose inputs wait for keep_inactive) outlives the process. The old
// file is left alone.
func (j *Journal) MoveTo(d *Dir) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed != nil {
		return j.failed
	}
	return j.rewrite(d)
}

// rewrite replaces the journal in d with its pending ops, durably, and appends
// there from then on (j.mu held). On an error the old file may already be
// replaced: the caller decides what that means.
func (j *Journal) rewrite(d *Dir) error {
	buf := j.pendingRecords()
	if err := d.ReplaceFile(j.name, buf, 0o600); err != nil {
		return err
	}
	fd, err := unix.Openat(d.fd, j.name, unix.O_RDWR|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open journal", Path: d.path + "/" + j.name, Err: err}
	}
	j.f.Close()
	j.f = os.NewFile(uintptr(fd), d.path+"/"+j.name)
	j.d, j.good = d, int64(len(buf))
	return nil
}

// pendingRecords encodes the pending ops as a journal of their own (j.mu held).
func (j *Journal) pendingRecords() []byte {
	var buf bytes.Buffer
	ids := make([]uint64, 0, len(j.ops))
	for id := range j.ops {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for _, id := range ids {
		op := j.ops[id]
		buf.Write(frame(encodeBegin(id, op)))
		if op.Created != nil {
			buf.Write(frame(encodeCreated(id, *op.Created)))
		}
		if op.Upload != nil {
			buf.Write(frame(encodeUpload(id, op.Upload)))
		}
		if op.Commit != nil {
			buf.Write(frame(encodeCommit(id, op.Commit)))
		}
		if op.Removing {
			buf.Write(frame(encodeID(recRemoving, id)))
		}
		if op.Blocked != "" {
			buf.Write(frame(encodeBlocked(id, op.Blocked)))
		}
	}
	return buf.Bytes()
}

// Close closes the journal file. Safe to call twice.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	var err error
	if j.failed == nil {
		err = j.f.Sync() // makes lazy Done records durable
	}
	err = errors.Join(err, j.f.Close())
	j.f = nil
	return err
}
