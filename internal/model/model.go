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

// Segment is one file of a stream at snapshot time. A snapshot holds one per
// segment: the fields are ordered to pack (112 bytes).
type Segment struct {
	Name          string
	ID            SegmentID
	Size          int64
	MtimeNs       int64  // modification time, ns since the epoch (see Mtime)
	Access        Access // a merge never mixes segments whose Access differs
	Sparse        bool   // mostly holes: archived as it is, holes kept (fsx.Sparse)
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
// consolidated if its name carries the consolidated marker, else closed.
func Classify(segs []Segment, writing []bool, now time.Time, quiesce time.Duration) {
	for i := range segs {
		s := &segs[i]
		switch age := now.Sub(s.Mtime()); {
		case i == len(segs)-1:
			s.State, s.Why = Active, "newest"
		case age < quiesce:
			s.State, s.Why = Active, "modified "+age.Round(time.Millisecond).String()+" ago"
		case writing[i]:
			s.State, s.Why = Active, "open for writing"
		case IsConsolidated(s.Name):
			s.State, s.Why = Consolidated, ""
		default:
			s.State, s.Why = Closed, ""
		}
	}
}
