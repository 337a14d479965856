package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/logcompactd/logcompactd/internal/model"
)

// Report is the `plan --json` and `status --json` contract (README): the
// decisions of one pass, with why there are none and what is held back.
type Report struct {
	Time    string         `json:"time"`
	Load    float64        `json:"load"`
	Source  string         `json:"source"`        // "daemon": the running daemon's last pass; "local": computed by this command
	PID     int            `json:"pid,omitempty"` // the daemon's, when Source is "daemon"
	Streams []StreamReport `json:"streams"`

	// streams read from disk (verified: their previous list confirmed and
	// kept), and vouched unchanged by inotify
	reread, verified, reused int
}

// StreamReport is one stream of the report.
type StreamReport struct {
	Name           string          `json:"name"`
	Dir            string          `json:"dir"`
	Pattern        string          `json:"pattern"`
	Error          string          `json:"error,omitempty"` // why the stream could not be scanned
	HotBytes       int64           `json:"hot_bytes"`
	CapBytes       int64           `json:"cap_bytes"` // archive.max_hot_bytes
	GrowthRate     float64         `json:"growth_rate"`
	HorizonSeconds float64         `json:"horizon_seconds"` // archive.time_to_archive
	PredictedBytes float64         `json:"predicted_bytes"`
	Priority       float64         `json:"priority"`
	SegmentCount   int             `json:"segment_count"`
	Segments       []SegmentReport `json:"segments"`
	Actions        []Action        `json:"actions"`
	Deferred       []Action        `json:"deferred"` // decided, held back (load); each reason says why
	Notes          []string        `json:"notes"`    // why there is no action of a kind
	// OverCap: hot bytes are over max_hot_bytes and nothing can be archived now.
	OverCap bool     `json:"over_cap"`
	Skipped []string `json:"skipped"` // names like segments that are not (links, FIFOs, ...)

	// segs, in a report with detail, are the pass's snapshot of the stream's
	// segments, made into rows one at a time as the report is written (rows):
	// made up front, the rows were 8 MB more at 100,000 segments, next to the
	// snapshot and the scan they came from, at plan's peak. Segments then
	// stays empty; only WriteJSON and WriteTable write such a report.
	segs []model.Segment
}

// rows calls fn with each row of the stream's segments.
func (s *StreamReport) rows(fn func(*SegmentReport) error) error {
	for i := range s.Segments {
		if err := fn(&s.Segments[i]); err != nil {
			return err
		}
	}
	for i := range s.segs {
		row := segmentRow(&s.segs[i])
		if err := fn(&row); err != nil {
			return err
		}
	}
	return nil
}

// SegmentReport is one segment of the report.
type SegmentReport struct {
	Name          string  `json:"name"`
	Size          int64   `json:"size"`
	State         string  `json:"state"`
	Why           string  `json:"why,omitempty"` // why it is active
	GrowthRate    float64 `json:"growth_rate"`
	PredictedSize float64 `json:"predicted_size"`
	Priority      float64 `json:"priority"`
}

// Action is one decision of the pass.
type Action struct {
	Kind     string   `json:"kind"` // compact|archive
	Segments []string `json:"segments"`
	Output   string   `json:"output"`
	Reason   string   `json:"reason"`
}

// newStreamReport builds a stream's report; the per-segment rows only with detail
// (at 100,000 segments they are most of a pass's allocations, and only plan shows
// them), and then from s's segments as the report is written: s must not change.
func newStreamReport(s *model.Stream, detail bool) StreamReport {
	r := StreamReport{Name: s.Config.Name, Dir: s.Config.Dir, Pattern: s.Config.Pattern,
		HotBytes: s.HotBytes, CapBytes: int64(s.Config.Archive.MaxHotBytes), GrowthRate: s.GrowthRate,
		PredictedBytes: s.PredictedBytes, Segments: []SegmentReport{}, Actions: []Action{}, Deferred: []Action{},
		Notes: []string{}, Error: s.Err, Skipped: append([]string{}, s.Foreign...),
		HorizonSeconds: s.Config.Archive.TimeToArchive.Seconds(), SegmentCount: len(s.Segments)}
	if detail {
		r.segs = s.Segments
	}
	return r
}

// segmentRows is a row per segment of s.
func segmentRows(s *model.Stream) []SegmentReport {
	rows := make([]SegmentReport, 0, len(s.Segments))
	for i := range s.Segments {
		rows = append(rows, segmentRow(&s.Segments[i]))
	}
	return rows
}

// segmentRow is seg's row.
func segmentRow(seg *model.Segment) SegmentReport {
	return SegmentReport{Name: seg.Name, Size: seg.Size, State: seg.State.String(), Why: seg.Why,
		GrowthRate: seg.GrowthRate, PredictedSize: seg.PredictedSize, Priority: seg.Priority}
}

