package archiver

import (
	"errors"
	"sort"
	"time"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// ColdFile is one archive in a stream's cold subdir.
type ColdFile struct {
	Name  string
	Size  int64
	Mtime time.Time
}

// RetentionPlan picks the archives to delete, oldest first (by mtime, which
// archives keep from their segment): every one older than maxAge, then more
// until the rest fit in maxBytes. 0 turns a limit off.
func RetentionPlan(files []ColdFile, now time.Time, maxAge time.Duration, maxBytes int64) []ColdFile {
	fs := append([]ColdFile(nil), files...)
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Mtime.Before(fs[j].Mtime) })
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
func Retain(c *fsx.Dir, now time.Time, maxAge time.Duration, maxBytes int64) ([]ColdFile, error) {
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
	del := RetentionPlan(files, now, maxAge, maxBytes)
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
