package growth

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/logcompactd/logcompactd/internal/model"
)

// History file format: magic, gob-encoded snapshot, CRC-32C of everything before it.
var magic = []byte("LCDGROW1")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt means the history could not be decoded; the caller starts fresh.
var ErrCorrupt = errors.New("growth: history corrupt")

type wireSample struct{ T, V int64 }

type wireSeg struct {
	ID      model.SegmentID
	Stream  string
	Size    int64
	Samples []wireSample
}

type wireStream struct {
	Name     string
	Appended int64
	Samples  []wireSample
}

type wire struct {
	Segs    []wireSeg
	Streams []wireStream
	FS      map[uint64][]wireSample
	Adopted []model.SegmentID // outputs of the daemon not yet seen by a scan
}

func toWire(w *Window) []wireSample {
	if w == nil {
		return nil
	}
	out := make([]wireSample, len(w.samples))
	for i, s := range w.samples {
		out[i] = wireSample{s.t, s.v}
	}
	return out
}

func fromWire(ws []wireSample, max int) Window {
	if len(ws) > max {
		ws = ws[len(ws)-max:]
	}
	w := Window{samples: make([]sample, 0, len(ws))}
	for _, s := range ws {
		if n := len(w.samples); n > 0 && (s.T < w.samples[n-1].t || s.V < w.samples[n-1].v) {
			w.samples = w.samples[:0] // not monotone: keep only what follows
		}
		w.samples = append(w.samples, sample{s.T, s.V})
	}
	return w
}

// Marshal encodes the tracker's history.
func (t *Tracker) Marshal() ([]byte, error) {
	var w wire
	w.Segs = make([]wireSeg, 0, t.Segments())
	for name, st := range t.streams {
		for id, s := range st.segs {
			w.Segs = append(w.Segs, wireSeg{ID: id, Stream: name, Size: s.size, Samples: toWire(s.win)})
		}
	}
	for name, s := range t.streams {
		w.Streams = append(w.Streams, wireStream{Name: name, Appended: s.appended, Samples: toWire(&s.win)})
	}
	for id := range t.adopted {
		w.Adopted = append(w.Adopted, id)
	}
	w.FS = map[uint64][]wireSample{}
	for dev, win := range t.fs {
		w.FS[dev] = toWire(win)
	}
	var buf bytes.Buffer
	buf.Write(magic)
	if err := gob.NewEncoder(&buf).Encode(&w); err != nil {
		return nil, fmt.Errorf("encode growth history: %w", err)
	}
	return binary.BigEndian.AppendUint32(buf.Bytes(), crc32.Checksum(buf.Bytes(), castagnoli)), nil
}

// Unmarshal replaces the tracker's history with data from Marshal. On error the
// tracker is unchanged.
func (t *Tracker) Unmarshal(data []byte) error {
	if len(data) < len(magic)+4 || !bytes.Equal(data[:len(magic)], magic) {
		return fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	var w wire
	if err := gob.NewDecoder(bytes.NewReader(body[len(magic):])).Decode(&w); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	streams := make(map[string]*streamState, len(w.Streams))
	stream := func(name string) *streamState {
		st := streams[name]
		if st == nil {
			st = &streamState{segs: map[model.SegmentID]segState{}}
			streams[name] = st
		}
		return st
	}
	for _, s := range w.Streams {
		st := stream(s.Name)
		st.appended, st.win = s.Appended, fromWire(s.Samples, t.opts.MaxSamples)
	}
	for _, s := range w.Segs {
		seg := segState{size: s.Size}
		if w := fromWire(s.Samples, t.opts.MaxSamples); !w.flat() {
			seg.win = &w
		}
		stream(s.Stream).segs[s.ID] = seg
	}
	fs := make(map[uint64]*Window, len(w.FS))
	for dev, ss := range w.FS {
		win := fromWire(ss, t.opts.MaxSamples)
		fs[dev] = &win
	}
	adopted := make(map[model.SegmentID]bool, len(w.Adopted))
	for _, id := range w.Adopted {
		adopted[id] = true
	}
	t.streams, t.fs, t.adopted = streams, fs, adopted
	return nil
}

// ObserveFS records the used bytes of filesystem dev at time at; FSRate is then
// the rate at which the filesystem fills (0 while it empties).
func (t *Tracker) ObserveFS(dev uint64, at time.Time, used int64) {
	w := t.fs[dev]
	if w == nil {
		w = &Window{}
		t.fs[dev] = w
	}
	w.Add(at, used, t.opts)
}

// FSRate is the smoothed fill rate of filesystem dev in bytes/s, once its
// samples span FSMinSpan (or half the window, if shorter); 0 before. The
// filesystem is written by everything on the host: a compiler or a package
// install filling a few hundred MB between two samples a second apart would
// otherwise be extrapolated over time_to_archive, and keep_free's guard would
// archive the oldest segments of every stream on it at once.
func (t *Tracker) FSRate(dev uint64) float64 {
	w := t.fs[dev]
	if w == nil || len(w.samples) < 2 {
		return 0
	}
	o := t.opts.withDefaults()
	if span := time.Duration(w.samples[len(w.samples)-1].t - w.samples[0].t); span < min(FSMinSpan, o.Window/2) {
		return 0
	}
	return w.Rate(t.opts)
}

// FSMinSpan is how long a filesystem's fill is observed before its rate counts.
const FSMinSpan = time.Minute
