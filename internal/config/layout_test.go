package config

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// validateLayoutPairwise is the layout check as it was before streams were
// found through maps: every stream against every other. The two must refuse
// the same configs with the same message.
func validateLayoutPairwise(c *Config) error {
	dirs, colds := make([]string, len(c.Streams)), make([]string, len(c.Streams))
	for i, s := range c.Streams {
		dirs[i], colds[i] = filepath.Clean(s.Dir), filepath.Clean(s.Archive.ColdDir)
	}
	for i, s := range c.Streams {
		k := fmt.Sprintf("streams[%d]", i)
		cold := s.Archive.ColdDir
		for j, o := range c.Streams {
			if withinClean(colds[i], dirs[j]) {
				return keyErr(k+".archive.cold_dir", "cold dir %s is equal to or inside streams[%d].dir %s", cold, j, o.Dir)
			}
		}
		for j, o := range c.Streams {
			ok := fmt.Sprintf("streams[%d]", j)
			if withinClean(dirs[i], colds[j]) {
				return keyErr(k+".dir", "dir %s is inside %s.archive.cold_dir %s", s.Dir, ok, o.Archive.ColdDir)
			}
			if i == j {
				continue
			}
			if dirs[i] == dirs[j] && j < i && PatternsOverlap(s.Pattern, o.Pattern) {
				return keyErr(k+".pattern", "pattern %q overlaps %s.pattern %q in the same dir %s: a file would belong to two streams", s.Pattern, ok, o.Pattern, s.Dir)
			}
			if dirs[i] != dirs[j] && withinClean(dirs[i], dirs[j]) {
				rel, _ := filepath.Rel(dirs[j], dirs[i])
				top := strings.SplitN(rel, "/", 2)[0]
				if m, _ := filepath.Match(o.Pattern, top); m {
					return keyErr(k+".dir", "dir %s is nested in %s.dir %s and its entry %q matches that stream's pattern %q", s.Dir, ok, o.Dir, top, o.Pattern)
				}
			}
		}
		if within(c.StateDir, s.Dir) {
			return keyErr("state_dir", "state dir %s is inside %s.dir %s", c.StateDir, k, s.Dir)
		}
		if within(c.StateDir, cold) || within(cold, c.StateDir) {
			return keyErr("state_dir", "state dir %s overlaps %s.archive.cold_dir %s", c.StateDir, k, cold)
		}
		if within(s.Dir, c.StateDir) {
			return keyErr(k+".dir", "dir %s is inside state_dir %s", s.Dir, c.StateDir)
		}
	}
	return nil
}

// The layout check that walks up each path finds what the pairwise one found,
// first error and message alike, on 20,000 random layouts of nested, equal and
// separate dirs, cold dirs (local and s3://) and overlapping patterns. The dirs
// do not exist, so nothing on disk is checked (both would pass that part).
func TestLayoutCheckMatchesThePairwiseOne(t *testing.T) {
	root := "/nonexistent-lcd-layout-test"
	paths := []string{root + "/a", root + "/a/b", root + "/a/b/c", root + "/a/x.log", root + "/b",
		root + "/b/", root + "/c/../a", root, "/", root + "/cold", root + "/a/cold"}
	colds := append([]string{"s3://bucket/a", "s3://bucket"}, paths...)
	patterns := []string{"*.log", "b", "a*", "*", "x.log", "c*", "*.txt"}
	states := []string{root + "/state", root + "/a/state", root + "/cold/st", "/"}
	r := rand.New(rand.NewPCG(7, 15))
	refused := 0
	for n := 0; n < 20000; n++ {
		c := &Config{StateDir: states[r.IntN(len(states))]}
		for i := 0; i < 1+r.IntN(5); i++ {
			var s Stream
			s.Name = fmt.Sprintf("s%d", i)
			s.Dir = paths[r.IntN(len(paths))]
			s.Pattern = patterns[r.IntN(len(patterns))]
			s.Archive.ColdDir = colds[r.IntN(len(colds))]
			c.Streams = append(c.Streams, s)
		}
		want, got := validateLayoutPairwise(c), validateLayout(c)
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Fatalf("layout %d: %+v\npairwise: %v\nnow:      %v", n, c.Streams, want, got)
		}
		if got != nil {
			refused++
		}
	}
	if refused < 5000 || refused > 19000 {
		t.Fatalf("%d of 20000 layouts refused: the generator does not exercise both outcomes", refused)
	}
}
