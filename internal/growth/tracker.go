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

type segState struct {
	stream string
	size   int64
	win    Window
}

type streamState struct {
	appended int64 // bytes appended since tracking began (monotone)
	win      Window
}

// Tracker keeps a window per segment (its size) and per stream (bytes appended).
// Stream growth counts bytes appended only: growth of known segments, plus the
// size of segments that appeared since the previous scan of that stream. Segments
// that disappear, and outputs the daemon itself produced (see Adopt), are neither
// growth nor shrinkage. Not safe for concurrent use.
type Tracker struct {
	opts    Options
	segs    map[model.SegmentID]*segState
	streams map[string]*streamState
	adopted map[model.SegmentID]bool
	fs      map[uint64]*Window // used bytes per filesystem device
}

// NewTracker returns an empty tracker.
func NewTracker(o Options) *Tracker {
	return &Tracker{opts: o.withDefaults(), segs: map[model.SegmentID]*segState{},
		streams: map[string]*streamState{}, adopted: map[model.SegmentID]bool{}, fs: map[uint64]*Window{}}
}

// SetOptions changes window options (on reload); history is kept.
func (t *Tracker) SetOptions(o Options) { t.opts = o.withDefaults() }

// Observe records a complete scan of stream at time at: every segment it has now.
// Segments of the stream not in obs are forgotten.
func (t *Tracker) Observe(stream string, at time.Time, obs []Obs) {
	st, known := t.streams[stream]
	if !known {
		st = &streamState{}
		t.streams[stream] = st
	}
	present := make(map[model.SegmentID]bool, len(obs))
	for _, o := range obs {
		present[o.ID] = true
		s, ok := t.segs[o.ID]
		switch {
		case !ok:
			s = &segState{stream: stream, size: o.Size}
			t.segs[o.ID] = s
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
		}
		s.size = o.Size
		s.stream = stream
		s.win.Add(at, o.Size, t.opts)
	}
	for id, s := range t.segs {
		if s.stream == stream && !present[id] {
			delete(t.segs, id)
		}
	}
	st.win.Add(at, st.appended, t.opts)
}

// Adopt marks id as an output of the daemon (a consolidated or restored segment):
// when it first appears its bytes are not counted as appended.
func (t *Tracker) Adopt(id model.SegmentID) { t.adopted[id] = true }

// SegmentRate is the smoothed growth of a segment in bytes/s (0 if unknown).
func (t *Tracker) SegmentRate(id model.SegmentID) float64 {
	if s, ok := t.segs[id]; ok {
		return s.win.Rate(t.opts)
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
func (t *Tracker) Segments() int { return len(t.segs) }

// Retain forgets streams not named in keep (after a reload removed them).
func (t *Tracker) Retain(keep map[string]bool) {
	for name := range t.streams {
		if !keep[name] {
			delete(t.streams, name)
		}
	}
	for id, s := range t.segs {
		if !keep[s.stream] {
			delete(t.segs, id)
		}
	}
}
