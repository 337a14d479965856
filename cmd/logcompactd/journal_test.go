package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// journalWith writes an intent journal into the env's state dir with ops.
func (e *env) journalWith(t *testing.T, ops ...fsx.Op) string {
	t.Helper()
	state := filepath.Join(e.dir, "state")
	must(t, os.MkdirAll(state, 0o700))
	must(t, os.Chmod(state, 0o700))
	sd, err := fsx.OpenDir(state)
	must(t, err)
	defer sd.Close()
	j, err := fsx.OpenJournal(sd, "journal")
	must(t, err)
	for _, op := range ops {
		_, err := j.Begin(op)
		must(t, err)
	}
	must(t, j.Close())
	return filepath.Join(state, "journal")
}

// TestCorruptJournalTurnsDestructiveWorkOff: a journal damaged before its end may
// hold the only record of a committed merge, so nothing may be merged, archived
// or deleted until an operator looks; the journal itself is left as it is.
func TestCorruptJournalTurnsDestructiveWorkOff(t *testing.T) {
	e := newEnv(t)
	e.compactConfig("")
	for i := 1; i <= 4; i++ {
		e.segment(fmt.Sprintf("app-%06d.log", i), 4000, time.Hour)
	}
	op := fsx.Op{Kind: "merge", Stream: "app", Dir: e.logs, Output: "x", Temp: ".logcompactd-tmp-x"}
	path := e.journalWith(t, op, op, op)
	b, _ := os.ReadFile(path)
	b[15] ^= 0xff // inside the first record
	must(t, os.WriteFile(path, b, 0o600))
	before := listing(t, e.logs)
	_, stderr, _ := e.cli("once")
	if after := listing(t, e.logs); after != before {
		t.Fatalf("the stream changed with a corrupt journal:\n%s\n---\n%s", before, after)
	}
	if !strings.Contains(stderr, "merging and deleting are OFF") {
		t.Fatalf("not said loudly:\n%s", stderr)
	}
	if after, _ := os.ReadFile(path); string(after) != string(b) {
		t.Fatal("the corrupt journal was modified")
	}
	out, _, _ := e.cli("plan")
	if !strings.Contains(out, "merging and archival are off") || strings.Contains(out, "-> compact") {
		t.Fatalf("plan does not show that run would do nothing:\n%s", out)
	}
}

// TestRecoveryNeverActsOutsideTheConfiguredDirs: a journal op naming a directory
// that is not (or no longer) configured is left alone, and so is that directory.
func TestRecoveryNeverActsOutsideTheConfiguredDirs(t *testing.T) {
	e := newEnv(t)
	e.compactConfig("")
	outside := t.TempDir()
	victim := filepath.Join(outside, ".logcompactd-tmp-0123456789abcdef")
	must(t, os.WriteFile(victim, []byte("not yours\n"), 0o600))
	e.journalWith(t, fsx.Op{Kind: "merge", Stream: "app", Dir: outside, Output: "out.log",
		Temp: filepath.Base(victim), Inputs: []fsx.FileRef{{Name: "in.log"}}})
	_, stderr, _ := e.cli("once")
	if b, err := os.ReadFile(victim); err != nil || string(b) != "not yours\n" {
		t.Fatalf("recovery touched a file outside the configured dirs: %v", err)
	}
	if !strings.Contains(stderr, "not a configured stream dir") {
		t.Fatalf("the refusal is not logged:\n%s", stderr)
	}
}

// TestColdRetentionRunsFromTheDaemon: cold_max_bytes deletes the oldest archives
// of the stream's cold subdir, and only those.
func TestColdRetentionRunsFromTheDaemon(t *testing.T) {
	e := newEnv(t)
	cold := filepath.Join(e.dir, "cold", "app")
	must(t, os.MkdirAll(cold, 0o750))
	for i := 1; i <= 4; i++ {
		p := filepath.Join(cold, fmt.Sprintf("app-%06d.log.zst", i))
		must(t, os.WriteFile(p, make([]byte, 1000), 0o600))
		at := time.Now().Add(-time.Duration(10-i) * time.Hour)
		must(t, os.Chtimes(p, at, at))
	}
	e.compactConfig("")
	cfg, _ := os.ReadFile(e.config)
	must(t, os.WriteFile(e.config, []byte(strings.Replace(string(cfg), "time_to_archive: 1h}",
		"time_to_archive: 1h, cold_max_bytes: 2500}", 1)), 0o644))
	if _, stderr, code := e.cli("once"); code != 0 {
		t.Fatalf("once: %d\n%s", code, stderr)
	}
	ents, _ := os.ReadDir(cold)
	var names []string
	for _, d := range ents {
		names = append(names, d.Name())
	}
	if strings.Join(names, " ") != "app-000003.log.zst app-000004.log.zst" {
		t.Fatalf("cold after retention: %v", names)
	}
}
