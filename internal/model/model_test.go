package model

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestNaturalOrder(t *testing.T) {
	names := []string{"app-10.log", "app-9.log", "app-000100.log", "app-2.log", "app-09.log", "app-9~c1.log", "app-.log"}
	sort.Slice(names, func(i, j int) bool { return NaturalLess(names[i], names[j]) })
	want := []string{"app-.log", "app-2.log", "app-9.log", "app-9~c1.log", "app-09.log", "app-10.log", "app-000100.log"}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("order %v, want %v", names, want)
		}
	}
}

func TestConsolidatedName(t *testing.T) {
	none := func(string) bool { return false }
	cases := []struct {
		name                                string
		pattern, first, before, after, want string
		taken                               func(string) bool
	}{
		{"digits get the marker after them", "app-*.log", "app-000123.log", "app-000122.log", "app-000130.log", "app-000123~c1.log", none},
		{"a consolidated first input is renumbered, not stacked", "app-*.log", "app-000123~c1.log", "", "app-000140.log", "app-000123~c1.log", func(s string) bool { return false }},
		{"a taken name moves to the next number", "app-*.log", "app-5.log", "", "", "app-5~c2.log", func(s string) bool { return s == "app-5~c1.log" }},
		{"a name without digits gets it before the extension", "*.log", "alpha.log", "", "beta.log", "alpha~c1.log", none},
		{"a pattern that forbids the marker yields no name", "app-??.log", "app-01.log", "", "", "", none},
		{"dated names keep their order", "app-*.log", "app-2026-11-23T10.log", "", "app-2026-11-23T11.log", "app-2026-11-23T10~c1.log", none},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ConsolidatedName(c.pattern, c.first, c.first, c.before, c.after, true, c.taken)
			if got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			if got != "" && !IsConsolidated(got) {
				t.Fatalf("%q not recognised as consolidated", got)
			}
		})
	}
	if IsConsolidated("app-000123.log") || IsConsolidated("notes~c.log") {
		t.Fatal("plain names recognised as consolidated")
	}
}

func TestClassify(t *testing.T) {
	now := time.Unix(10000, 0)
	segs := []Segment{
		{Name: "a-1.log", MtimeNs: now.Add(-time.Hour).UnixNano()},
		{Name: "a-2~c1.log", MtimeNs: now.Add(-time.Hour).UnixNano()},
		{Name: "a-3.log", MtimeNs: now.Add(-time.Hour).UnixNano(), Writing: true},
		{Name: "a-4.log", MtimeNs: now.Add(-time.Second).UnixNano()},
		{Name: "a-5.log", MtimeNs: now.Add(-time.Hour).UnixNano()},
	}
	// The list is the scanner's, classified again at every pass: what the last
	// pass made of a segment must not stay with it.
	segs[0].State, segs[0].Why, segs[0].GrowthRate, segs[0].PredictedSize, segs[0].Priority = Active, "newest", 5, 7, 0.5
	Classify(segs, now, time.Minute)
	want := []State{Closed, Consolidated, Active, Active, Active}
	for i, w := range want {
		if segs[i].State != w {
			t.Errorf("%s: %s (%s), want %s", segs[i].Name, segs[i].State, segs[i].Why, w)
		}
	}
	if s := segs[0]; s.Why != "" || s.GrowthRate != 0 || s.PredictedSize != 0 || s.Priority != 0 {
		t.Errorf("what an earlier pass made of %s stayed: %+v", s.Name, s)
	}
}

func TestConsolidatedNameNeverPassesNameMax(t *testing.T) {
	long := "app-" + strings.Repeat("x", 240) + "-000001.log" // 255 bytes
	if got := ConsolidatedName("app-*.log", long, long, "", "", true, func(string) bool { return false }); got != "" {
		t.Fatalf("a %d-byte output name %q for a 255-byte first input: want none", len(got), got)
	}
	short := "app-" + strings.Repeat("x", 235) + "-1.log" // 245 bytes: room for ~c1
	if got := ConsolidatedName("app-*.log", short, short, "", "", true, func(string) bool { return false }); got == "" || len(got) > NameMax {
		t.Fatalf("%q", got)
	}
}

