package compactor

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// RecoverStats counts what recovery did.
type RecoverStats struct {
	RolledBack int // ops abandoned: output removed, inputs intact
	Finished   int // committed ops whose inputs were removed
	Inactive   int // committed ops still inside keep_inactive
	Stuck      int // ops recovery could not decide (logged loudly, left pending)
}

// Recover brings every unfinished op in the journal to one of the two end states
// of the on-disk promise, and is itself idempotent (a crash inside it is repaired
// by running it again):
//
//   - not committed: remove the temp and, if it was renamed, the output (each only
//     if it is the file the op created); the inputs were never touched;
//   - committed, output present and verified (identity, size, CRC-32C): remove the
//     inputs that are still the journaled files — unless keep_inactive has not
//     passed yet, then leave them inactive;
//   - committed but the output is missing or does not verify: if every input is
//     intact, roll back as if not committed; otherwise touch nothing and report it.
//
// dir resolves an op's journaled dir to an open directory (only configured dirs).
func (e *Env) Recover(dir func(path string) (*fsx.Dir, error), keepInactive func(stream string) time.Duration) (RecoverStats, error) {
	var st RecoverStats
	var errs []error
	for _, op := range e.Journal.Pending() {
		if op.Kind != "merge" {
			continue // archival recovers its own ops
		}
		out, err := e.recoverOne(dir, keepInactive, op)
		if err != nil {
			errs = append(errs, err)
			out = stuck
		}
		switch out {
		case rolledBack:
			st.RolledBack++
		case finished:
			st.Finished++
		case inactive:
			st.Inactive++
		default:
			st.Stuck++
		}
	}
	return st, errors.Join(errs...)
}

type outcome int

const (
	stuck outcome = iota
	rolledBack
	finished
	inactive
)

// recoverOne decides and carries out the end state of one unfinished merge.
func (e *Env) recoverOne(dir func(path string) (*fsx.Dir, error), keepInactive func(stream string) time.Duration, op fsx.Op) (outcome, error) {
	d, err := dir(op.Dir)
	if err != nil {
		return stuck, fmt.Errorf("recover op %d in %s: %w", op.ID, op.Dir, err)
	}
	switch {
	case op.Commit == nil:
		return rolledBack, e.rollback(d, op)
	case keepInactive != nil && e.Clock().Before(time.Unix(0, op.Commit.AtNs).Add(keepInactive(op.Stream))):
		return inactive, nil
	case e.verifyOutput(d, op):
		return finished, e.finish(d, op)
	case e.inputsIntact(d, op):
		e.Log.Warn("committed merge output missing or corrupt; inputs intact: rolling back",
			zap.String("stream", op.Stream), zap.ByteString("output", []byte(op.Output)))
		return rolledBack, e.rollback(d, op)
	}
	return stuck, fmt.Errorf("op %d in %s: committed output %q is missing or corrupt and some inputs are gone: left for the operator", op.ID, op.Dir, op.Output)
}

func (e *Env) rollback(d *fsx.Dir, op fsx.Op) error {
	var want fsx.Stat // Begin only: the temp name is random and journaled first, so what is there is ours
	if op.Created != nil {
		want = op.Created.Stat()
	}
	if err := d.Unlink(op.Temp, want); err != nil && !errors.Is(err, fsx.ErrChanged) {
		return fmt.Errorf("roll back op %d: %w", op.ID, err)
	}
	e.Step("recover:unlinked-temp")
	if op.Created != nil {
		if err := d.Unlink(op.Output, want); err != nil && !errors.Is(err, fsx.ErrChanged) {
			return fmt.Errorf("roll back op %d: %w", op.ID, err)
		}
		e.Step("recover:unlinked-output")
	}
	if err := d.Sync(); err != nil {
		return err
	}
	e.Step("recover:synced")
	if err := e.Journal.Done(op.ID); err != nil {
		return err
	}
	e.Step("recover:done")
	return nil
}

// verifyOutput checks that the op's output is the file it created, complete.
func (e *Env) verifyOutput(d *fsx.Dir, op fsx.Op) bool {
	return op.Created != nil && d.Verify(op.Output, *op.Created, op.Commit.OutSize, op.Commit.OutCRC)
}

func (e *Env) inputsIntact(d *fsx.Dir, op fsx.Op) bool {
	for _, in := range op.Inputs {
		st, err := d.Stat(in.Name)
		if err != nil || !in.Matches(st) {
			return false
		}
	}
	return true
}

// FinishInactive finishes committed merges whose keep_inactive has passed:
// verify the output, then remove the inputs. Uncommitted ops (running jobs) are
// left alone.
func (e *Env) FinishInactive(dir func(path string) (*fsx.Dir, error), keepInactive func(stream string) time.Duration) (int, error) {
	n := 0
	var errs []error
	for _, op := range e.Journal.Pending() {
		keep := keepInactive(op.Stream)
		if op.Kind != "merge" || op.Commit == nil || keep <= 0 || e.Clock().Before(time.Unix(0, op.Commit.AtNs).Add(keep)) {
			continue
		}
		d, err := dir(op.Dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !e.verifyOutput(d, op) {
			errs = append(errs, fmt.Errorf("op %d: output %q does not verify: inputs kept", op.ID, op.Output))
			continue
		}
		if err := e.finish(d, op); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
