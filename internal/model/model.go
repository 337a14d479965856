// Package model holds the snapshot the planners decide on: streams and their
// segments in stream order, each with its state, growth and prediction. It is data
// and pure functions only; nothing here touches the disk or the clock.
package model

import (
	"time"

	"github.com/logcompactd/logcompactd/internal/config"
)

// State is a segment's state; String is what plan prints. A byte, not a
// string: a snapshot holds one per segment (100,000 on a large host).
type State uint8

const (
	_            State = iota
	Active             // newest, recently modified, or open for writing: never touched
	Closed             // may be merged or archived
	Consolidated       // a compaction output (closed); merged again only below target_size
	Inactive           // input of a committed compaction awaiting deletion
)

var stateNames = [...]string{Active: "active", Closed: "closed", Consolidated: "consolidated", Inactive: "inactive"}

// String is the state as plan prints it ("" when unset).
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return ""
}

// MarshalText makes a State a JSON string.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// SegmentID identifies a segment across renames: device, inode and a generation
// (birth time in ns where the filesystem reports it, else 0) so that a reused inode
// does not inherit another file's history.
type SegmentID struct {
	Dev, Ino uint64
	Gen      int64
}

// Access is who may read and change a segment: owner, group, permission bits.
type Access struct{ UID, GID, Mode uint32 }

// Segment is one file of a stream: what a scan saw of it (name, identity,
// size, times, access, whether it is open for writing) and, at snapshot time,
// what a pass made of it (state, growth, prediction). The scanner keeps one per
// segment and the snapshot is made over the same list, so a large host holds
// each segment once: the fields are ordered to pack (120 bytes).
type Segment struct {
	Name    string
	ID      SegmentID
	Size    int64
	MtimeNs int64  // modification time, ns since the epoch (see Mtime)
	CtimeNs int64  // status change time: an open-for-writing answer holds while size, mtime and ctime do
	Access  Access // a merge never mixes segments whose Access differs
	Sparse  bool   // mostly holes: archived as it is, holes kept (fsx.Sparse)
	// Writing: some process holds it open for writing (or it could not be
	// told: fail closed), as far as the scanner knows (see scanner.CheckWriters).
	Writing bool
	// What a pass made of it (Classify clears and sets them; the snapshot and
	// the planners fill in the rest).
	State         State
	Why           string  // why the segment is active ("newest", "modified 2s ago", "open for writing")
	GrowthRate    float64 // bytes/s; 0 unless active
	PredictedSize float64 // bytes at now + growth.horizon
	Priority      float64 // the stream's compaction priority while a merge candidate, else 0
}

// Mtime is the modification time.
func (s Segment) Mtime() time.Time { return time.Unix(0, s.MtimeNs) }

// Stream is one configured stream at snapshot time.
type Stream struct {
	Config         config.Stream
	Segments       []Segment // in stream order, oldest first
	Foreign        []string  // names matching the pattern that are not segments (symlinks, FIFOs, links)
	HotBytes       int64     // sum of segment sizes
	GrowthRate     float64   // bytes appended per second
	PredictedBytes float64   // hot bytes at now + archive.time_to_archive
	Err            string    // why the stream could not be scanned, if it could not
	FS             FSInfo
}

// FSInfo describes the filesystem a stream's directory is on.
type FSInfo struct {
	Dev      uint64
	Total    uint64  // bytes
	Avail    uint64  // bytes available to unprivileged users
	FillRate float64 // bytes/s by which used space grows, from the growth tracker
}

// Classify sets the state of each segment of an ordered stream: active if it is the
// newest, was modified within quiesce before now, or is open for writing; else
// consolidated if its name carries the consolidated marker, else closed. What an
// earlier pass made of the segments (growth, prediction, priority) is cleared.
func Classify(segs []Segment, now time.Time, quiesce time.Duration) {
	for i := range segs {
		s := &segs[i]
		s.GrowthRate, s.PredictedSize, s.Priority = 0, 0, 0
		switch age := now.Sub(s.Mtime()); {
		case i == len(segs)-1:
			s.State, s.Why = Active, "newest"
		case age < quiesce:
			s.State, s.Why = Active, "modified "+age.Round(time.Millisecond).String()+" ago"
		case s.Writing:
			s.State, s.Why = Active, "open for writing"
		case IsConsolidated(s.Name):
			s.State, s.Why = Consolidated, ""
		default:
			s.State, s.Why = Closed, ""
		}
	}
}
