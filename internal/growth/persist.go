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
//
// LCDGROW2 keeps a stream's idle segments as columns of numbers; LCDGROW1 kept
// a struct and the stream's name per segment, and encoding it was most of an
// idle daemon's periodic save (~90 ms at 100,000 segments). Both are read; a
// binary that knows only LCDGROW1 refuses LCDGROW2 and starts fresh, rather
// than finding its streams without their segments and counting them all as
// appended.
var (
	magic   = []byte("LCDGROW2")
	magicV1 = []byte("LCDGROW1")
)

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
	// The stream's segments without a window (LCDGROW2), one column per field.
	Dev, Ino  []uint64
	Gen, Size []int64
	// Its segments with a window (LCDGROW2; Stream left empty).
	Growing []wireSeg
}

type wire struct {
	Segs    []wireSeg // LCDGROW1: every segment
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
	for name, st := range t.streams {
		ws := wireStream{Name: name, Appended: st.appended, Samples: toWire(&st.win),
			Dev: make([]uint64, 0, len(st.segs)), Ino: make([]uint64, 0, len(st.segs)),
			Gen: make([]int64, 0, len(st.segs)), Size: make([]int64, 0, len(st.segs))}
		for id, s := range st.segs {
			if s.win != nil {
				ws.Growing = append(ws.Growing, wireSeg{ID: id, Size: s.size, Samples: toWire(s.win)})
				continue
			}
			ws.Dev, ws.Ino = append(ws.Dev, id.Dev), append(ws.Ino, id.Ino)
			ws.Gen, ws.Size = append(ws.Gen, id.Gen), append(ws.Size, s.size)
		}
		w.Streams = append(w.Streams, ws)
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
	return sealed(buf.Bytes()), nil
}

// sealed is data (magic and body) followed by its CRC-32C: a history file.
func sealed(data []byte) []byte {
	return binary.BigEndian.AppendUint32(data, crc32.Checksum(data, castagnoli))
}

// Unmarshal replaces the tracker's history with data from Marshal. On error the
// tracker is unchanged.
func (t *Tracker) Unmarshal(data []byte) error {
	if len(data) < len(magic)+4 || (!bytes.Equal(data[:len(magic)], magic) && !bytes.Equal(data[:len(magicV1)], magicV1)) {
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
	addSeg := func(st *streamState, s wireSeg) {
		seg := segState{size: s.Size}
		if w := fromWire(s.Samples, t.opts.MaxSamples); !w.flat() {
			seg.win = &w
			st.windows++
		}
		st.segs[s.ID] = seg
	}
	for _, s := range w.Streams {
		st := stream(s.Name)
		st.appended, st.win = s.Appended, fromWire(s.Samples, t.opts.MaxSamples)
		n := len(s.Dev)
		if len(s.Ino) != n || len(s.Gen) != n || len(s.Size) != n {
			return fmt.Errorf("%w: stream %q: segment columns of %d, %d, %d and %d", ErrCorrupt, s.Name, n, len(s.Ino), len(s.Gen), len(s.Size))
		}
		if len(st.segs) == 0 {
			st.segs = make(map[model.SegmentID]segState, n+len(s.Growing))
		}
		for i := range n {
			st.segs[model.SegmentID{Dev: s.Dev[i], Ino: s.Ino[i], Gen: s.Gen[i]}] = segState{size: s.Size[i]}
		}
		for _, g := range s.Growing {
			addSeg(st, g)
		}
	}
	for _, s := range w.Segs {
		addSeg(stream(s.Stream), s)
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
