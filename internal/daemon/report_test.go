package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/model"
)

// WriteJSON writes what json.MarshalIndent makes of the whole report, byte for
// byte, though its streams are marshalled in parallel and written one at a time;
// a stream that cannot be marshalled fails it, leaving no goroutine behind
// (goleak in TestMain).
func TestWriteJSONIsTheReportIndented(t *testing.T) {
	r := &Report{Time: "2026-12-03T00:00:00Z", Load: 0.25, Source: "local"}
	for i := range 40 {
		s := StreamReport{Name: fmt.Sprintf("s%02d", i), Dir: "/var/log/x", Pattern: "*.log", HotBytes: int64(i) << 20,
			Segments: []SegmentReport{}, Actions: []Action{}, Deferred: []Action{}, Notes: []string{"n"}, Skipped: []string{}}
		for j := range i % 7 {
			s.Segments = append(s.Segments, SegmentReport{Name: fmt.Sprintf("app-%d.log", j), Size: int64(j), State: "closed", GrowthRate: 1.5})
		}
		if i == 39 { // what the rows' own encoder hands to encoding/json, and what it does not
			for j, name := range []string{"журнал.log", `a"b\c.log`, "a<b.log", "a>b.log", "a&b.log", "a\x7fb.log", "tab\there", "\xff\xfe.log", "line\u2028sep", "~!#$%^*()_+=-`{}[]|;:',.?/ ok"} {
				s.Segments = append(s.Segments, SegmentReport{Name: name, Size: -int64(j), State: "active", Why: "modified <1s> \"ago\""})
			}
			for j, f := range []float64{1e-7, 1e-6, 1e21, 1e22, 9.99e20, math.Copysign(0, -1), 12.5, 1.0 / 3, 123456789012, -4.25e-9, math.MaxFloat64, math.SmallestNonzeroFloat64} {
				s.Segments = append(s.Segments, SegmentReport{Name: fmt.Sprintf("f%d.log", j), State: "closed", GrowthRate: f, PredictedSize: -f, Priority: f / 3})
			}
			rng := rand.New(rand.NewPCG(15, 1))
			for j := range 200 {
				name := make([]byte, 1+rng.IntN(12))
				for k := range name {
					name[k] = byte(rng.IntN(256))
				}
				f := math.Float64frombits(rng.Uint64())
				if math.IsNaN(f) || math.IsInf(f, 0) {
					f = float64(j)
				}
				s.Segments = append(s.Segments, SegmentReport{Name: string(name), Size: rng.Int64(), State: "closed", GrowthRate: f, PredictedSize: float64(rng.IntN(1 << 40))})
			}
		}
		if i%5 == 0 {
			s.Error = "no such directory"
		}
		r.Streams = append(r.Streams, s)
	}
	want, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := r.WriteJSON(&got); err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want)+"\n" {
		t.Fatalf("WriteJSON differs from MarshalIndent:\n%s\nwant\n%s", got.String(), want)
	}
	r.Streams[3].GrowthRate = math.NaN()
	if err := r.WriteJSON(&bytes.Buffer{}); err == nil {
		t.Fatal("a NaN rate was written")
	}
	r.Streams[3].GrowthRate = 0
	r.Streams[3].Segments[1].PredictedSize = math.Inf(1)
	if err := r.WriteJSON(&bytes.Buffer{}); err == nil {
		t.Fatal("an infinite segment size was written")
	}
}

// TestRowsMadeAsWrittenAreTheRows: a plan's report keeps its snapshot's
// segments and makes each row as it writes it; the JSON and the table are the
// ones the rows made up front give.
func TestRowsMadeAsWrittenAreTheRows(t *testing.T) {
	cfg := config.Stream{Name: "app", Dir: "/var/log/app", Pattern: "app-*.log"}
	s := &model.Stream{Config: cfg, HotBytes: 600}
	for i := range 6 {
		seg := model.Segment{Name: fmt.Sprintf("app-%06d.log", i), Size: 100, State: model.Closed, PredictedSize: 100}
		if i == 5 {
			seg.State, seg.Why, seg.GrowthRate, seg.PredictedSize = model.Active, "newest", 12.5, 4600
		}
		s.Segments = append(s.Segments, seg)
	}
	lazy := newStreamReport(s, true)
	eager := newStreamReport(s, false)
	eager.Segments = segmentRows(s)
	if len(lazy.Segments) != 0 || len(lazy.segs) != 6 || len(eager.Segments) != 6 {
		t.Fatalf("rows %d/%d, eager %d", len(lazy.Segments), len(lazy.segs), len(eager.Segments))
	}
	for _, w := range []func(*Report, io.Writer) error{(*Report).WriteJSON, (*Report).WriteTable} {
		var got, want bytes.Buffer
		if err := w(&Report{Time: "t", Source: "local", Streams: []StreamReport{lazy}}, &got); err != nil {
			t.Fatal(err)
		}
		if err := w(&Report{Time: "t", Source: "local", Streams: []StreamReport{eager}}, &want); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() || !strings.Contains(got.String(), "app-000005.log") {
			t.Fatalf("made as written:\n%s\nmade up front:\n%s", got.String(), want.String())
		}
	}
}

// TestAppendRowCoversEveryField: appendRow lists SegmentReport's fields by
// hand; a field added to the struct (and so to the contract) must be added
// there too. Every field is set, and the row is compared with encoding/json's.
func TestAppendRowCoversEveryField(t *testing.T) {
	var row SegmentReport
	v := reflect.ValueOf(&row).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			f.SetString("x" + v.Type().Field(i).Name)
		case reflect.Int64:
			f.SetInt(int64(i) + 7)
		case reflect.Float64:
			f.SetFloat(float64(i) + 0.5)
		default:
			t.Fatalf("SegmentReport.%s is a %s: teach appendRow (and this test) its encoding", v.Type().Field(i).Name, f.Kind())
		}
	}
	s := StreamReport{Name: "s", Segments: []SegmentReport{row}, Actions: []Action{}, Deferred: []Action{}, Notes: []string{}, Skipped: []string{}}
	want, err := json.MarshalIndent(&s, "    ", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got, err := marshalStream(&s)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("appendRow:\n%s\nencoding/json:\n%s", got, want)
	}
}