// WriteJSON writes the report as one JSON object.
//
// Streams are encoded a few at a time (streamJSON) into a buffered writer: at
// 100,000 segments the whole report as one value was 20 MB, indented in a
// second buffer, and most of a fresh `plan`'s memory.
func (r *Report) WriteJSON(w io.Writer) error {
	if len(r.Streams) == 0 {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	head := *r
	head.Streams = []StreamReport{}
	b, err := json.MarshalIndent(&head, "", "  ")
	if err != nil {
		return err
	}
	before, after, err := openList(b, "\n  \"streams\": []")
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(before)
	bw.WriteByte('\n')
	streams := marshalStreams(r.Streams)
	defer streams.stop()
	for i := range r.Streams {
		s, err := streams.next()
		if err != nil {
			return err
		}
		bw.WriteString("    ")
		bw.Write(s)
		if i < len(r.Streams)-1 {
			bw.WriteByte(',')
		}
		bw.WriteByte('\n')
	}
	bw.WriteString("  ")
	bw.Write(after)
	bw.WriteByte('\n')
	return bw.Flush()
}

// openList splits b, the indented JSON of a value whose list member marker
// ("\n<indent>\"key\": []") was marshalled empty, between that list's
// brackets: before ends with '[', after starts with ']'. The first match is
// the member (a string value cannot hold the marker: its quotes are escaped).
func openList(b []byte, marker string) (before, after []byte, err error) {
	at := bytes.Index(b, []byte(marker))
	if at < 0 {
		return nil, nil, fmt.Errorf("report encoding: no %q in %q", marker, b)
	}
	cut := at + len(marker) - 1
	return b[:cut], b[cut:], nil
}

// streamJSON hands out the streams of a report marshalled (indented as
// members of the report's list), in order. They are marshalled by GOMAXPROCS
// goroutines, at most that many ahead of the writer (each a stream's JSON held
// in memory): at 1,000 streams marshalling and indenting was a seventh of a
// fresh plan's CPU, on one core.
type streamJSON struct {
	out   []chan marshalled
	ahead chan struct{} // a token per stream marshalled and not yet taken
	quit  chan struct{}
	wg    sync.WaitGroup
	n     int
}

type marshalled struct {
	b   []byte
	err error
}

func marshalStreams(streams []StreamReport) *streamJSON {
	workers := min(runtime.GOMAXPROCS(0), len(streams))
	m := &streamJSON{out: make([]chan marshalled, len(streams)), ahead: make(chan struct{}, workers), quit: make(chan struct{})}
	for i := range m.out {
		m.out[i] = make(chan marshalled, 1)
	}
	todo := make(chan int)
	m.wg.Add(1 + workers)
	go func() { // hands out the streams in order, as the writer takes them
		defer m.wg.Done()
		defer close(todo)
		for i := range streams {
			select {
			case m.ahead <- struct{}{}:
			case <-m.quit:
				return
			}
			select {
			case todo <- i:
			case <-m.quit:
				return
			}
		}
	}()
	for range workers {
		go func() {
			defer m.wg.Done()
			for i := range todo {
				b, err := marshalStream(&streams[i])
				m.out[i] <- marshalled{b, err}
			}
		}()
	}
	return m
}

// marshalStream is json.MarshalIndent(s, "    ", "  ") (a member of the
// report's list), with the segment rows laid out by appendRow.
func marshalStream(s *StreamReport) ([]byte, error) {
	if len(s.Segments) == 0 && len(s.segs) == 0 {
		return json.MarshalIndent(s, "    ", "  ")
	}
	head := *s
	head.Segments = []SegmentReport{}
	b, err := json.MarshalIndent(&head, "    ", "  ")
	if err != nil {
		return nil, err
	}
	before, after, err := openList(b, "\n      \"segments\": []")
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+(len(s.Segments)+len(s.segs))*200)
	out = append(out, before...)
	sep := ""
	if err := s.rows(func(r *SegmentReport) (err error) {
		out = append(out, sep...)
		sep = ","
		out, err = appendRow(out, r)
		return err
	}); err != nil {
		return nil, err
	}
	out = append(out, "\n      "...)
	return append(out, after...), nil
}

// appendRow appends r as MarshalIndent lays out an element of a stream's
// "segments" (prefix "    ", indent "  "), without reflection or a second,
// indenting pass over the bytes: at 100,000 segments those were two thirds of
// plan --json's encoding. What is off the fast path (a name JSON escapes, a
// float JSON writes with an exponent, NaN) is encoded by encoding/json
// itself; TestWriteJSONIsTheReportIndented holds the two to the same bytes.
func appendRow(b []byte, r *SegmentReport) ([]byte, error) {
	var err error
	b = append(b, "\n        {\n          \"name\": "...)
	if b, err = appendJSONString(b, r.Name); err != nil {
		return nil, err
	}
	b = append(b, ",\n          \"size\": "...)
	b = strconv.AppendInt(b, r.Size, 10)
	b = append(b, ",\n          \"state\": "...)
	if b, err = appendJSONString(b, r.State); err != nil {
		return nil, err
	}
	if r.Why != "" {
		b = append(b, ",\n          \"why\": "...)
		if b, err = appendJSONString(b, r.Why); err != nil {
			return nil, err
		}
	}
	for _, f := range [...]struct {
		key string
		v   float64
	}{{",\n          \"growth_rate\": ", r.GrowthRate}, {",\n          \"predicted_size\": ", r.PredictedSize}, {",\n          \"priority\": ", r.Priority}} {
		b = append(b, f.key...)
		if b, err = appendJSONFloat(b, f.v); err != nil {
			return nil, err
		}
	}
	return append(b, "\n        }"...), nil
}

