package config

// PatternsOverlap reports whether some file name matches both globs (the syntax of
// path/filepath.Match, without '/'). It explores pairs of positions in the two
// patterns: the names both accept are the paths through that product automaton.
func PatternsOverlap(a, b string) bool {
	ta, ok1 := tokenize(a)
	tb, ok2 := tokenize(b)
	if !ok1 || !ok2 {
		return true // invalid patterns are rejected elsewhere; be conservative
	}
	seen := map[[2]int]bool{}
	var visit func(i, j int) bool
	visit = func(i, j int) bool {
		key := [2]int{i, j}
		if seen[key] {
			return false
		}
		seen[key] = true
		if i == len(ta) && j == len(tb) {
			return true
		}
		if i < len(ta) && ta[i].star {
			if visit(i+1, j) {
				return true
			}
		}
		if j < len(tb) && tb[j].star {
			if visit(i, j+1) {
				return true
			}
		}
		if i == len(ta) || j == len(tb) {
			return false
		}
		// Both consume one character: find one that both accept.
		if !shareChar(ta[i], tb[j]) {
			return false
		}
		ni, nj := i+1, j+1
		if ta[i].star {
			ni = i
		}
		if tb[j].star {
			nj = j
		}
		return visit(ni, nj)
	}
	return visit(0, 0)
}

// token is one position of a glob: '*' (any run), or a set of accepted characters.
type token struct {
	star   bool
	accept func(r rune) bool
}

func tokenize(p string) ([]token, bool) {
	var out []token
	rs := []rune(p)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case '*':
			out = append(out, token{star: true, accept: func(r rune) bool { return r != '/' }})
		case '?':
			out = append(out, token{accept: func(r rune) bool { return r != '/' }})
		case '\\':
			if i+1 >= len(rs) {
				return nil, false
			}
			i++
			c := rs[i]
			out = append(out, token{accept: func(r rune) bool { return r == c }})
		case '[':
			j := i + 1
			neg := false
			if j < len(rs) && rs[j] == '^' {
				neg = true
				j++
			}
			type rng struct{ lo, hi rune }
			var ranges []rng
			for first := true; j < len(rs) && (first || rs[j] != ']'); first = false {
				lo := rs[j]
				if lo == '\\' && j+1 < len(rs) {
					j++
					lo = rs[j]
				}
				hi := lo
				if j+2 < len(rs) && rs[j+1] == '-' && rs[j+2] != ']' {
					hi = rs[j+2]
					if hi == '\\' && j+3 < len(rs) {
						j++
						hi = rs[j+2]
					}
					j += 2
				}
				ranges = append(ranges, rng{lo, hi})
				j++
			}
			if j >= len(rs) {
				return nil, false
			}
			i = j
			out = append(out, token{accept: func(r rune) bool {
				in := false
				for _, x := range ranges {
					if x.lo <= r && r <= x.hi {
						in = true
						break
					}
				}
				return r != '/' && in != neg
			}})
		default:
			c := r
			out = append(out, token{accept: func(r rune) bool { return r == c }})
		}
	}
	return out, true
}

// shareChar reports whether some character is accepted by both tokens. Candidate
// characters: every byte value, plus a few non-ASCII runes for negated classes.
func shareChar(a, b token) bool {
	for r := rune(0); r < 256; r++ {
		if a.accept(r) && b.accept(r) {
			return true
		}
	}
	for _, r := range []rune{0x100, 0x4e00, 0x1F600} {
		if a.accept(r) && b.accept(r) {
			return true
		}
	}
	return false
}
