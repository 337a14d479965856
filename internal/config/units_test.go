package config

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	cases := map[string]Size{
		"0": 0, "4096": 4096, "4096B": 4096, "1KB": 1000, "1KiB": 1024, "128MiB": 128 << 20,
		"1.5GiB": 3 << 29, "2 GB": 2e9, "1TiB": 1 << 40,
	}
	for in, want := range cases {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "12XB", "1e3", "9999999999TiB", "1.2.3MB", "0x10"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestParseRateAndDuration(t *testing.T) {
	r, err := ParseRate("1MiB/min")
	if err != nil || math.Abs(float64(r)-float64(1<<20)/60) > 1e-9 {
		t.Fatalf("ParseRate = %v, %v", r, err)
	}
	if r, _ := ParseRate("64MiB/s"); r != 64<<20 {
		t.Fatalf("64MiB/s = %v", r)
	}
	if r, _ := ParseRate("3600B/h"); r != 1 {
		t.Fatalf("3600B/h = %v", r)
	}
	for _, bad := range []string{"1MiB", "1MiB/day", "x/s", "/s"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
	if d, err := ParseDuration("100ms"); err != nil || d != 100*time.Millisecond {
		t.Fatalf("100ms = %v %v", d, err)
	}
	for _, bad := range []string{"30", "-1s", "soon", ""} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

// The fuzzers check properties, not just absence of panics: a parsed size is never
// negative and prints back to the same value; rates and durations are never negative.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "128MiB", "1.5GB", "10GiB", "-1", "1e3", "9223372036854775807B", "MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("ParseSize(%q) = %d < 0", s, v)
		}
		back, err := ParseSize(v.String())
		if err != nil || back != v {
			t.Fatalf("round trip %q -> %d -> %q -> %d, %v", s, v, v.String(), back, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"100ms", "6h", "0", "-5m", "1h2m3.5s", "30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := ParseDuration(s); err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v < 0", s, d)
		}
	})
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"1MiB/min", "64MiB/s", "0B/h", "1/s", "/s", "1MiB/day"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRate(s); err == nil && (r < 0 || math.IsNaN(float64(r))) {
			t.Fatalf("ParseRate(%q) = %v", s, r)
		}
		if fr, err := ParseFree(s); err == nil && (fr.Bytes < 0 || fr.Percent < 0 || fr.Percent > 100) {
			t.Fatalf("ParseFree(%q) = %+v", s, fr)
		}
	})
}

// FuzzParseConfig feeds arbitrary YAML to the loader: it must never panic, and any
// error must be a *config.Error that names the file.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(withStream(okStream)))
	f.Add([]byte("streams: [{name: a, dir: /x, pattern: '*'}, {name: b, dir: /x, pattern: 'a*'}]"))
	f.Add([]byte("compaction: {target_size: 1.5}\n"))
	f.Add([]byte("- 1\n- 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("fuzz.yaml", data)
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}
