package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count. In YAML it is an integer (bytes) or a string with a unit:
// B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. "128MiB".
type Size int64

// Rate is bytes per second. In YAML it is "<size>/<s|min|h>", e.g. "1MiB/min".
type Rate float64

// Free is the filesystem free-space floor of archive.keep_free: either an absolute
// size or a percentage of the filesystem's size (exactly one of the two is set).
type Free struct {
	Bytes   Size
	Percent float64 // 0..100; used when > 0
}

// Of returns the floor in bytes for a filesystem of total bytes.
func (f Free) Of(total uint64) uint64 {
	if f.Percent > 0 {
		return uint64(float64(total) * f.Percent / 100)
	}
	return uint64(f.Bytes)
}

var units = []struct {
	name string
	mult int64
}{
	// Longest names first so that "MiB" is not read as "M" + "iB".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize parses "128MiB", "1.5GB", "4096B" or "4096" (bytes). Negative sizes,
// unknown units and values that overflow int64 are errors.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size")
	}
	mult := int64(1)
	num := t
	for _, u := range units {
		if strings.HasSuffix(t, u.name) {
			mult = u.mult
			num = strings.TrimSpace(strings.TrimSuffix(t, u.name))
			break
		}
	}
	if num == "" {
		return 0, fmt.Errorf("invalid size %q: no number", s)
	}
	if i := strings.IndexFunc(num, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i >= 0 {
		return 0, fmt.Errorf("invalid size %q: want a number and one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB", s)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid size %q: out of range", s)
		}
		if n != 0 && mult > math.MaxInt64/n {
			return 0, fmt.Errorf("invalid size %q: out of range", s)
		}
		return Size(n * mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	return Size(math.Round(v)), nil
}

// String formats the size with the largest binary unit that divides it, else in bytes.
func (s Size) String() string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// ParseDuration parses Go duration syntax ("100ms", "90s", "6h"), sub-second values
// included. Negative durations are errors; "0" means zero.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want Go syntax such as 100ms, 90s, 6h", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: negative", s)
	}
	return d, nil
}

// ParseRate parses "<size>/<s|min|h>", e.g. "64MiB/s" or "1MiB/min", into bytes per second.
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	i := strings.LastIndexByte(t, '/')
	if i < 0 {
		return 0, fmt.Errorf("invalid rate %q: want <size>/<s|min|h>, e.g. 1MiB/min", s)
	}
	size, err := ParseSize(t[:i])
	if err != nil {
		return 0, fmt.Errorf("invalid rate %q: %w", s, err)
	}
	var per float64
	switch strings.TrimSpace(t[i+1:]) {
	case "s":
		per = 1
	case "min":
		per = 60
	case "h":
		per = 3600
	default:
		return 0, fmt.Errorf("invalid rate %q: unit after / must be s, min or h", s)
	}
	return Rate(float64(size) / per), nil
}

// ParseFree parses keep_free: a size ("2GiB") or a percentage of the filesystem ("5%").
func ParseFree(s string) (Free, error) {
	t := strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(t, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > 100 {
			return Free{}, fmt.Errorf("invalid free space %q: percentage must be within 0%%..100%%", s)
		}
		return Free{Percent: f}, nil
	}
	b, err := ParseSize(t)
	if err != nil {
		return Free{}, err
	}
	return Free{Bytes: b}, nil
}