// appendJSONString appends s as encoding/json writes it: printable ASCII that
// it does not escape as it is, anything else through json.Marshal.
func appendJSONString(b []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			m, err := json.Marshal(s)
			return append(b, m...), err
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

// appendJSONFloat appends f as encoding/json writes it: without an exponent
// between 1e-6 and 1e21 (and 0), anything else through json.Marshal (which
// refuses NaN and the infinities).
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if a := math.Abs(f); f == 0 || a >= 1e-6 && a < 1e21 {
		return strconv.AppendFloat(b, f, 'f', -1, 64), nil
	}
	m, err := json.Marshal(f)
	return append(b, m...), err
}

// next is the next stream's JSON.
func (m *streamJSON) next() ([]byte, error) {
	r := <-m.out[m.n]
	m.n++
	<-m.ahead
	return r.b, r.err
}

// stop ends the goroutines (after the last stream, or when the writer gave up).
func (m *streamJSON) stop() {
	close(m.quit)
	m.wg.Wait()
}

// WriteTable writes the report for people: per stream a header, the segments, and
// the actions with their reasons (or why there are none).
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "plan at %s, system load L=%.2f\n", r.Time, r.Load)
	if r.Source == "daemon" {
		fmt.Fprintf(w, "(the running daemon's last pass, pid %d)\n", r.PID)
	} else {
		fmt.Fprintln(w, "(computed by this command: no daemon answers on the control socket)")
	}
	for _, s := range r.Streams {
		fmt.Fprintf(w, "\nstream %s  dir=%s  pattern=%s\n", s.Name, s.Dir, s.Pattern)
		if s.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", s.Error)
			continue
		}
		fmt.Fprintf(w, "  hot %s  growth %s/s  predicted at +%s %s  compaction priority %.2f\n",
			Bytes(float64(s.HotBytes)), Bytes(s.GrowthRate), time.Duration(s.HorizonSeconds*float64(time.Second)), Bytes(s.PredictedBytes), s.Priority)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  SEGMENT\tSIZE\tSTATE\tGROWTH/s\tPREDICTED\tPRIORITY\t")
		_ = s.rows(func(seg *SegmentReport) error {
			state := seg.State
			if seg.Why != "" {
				state += " (" + seg.Why + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%.2f\t\n", quoteName(seg.Name), Bytes(float64(seg.Size)), state,
				Bytes(seg.GrowthRate), Bytes(seg.PredictedSize), seg.Priority)
			return nil
		})
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, f := range s.Skipped {
			fmt.Fprintf(w, "  skipped %s: not a single-link regular file on this filesystem\n", quoteName(f))
		}
		for i := 0; i < len(s.Actions); {
			// Consecutive archive actions for the same reason read as one line.
			a, j := s.Actions[i], i+1
			var names []string
			names = append(names, a.Segments...)
			for a.Kind == "archive" && j < len(s.Actions) && s.Actions[j].Kind == "archive" && s.Actions[j].Reason == a.Reason {
				names = append(names, s.Actions[j].Segments...)
				j++
			}
			out := quoteName(a.Output)
			if j-i > 1 {
				out = fmt.Sprintf("%d files in the cold dir", j-i)
			}
			fmt.Fprintf(w, "  -> %s %s => %s\n     because %s\n", a.Kind, listNames(names), out, a.Reason)
			i = j
		}
		for _, a := range s.Deferred {
			fmt.Fprintf(w, "  .. deferred %s %s => %s\n     because %s\n", a.Kind, listNames(a.Segments), quoteName(a.Output), a.Reason)
		}
		if s.OverCap {
			fmt.Fprintf(w, "  !! over the cap: hot %s > max_hot_bytes %s and nothing can be archived now\n",
				Bytes(float64(s.HotBytes)), Bytes(float64(s.CapBytes)))
		}
		if len(s.Actions) == 0 {
			fmt.Fprintf(w, "  -> no action: %s\n", strings.Join(s.Notes, "; "))
		}
	}
	return nil
}

// listNames shows up to three names, eliding the middle of longer lists.
func listNames(names []string) string {
	if len(names) > 3 {
		return fmt.Sprintf("%s … %d more … %s", quoteName(names[0]), len(names)-2, quoteName(names[len(names)-1]))
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteName(n)
	}
	return strings.Join(q, " ")
}

// quoteName shows a file name on one line whatever bytes it holds.
func quoteName(n string) string {
	for _, r := range n {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' || r == ' ' || r == '"' {
			return fmt.Sprintf("%q", n)
		}
	}
	return n
}

// Bytes formats a byte count with a binary unit.
func Bytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for (b >= 1024 || b <= -1024) && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f%s", b, units[i])
	}
	return fmt.Sprintf("%.1f%s", b, units[i])
}
