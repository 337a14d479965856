package model

import (
	"path/filepath"
	"strings"
)

// Glob is a stream's pattern, compiled once: a scan matches every entry of
// every directory against it, and path/filepath.Match parsed the pattern
// again for each (at 100,000 segments, listed twice, a tenth of a scan's
// CPU). A pattern whose only metacharacter is '*' (almost every pattern:
// "app-*.log") is matched as its literal pieces; any other goes to
// filepath.Match. Names are directory entries: they hold no '/'.
type Glob struct {
	pattern string
	pieces  []string // the literal text between the '*'s; nil: use filepath.Match
}

// CompileGlob compiles pattern (a valid filepath.Match pattern, as the config
// checks).
func CompileGlob(pattern string) Glob {
	g := Glob{pattern: pattern}
	if !strings.ContainsAny(pattern, `?[\`) {
		g.pieces = strings.Split(pattern, "*")
	}
	return g
}

// Match reports whether name matches the pattern, as filepath.Match would.
func (g Glob) Match(name string) bool {
	if g.pieces == nil {
		m, _ := filepath.Match(g.pattern, name)
		return m
	}
	p := g.pieces
	if len(p) == 1 {
		return name == p[0]
	}
	first, last := p[0], p[len(p)-1]
	if len(name) < len(first)+len(last) || !strings.HasPrefix(name, first) || !strings.HasSuffix(name, last) {
		return false
	}
	// The pieces between the first and the last, each at its leftmost place
	// after the one before: if any placement fits, that one does.
	mid := name[len(first) : len(name)-len(last)]
	for _, piece := range p[1 : len(p)-1] {
		i := strings.Index(mid, piece)
		if i < 0 {
			return false
		}
		mid = mid[i+len(piece):]
	}
	return true
}

// Pattern is the pattern g was compiled from.
func (g Glob) Pattern() string { return g.pattern }
