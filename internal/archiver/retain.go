package archiver

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
)

// ColdFile is one archive in a stream's cold subdir.
type ColdFile struct {
	Name  string
	Size  int64
	Mtime time.Time
}

// ColdCompare is the order of a stream's archives (cat, restore, retention):
// by mtime, which archives keep from their segment. Two segments whose last
// writes fell in one tick of the kernel's clock share an mtime; in an `order:
// mtime` stream (timeNamed) they share a time-name too, and the one archived
// later got a taken name's number (ColdName: "<name>.zst", then
// "<name>.1.zst", which natural order would put first): of one mtime the
// name without that number goes first, then the number, then the whole name.
// Elsewhere a tie goes by natural name order.
func ColdCompare(a, b ColdFile, timeNamed bool) int {
	if c := a.Mtime.Compare(b.Mtime); c != 0 {
		return c
	}
	if timeNamed {
		as, an := takenStem(a.Name)
		bs, bn := takenStem(b.Name)
		if c := model.NaturalCompare(as, bs); c != 0 {
			return c
		}
		if c := cmp.Compare(an, bn); c != 0 {
			return c
		}
	}
	return model.NaturalCompare(a.Name, b.Name)
}

// takenStem splits an archive name into the name ColdName started from
// (compression extension dropped) and the number a taken name got (0: none).
func takenStem(name string) (string, int) {
	for _, e := range []string{codec.Zstd.Ext(), codec.Gzip.Ext()} {
		if s, ok := strings.CutSuffix(name, e); ok {
			name = s
			break
		}
	}
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || i == len(name)-1 || strings.Trim(name[i+1:], "0123456789") != "" || name[i+1] == '0' {
		return name, 0
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil {
		return name, 0
	}
	return name[:i], n
}

// RetentionPlan picks the archives to delete, oldest first (ColdCompare):
// every one older than maxAge, then more until the rest fit in maxBytes. 0
// turns a limit off.
func RetentionPlan(files []ColdFile, now time.Time, maxAge time.Duration, maxBytes int64, timeNamed bool) []ColdFile {
	fs := append([]ColdFile(nil), files...)
	slices.SortFunc(fs, func(a, b ColdFile) int { return ColdCompare(a, b, timeNamed) })
	var total int64
	for _, f := range fs {
		total += f.Size
	}
	var out []ColdFile
	for _, f := range fs {
		old := maxAge > 0 && now.Sub(f.Mtime) > maxAge
		over := maxBytes > 0 && total > maxBytes
		if !old && !over {
			break
		}
		out = append(out, f)
		total -= f.Size
	}
	return out
}

// Retain applies RetentionPlan to a stream's cold subdir: it lists single-link
// regular files (not temps), deletes the chosen ones (each only if still the
// file listed) and fsyncs the dir. It returns what it deleted.
func Retain(c *fsx.Dir, now time.Time, maxAge time.Duration, maxBytes int64, timeNamed bool) ([]ColdFile, error) {
	if maxAge <= 0 && maxBytes <= 0 {
		return nil, nil
	}
	names, err := c.Names()
	if err != nil {
		return nil, err
	}
	var files []ColdFile
	stats := map[string]fsx.Stat{}
	for _, n := range names {
		if fsx.IsTemp(n) {
			continue
		}
		st, err := c.Stat(n)
		if err != nil || st.Kind != fsx.Regular || st.Nlink != 1 {
			continue
		}
		stats[n] = st
		files = append(files, ColdFile{Name: n, Size: st.Size, Mtime: st.Mtime()})
	}
	del := RetentionPlan(files, now, maxAge, maxBytes, timeNamed)
	var errs []error
	var done []ColdFile
	for _, f := range del {
		if err := c.Unlink(f.Name, stats[f.Name]); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, f)
	}
	if len(done) > 0 {
		errs = append(errs, c.Sync())
	}
	return done, errors.Join(errs...)
}
