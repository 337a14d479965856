package growth

import (
	"time"

	"github.com/logcompactd/logcompactd/internal/model"
)

// Obs is one segment of a stream as a scan saw it.
type Obs struct {
	ID   model.SegmentID
	Size int64
}

// segState is one segment. Most segments of a large host are closed and never
// change: their rate is 0 and they keep no window (win is nil), only their size,
// so that an idle segment costs a map slot. A window is made when the size
// changes and dropped when every sample in it is the same size again.
type segState struct {
	size int64
	seen uint64  // the stream's observation generation that last saw it
	win  *Window // nil: the size has not changed within the window (rate 0)
}

type streamState struct {
	appended int64 // bytes appended since tracking began (monotone)
	gen      uint64
	win      Window
	segs     map[model.SegmentID]segState // by value: no allocation per segment
	// windows is at least the number of segments with a window: Touch walks
	// the segments only when one may have one (an idle stream of 100,000
	// segments has none, and walking its map was most of a quiet tick's
	// growth work).
	windows int
}

// Tracker keeps a window per segment whose size changed within the window (the
// others have rate 0 and keep their size only) and per stream (bytes appended).
// Stream growth counts bytes appended only: growth of known segments, plus the
// size of segments that appeared since the previous scan of that stream. Segments
// that disappear, and outputs the daemon itself produced (see Adopt), are neither
// growth nor shrinkage. Segments are kept per stream, so observing one stream
// costs in proportion to that stream alone. Not safe for concurrent use.
type Tracker struct {
	opts    Options
	streams map[string]*streamState
	adopted map[model.SegmentID]bool
	fs      map[uint64]*Window // used bytes per filesystem device
}

// NewTracker returns an empty tracker.
func NewTracker(o Options) *Tracker {
	return &Tracker{opts: o.withDefaults(), streams: map[string]*streamState{},
		adopted: map[model.SegmentID]bool{}, fs: map[uint64]*Window{}}
}

// SetOptions changes window options (on reload); history is kept.
func (t *Tracker) SetOptions(o Options) { t.opts = o.withDefaults() }

// Shrink is a segment that got smaller between two scans: its writer truncated
// or replaced it (logrotate's copytruncate), and From − To bytes vanished —
// bytes that, if they were not copied elsewhere first, are lost.
type Shrink struct {
	ID       model.SegmentID
	From, To int64
}

// Observe records a complete scan of stream at time at: every segment it has now.
// Segments of the stream not in obs are forgotten. A segment that moved in from
// another stream (a rename across patterns) is new to this one. It returns the
// segments that shrank since the last scan.
func (t *Tracker) Observe(stream string, at time.Time, obs []Obs) (shrunk []Shrink) {
	st, known := t.streams[stream]
	if !known {
		st = &streamState{segs: make(map[model.SegmentID]segState, len(obs))}
		t.streams[stream] = st
	}
	st.gen++
	distinct, windows := 0, 0
	// The stream's previous observation (or touch): when a segment with no window
	// grows, it was last known at its old size then.
	prevAt, hasPrev := st.win.last()
	for _, o := range obs {
		s, ok := st.segs[o.ID]
		switch {
		case !ok:
			s = segState{size: o.Size}
			// A segment that appeared since the last scan holds appended bytes, unless
			// this is the stream's first scan ever, or it is our own output.
			if known && !t.adopted[o.ID] {
				st.appended += o.Size
			}
			delete(t.adopted, o.ID)
		case o.Size >= s.size:
			st.appended += o.Size - s.size
		default:
			// Truncated or replaced: what it holds now was written since.
			st.appended += o.Size
			shrunk = append(shrunk, Shrink{ID: o.ID, From: s.size, To: o.Size})
		}
		if s.seen != st.gen {
			distinct++
		}
		switch {
		case s.win != nil:
			s.win.Add(at, o.Size, t.opts)
		case ok && o.Size > s.size && hasPrev:
			s.win = &Window{}
			s.win.Add(time.Unix(0, prevAt), s.size, t.opts)
			s.win.Add(at, o.Size, t.opts)
		}
		if s.win != nil && s.win.flat() {
			s.win = nil
		}
		if s.win != nil {
			windows++ // a segment listed twice is counted twice: at least, as windows says
		}
		s.size = o.Size
		s.seen = st.gen
		st.segs[o.ID] = s
	}
	if len(st.segs) > distinct {
		for id, s := range st.segs {
			if s.seen != st.gen {
				delete(st.segs, id)
			}
		}
	}
	st.windows = windows
	st.win.Add(at, st.appended, t.opts)
	return shrunk
}

// Touch records that stream is known to be unchanged since its last observation
// (the directory watch saw no event): every segment keeps its size at time at, so
// rates decay as they would with a full observation, without one.
func (t *Tracker) Touch(stream string, at time.Time) {
	st, ok := t.streams[stream]
	if !ok {
		return
	}
	if st.windows > 0 {
		windows := 0
		for id, s := range st.segs {
			if s.win == nil {
				continue // unchanged within the window: rate 0 before and after
			}
			s.win.Add(at, s.size, t.opts)
			if s.win.flat() {
				s.win = nil
				st.segs[id] = s
				continue
			}
			windows++
		}
		st.windows = windows
	}
	st.win.Add(at, st.appended, t.opts)
}

// Adopt marks id as an output of the daemon (a consolidated or restored segment):
// when it first appears its bytes are not counted as appended.
func (t *Tracker) Adopt(id model.SegmentID) { t.adopted[id] = true }

// Unadopt forgets an adoption whose output was never published (its job was
// abandoned), so that adoptions do not pile up.
func (t *Tracker) Unadopt(id model.SegmentID) { delete(t.adopted, id) }

// SegmentRate is the smoothed growth of a segment in bytes/s (0 if unknown).
func (t *Tracker) SegmentRate(stream string, id model.SegmentID) float64 {
	if st, ok := t.streams[stream]; ok {
		if s, ok := st.segs[id]; ok && s.win != nil {
			return s.win.Rate(t.opts)
		}
	}
	return 0
}

// StreamRate is the smoothed rate at which bytes are appended to a stream.
func (t *Tracker) StreamRate(stream string) float64 {
	if s, ok := t.streams[stream]; ok {
		return s.win.Rate(t.opts)
	}
	return 0
}

// Segments is the number of segments tracked.
func (t *Tracker) Segments() int {
	n := 0
	for _, st := range t.streams {
		n += len(st.segs)
	}
	return n
}

// Retain forgets streams not named in keep (after a reload removed them).
func (t *Tracker) Retain(keep map[string]bool) {
	for name := range t.streams {
		if !keep[name] {
			delete(t.streams, name)
		}
	}
}
