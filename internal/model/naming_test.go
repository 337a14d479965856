package model

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// NaturalCompare's shortcut over the shared bytes gives what comparing every
// token from the start gives, on names built to put digit runs and TAI64N
// labels across the first difference.
func TestNaturalCompareSkipsTheSharedBytesExactly(t *testing.T) {
	pieces := []string{"0", "00", "1", "9", "10", "007", "a", "f", "g", "-", ".", "~", "@",
		"@4000000068a1b2c300000000", "@4000000068a1b2c300000001", "@40000000689abcde00000000", "@400000006",
		"@4000000068a1b2c3000000a"} // 23 hex digits: a label only with a digit after, where the '@' is 24 bytes back
	rng := rand.New(rand.NewPCG(15, 15))
	name := func() string {
		var b strings.Builder
		for n := rng.IntN(6); n >= 0; n-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	for range 200000 {
		a := name()
		b := a[:rng.IntN(len(a)+1)] + name() // a shared prefix cut anywhere
		if got, want := NaturalCompare(a, b), naturalCompareFrom(a, b, 0); got != want {
			t.Fatalf("NaturalCompare(%q, %q) = %d, token by token %d", a, b, got, want)
		}
		if got, want := NaturalCompare(b, a), naturalCompareFrom(b, a, 0); got != want {
			t.Fatalf("NaturalCompare(%q, %q) = %d, token by token %d", b, a, got, want)
		}
	}
}

// FuzzGlob: a compiled pattern matches exactly the names filepath.Match does.
func FuzzGlob(f *testing.F) {
	for _, c := range [][2]string{
		{"app-*.log", "app-1.log"}, {"app-*.log", "app-.log"}, {"app-*.log", "app.log"},
		{"*", ""}, {"*", "x"}, {"a*b*c", "abc"}, {"a*b*c", "aXbYbZc"}, {"a*b*c", "acb"}, {"a*b*c", "aXc"}, {"a*bb*b", "abbb"},
		{"*.log*", "x.log.1"}, {"**", "ab"}, {"a**a", "a"}, {"a*a", "aa"}, {"lit", "lit"},
		{"current", "current"}, {"@*.s", "@400000006565f0a1.s"}, {"seg-?.log", "seg-1.log"},
		{"[ab]*", "b"}, {`\*x`, "*x"},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if strings.Contains(name, "/") {
			return // a directory entry holds none
		}
		want, err := filepath.Match(pattern, name)
		if err != nil {
			return // the config refuses such a pattern
		}
		if got := CompileGlob(pattern).Match(name); got != want {
			t.Fatalf("CompileGlob(%q).Match(%q) = %v, filepath.Match says %v", pattern, name, got, want)
		}
	})
}
