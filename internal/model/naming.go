package model

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Consolidated segment names.
//
// A compaction output is named after its first input, with the marker "~c<N>"
// inserted right after the last run of digits of the first input's name (or, if
// it has none, before its extension, else at its end), any earlier marker removed:
//
//	app-000123.log + app-000124.log + ... -> app-000123~c1.log
//	app-000123~c1.log + app-000140.log    -> app-000123~c2.log
//
// N is the smallest number that gives a free name. The name still matches the
// stream's pattern (other insertion points are tried if the first does not), sorts
// after every segment before the run and before every segment after it, and is
// not a name a writer produces next (writers do not write "~c").
const marker = "~c"

// NameMax is the longest file name Linux filesystems take (bytes).
const NameMax = 255

// IsConsolidated reports whether name carries the consolidated marker.
func IsConsolidated(name string) bool {
	_, _, ok := findMarker(name)
	return ok
}

// FindMarker locates the consolidated marker "~c<digits>" in name: [start, end).
func FindMarker(name string) (start, end int, ok bool) { return findMarker(name) }

// findMarker locates "~c<digits>" following a digit (or at the start of the name).
func findMarker(name string) (start, end int, ok bool) {
	if strings.IndexByte(name, marker[0]) < 0 {
		// Most names have no '~' at all: this is asked of every segment at
		// every pass (BenchmarkPass100k unchanged: ~14.7 -> ~10.5 ms a pass).
		return 0, 0, false
	}
	for i := strings.LastIndex(name, marker); i >= 0; i = strings.LastIndex(name[:i], marker) {
		j := i + len(marker)
		k := j
		for k < len(name) && name[k] >= '0' && name[k] <= '9' {
			k++
		}
		if k > j {
			return i, k, true
		}
	}
	return 0, 0, false
}

// stripMarker removes a consolidated marker from name.
func stripMarker(name string) string {
	if i, j, ok := findMarker(name); ok {
		return name[:i] + name[j:]
	}
	return name
}

// ConsolidatedName picks the output name for merging a run whose first input is
// first and last input is last. before and after are the names of the stream's
// segments just before and just after the run ("" if none); taken reports names
// already in use in the directory. It returns "" when no name fits the pattern
// and the order. A run of TAI64N-labelled segments (svlogd, multilog, s6-log)
// gets a label of its own instead of a marker (labelName).
func ConsolidatedName(pattern, first, last, before, after string, nameOrder bool, taken func(string) bool) string {
	if out := labelName(pattern, last, after, nameOrder, taken); out != "" {
		return out
	}
	base := stripMarker(first)
	for _, pos := range insertionPoints(base) {
		if isTAI64N(base) && pos < tai64nLen {
			continue // never inside a TAI64N label: it would stop being one
		}
		for n := 1; n < 1000; n++ {
			cand := base[:pos] + marker + strconv.Itoa(n) + base[pos:]
			if len(cand) > NameMax {
				break // no longer than a file name may be: the rename would fail at every pass
			}
			if m, _ := filepath.Match(pattern, cand); !m {
				break // another number will not match either; try another position
			}
			if nameOrder && ((before != "" && NaturalLess(cand, before)) || (after != "" && !NaturalLess(cand, after))) {
				break
			}
			if !taken(cand) {
				return cand
			}
		}
	}
	return ""
}

// labelName names the output of a run of TAI64N-labelled segments with a valid
// label, so that it stays a file of the writer's own kind: the last input's
// time plus a nanosecond or a few (the suffix, ".s", kept). That time has
// passed, so the writer never names a new file so; it sorts after every input
// and before the next segment (if one fits). "" when last is no label or no
// such name fits the pattern, the order and the free names.
func labelName(pattern, last, after string, nameOrder bool, taken func(string) bool) string {
	if !nameOrder || !isTAI64N(last) {
		return ""
	}
	secs, err1 := strconv.ParseUint(last[1:17], 16, 64)
	nanos, err2 := strconv.ParseUint(last[17:25], 16, 32)
	if err1 != nil || err2 != nil || nanos >= 1e9 {
		return ""
	}
	suffix := last[tai64nLen:]
	for k := uint64(1); k < 1000; k++ {
		s, n := secs, nanos+k
		if n >= 1e9 {
			s, n = s+1, n-1e9
		}
		cand := fmt.Sprintf("@%016x%08x%s", s, n, suffix)
		if m, _ := filepath.Match(pattern, cand); !m {
			return ""
		}
		if after != "" && !NaturalLess(cand, after) {
			return ""
		}
		if !taken(cand) {
			return cand
		}
	}
	return ""
}

