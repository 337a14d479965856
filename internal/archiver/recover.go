package archiver

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// RecoverStats counts what recovery did with unfinished moves.
type RecoverStats struct {
	RolledBack int // the segment is still hot, nothing in the cold dir
	Finished   int // the segment is in the cold dir only
	Stuck      int // left pending (cold tier unavailable, or undecidable: logged)
}

// Recover brings every unfinished move to one of the two end states, idempotently.
// hot and cold resolve the journaled dirs (only configured ones).
func (e *Env) Recover(hot, cold func(path string) (*fsx.Dir, error)) (RecoverStats, error) {
	var st RecoverStats
	var errs []error
	for _, op := range e.Journal.Pending() {
		if op.Kind != "archive" {
			continue
		}
		h, err := hot(op.Dir)
		if err != nil {
			st.Stuck++
			errs = append(errs, fmt.Errorf("recover archive op %d: %w", op.ID, err))
			continue
		}
		c, err := cold(op.Dest)
		if err != nil {
			st.Stuck++
			errs = append(errs, fmt.Errorf("recover archive op %d: cold dir unavailable, left for later: %w", op.ID, err))
			continue
		}
		done, err := e.recoverOne(h, c, op)
		switch {
		case err != nil:
			st.Stuck++
			errs = append(errs, err)
		case done:
			st.Finished++
		default:
			st.RolledBack++
		}
	}
	return st, errors.Join(errs...)
}

// recoverOne returns true when the segment ended up archived, false when it stayed hot.
func (e *Env) recoverOne(h, c *fsx.Dir, op fsx.Op) (bool, error) {
	in := op.Inputs[0]
	if op.Temp == "" { // a rename
		if outSt, err := c.Stat(op.Output); err == nil && in.SameFile(outSt) {
			if err := errors.Join(c.Sync(), h.Sync()); err != nil {
				return false, err
			}
			e.Step("archive-recover:synced")
			return true, e.Journal.Done(op.ID)
		}
		if srcSt, err := h.Stat(in.Name); err == nil && in.SameFile(srcSt) {
			return false, e.Journal.Done(op.ID)
		}
		return false, fmt.Errorf("archive op %d: %q is neither in %s nor in %s: left for the operator", op.ID, in.Name, op.Dir, op.Dest)
	}
	if op.Commit != nil {
		if e.verifyRaw(c, op) {
			return true, e.finish(h, op)
		}
		if srcSt, err := h.Stat(in.Name); err != nil || !in.Matches(srcSt) {
			return false, fmt.Errorf("archive op %d: archived %q does not verify and the segment is gone: left for the operator", op.ID, op.Output)
		}
	}
	want := fsx.Stat{}
	if op.Created != nil {
		want = op.Created.Stat()
	}
	if err := c.Unlink(op.Temp, want); err != nil && !errors.Is(err, fsx.ErrChanged) {
		return false, err
	}
	e.Step("archive-recover:unlinked-temp")
	if op.Created != nil {
		if err := c.Unlink(op.Output, want); err != nil && !errors.Is(err, fsx.ErrChanged) {
			return false, err
		}
		e.Step("archive-recover:unlinked-output")
	}
	if err := c.Sync(); err != nil {
		return false, err
	}
	e.Step("archive-recover:synced")
	return false, e.Journal.Done(op.ID)
}

// verifyRaw checks the archived file is the one the op created, complete.
func (e *Env) verifyRaw(c *fsx.Dir, op fsx.Op) bool {
	return op.Created != nil && c.Verify(op.Output, *op.Created, op.Commit.OutSize, op.Commit.OutCRC)
}

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
