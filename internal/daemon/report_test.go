package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"
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
}