// insertionPoints lists where the marker may go, preferred first: after the last
// digit run, before the extension, at the end, then every other position.
func insertionPoints(name string) []int {
	var pts []int
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] >= '0' && name[i] <= '9' {
			pts = append(pts, i+1)
			break
		}
	}
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		pts = append(pts, i)
	}
	pts = append(pts, len(name))
	for i := 1; i < len(name); i++ {
		pts = append(pts, i)
	}
	return pts
}

// NaturalLess orders names as people do: runs of digits compare by value, so
// app-9.log < app-10.log; equal values with more leading zeros sort later; other
// bytes compare bytewise. A TAI64N label ("@" and 24 lowercase hex digits, the
// names svlogd, multilog and s6-log give rotated files) compares as the
// time it is — its hex digits bytewise — not as runs of digits and letters.
func NaturalLess(a, b string) bool { return NaturalCompare(a, b) < 0 }

// NaturalCompare returns -1, 0 or 1.
//
// The bytes the names share are skipped first, back to where a digit run or a
// TAI64N label crossing the first difference begins: the segments of a
// directory share most of their names ("app-000", "@400000006"), and sorting
// 100,000 of them compared those bytes token by token ~1.7 million times.
func NaturalCompare(a, b string) int {
	k := 0
	for k < len(a) && k < len(b) && a[k] == b[k] {
		k++
	}
	k = tokenStart(a, k)
	return naturalCompareFrom(a, b, k)
}

// tokenStart is where the token of a holding byte k-1 (or k) begins: the start
// of the digit run ending at k, or an '@' that may start a TAI64N label over k
// ('@' is never inside a token, so it always starts one). Bytes before it are
// equal in both names and tokenize alike.
func tokenStart(a string, k int) int {
	end := k
	for k > 0 && isDigit(a[k-1]) {
		k--
	}
	for p := end - 1; p >= 0 && p >= k-(tai64nLen-1); p-- {
		if a[p] == '@' {
			return p
		}
	}
	return k
}

// naturalCompareFrom compares a and b from byte k, where both start a token.
func naturalCompareFrom(a, b string, k int) int {
	i, j := k, k
	for i < len(a) && j < len(b) {
		if isTAI64N(a[i:]) && isTAI64N(b[j:]) {
			if c := strings.Compare(a[i+1:i+tai64nLen], b[j+1:j+tai64nLen]); c != 0 {
				return c
			}
			i, j = i+tai64nLen, j+tai64nLen
			continue
		}
		ca, cb := a[i], b[j]
		if isDigit(ca) && isDigit(cb) {
			si, sj := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			da, db := strings.TrimLeft(a[si:i], "0"), strings.TrimLeft(b[sj:j], "0")
			if len(da) != len(db) {
				return cmp(len(da), len(db))
			}
			if da != db {
				return strings.Compare(da, db)
			}
			if i-si != j-sj {
				return cmp(i-si, j-sj)
			}
			continue
		}
		if ca != cb {
			return cmp(int(ca), int(cb))
		}
		i++
		j++
	}
	return cmp(len(a)-i, len(b)-j)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// tai64nLen is the length of a TAI64N label: "@" and 24 hex digits.
const tai64nLen = 25

// isTAI64N reports whether s starts with a TAI64N label.
func isTAI64N(s string) bool {
	if len(s) < tai64nLen || s[0] != '@' {
		return false
	}
	for _, c := range []byte(s[1:tai64nLen]) {
		if !isDigit(c) && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func cmp(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