// TestTAI64NLabelsSortByTime: svlogd/multilog/s6-log names are "@" and 24 hex
// digits of a TAI64N time. Read as digit runs and letters they sort wrongly
// ("...68a1..." after "...689a..." as 68 < 689); as labels they sort by time.
func TestTAI64NLabelsSortByTime(t *testing.T) {
	inOrder := []string{ // increasing times
		"@4000000068a1b2c30000000a.s",
		"@4000000068a1b2c3000000f0.s",
		"@4000000068a1b2c4000000a0.u",
		"@400000006b0f1c432e7b874c.s",
		"@400000006b0f1c4a00000000.s",
		"@400000006b0f1c5000000000.s",
	}
	for i := 1; i < len(inOrder); i++ {
		if !NaturalLess(inOrder[i-1], inOrder[i]) || NaturalLess(inOrder[i], inOrder[i-1]) {
			t.Fatalf("%s should sort before %s", inOrder[i-1], inOrder[i])
		}
	}
	// The case digit runs got wrong: 68a1... is later than 689a... in time.
	if !NaturalLess("@40000000689abcde00000000.s", "@4000000068a1b2c300000000.s") {
		t.Fatal("a label with more digits before its first letter sorted as later")
	}
	if !NaturalLess("app-9.log", "app-10.log") {
		t.Fatal("plain natural order broke")
	}
}

// TestTAI64NRunGetsALabelOfItsOwn: a merged run of svlogd segments is named
// with a valid TAI64N label a nanosecond after its last input — still a file
// of svlogd's kind, in its place in the order — not "@...874~c1c.s".
func TestTAI64NRunGetsALabelOfItsOwn(t *testing.T) {
	none := func(string) bool { return false }
	first, last, after := "@400000006b0f1c4300000000.s", "@400000006b0f1c4a3b9ac9ff.s", "@400000006b0f1c5000000000.s"
	got := ConsolidatedName("@*.s", first, last, "", after, true, none)
	if got != "@400000006b0f1c4b00000000.s" { // 0x3b9ac9ff = 999,999,999 ns: the next one carries into the seconds
		t.Fatalf("got %q", got)
	}
	if !isTAI64N(got) || !NaturalLess(last, got) || !NaturalLess(got, after) {
		t.Fatalf("%q is not a label between %q and %q", got, last, after)
	}
	taken := func(n string) bool { return n == "@400000006b0f1c4b00000000.s" }
	if got := ConsolidatedName("@*.s", first, last, "", after, true, taken); got != "@400000006b0f1c4b00000001.s" {
		t.Fatalf("with the first choice taken: %q", got)
	}
	// No label fits before the next segment: the marker form after the first
	// input's label, still in its place.
	next := "@400000006b0f1c4b00000000.s"
	if got := ConsolidatedName("@*.s", first, last, "", next, true, none); got != "@400000006b0f1c4300000000~c1.s" || !NaturalLess(got, next) {
		t.Fatalf("no room for a label before %q: got %q", next, got)
	}
}

// TestMarkerNeverLandsInsideALabel: when the marker form is used for a TAI64N
// segment, it goes after the label, never into its hex digits.
func TestMarkerNeverLandsInsideALabel(t *testing.T) {
	none := func(string) bool { return false }
	first := "@400000006b0f8f61369127ae.s"
	next := "@400000006b0f8f61369127af.s" // no room for a label of its own
	got := ConsolidatedName("@*.s", first, first, "", next, true, none)
	if got != "@400000006b0f8f61369127ae~c1.s" || !NaturalLess(got, next) || !NaturalLess(first, got) {
		t.Fatalf("got %q, want the marker after the label", got)
	}
}

// The scanner keeps a Segment per segment (100,000 on a large host) and the
// snapshot is made over them: it stays packed, and a State is still its word
// in plan and in JSON.
func TestASegmentStaysSmallAndItsStateIsAWord(t *testing.T) {
	if n := unsafe.Sizeof(Segment{}); n > 120 {
		t.Fatalf("a Segment is %d bytes, was 120", n)
	}
	b, err := json.Marshal(struct{ S State }{Consolidated})
	if err != nil || string(b) != `{"S":"consolidated"}` {
		t.Fatalf("%s %v", b, err)
	}
	for st, want := range map[State]string{Active: "active", Closed: "closed", Inactive: "inactive", 0: "", 200: ""} {
		if st.String() != want {
			t.Errorf("%d: %q, want %q", st, st.String(), want)
		}
	}
}
