package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/logcompactd/logcompactd/internal/config"
)

// passLog is the debug "pass" line of one cycle.
type passLog struct {
	reread, verified, reused int64
	hot                      int64
	release                  bool // not a pass: releaseMemory was called
}

// passCore sends every "pass" entry to a channel (and drops the rest).
type passCore struct {
	zapcore.LevelEnabler
	ch     chan passLog
	fields []zapcore.Field
}

func (c *passCore) With(f []zapcore.Field) zapcore.Core {
	return &passCore{c.LevelEnabler, c.ch, append(append([]zapcore.Field{}, c.fields...), f...)}
}
func (c *passCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Message == "pass" {
		return ce.AddCore(e, c)
	}
	return ce
}
func (c *passCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	c.ch <- passLog{reread: enc.Fields["streams_reread"].(int64), verified: enc.Fields["streams_verified"].(int64),
		reused: enc.Fields["streams_reused"].(int64), hot: enc.Fields["hot_bytes"].(int64)}
	return nil
}
func (c *passCore) Sync() error { return nil }

// runIdle runs a daemon over one stream of three idle segments (scan_interval
// 20ms: a full re-read every 200ms, a history save every second; with
// failSave, every save fails) until the test ends; next returns the next
// entry of what it did: a pass, or (with release set) the memory given back
// after the pass before it.
func runIdle(t *testing.T, failSave bool) (logs string, next func() passLog) {
	t.Helper()
	dir := t.TempDir()
	logs = filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for i := 1; i <= 3; i++ {
		p := filepath.Join(logs, fmt.Sprintf("app-%d.log", i))
		if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`state_dir: %s/state
scan_interval: 20ms
load: {enabled: false}
compaction: {threshold: 1000000}
archive: {cold_dir: %s/cold, max_hot_bytes: 1GiB}
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, dir, dir, logs)))
	if err != nil {
		t.Fatal(err)
	}
	if every, save := fullScanEvery(cfg), saveEvery(cfg); every != 200*time.Millisecond || save != time.Second {
		t.Fatalf("fullScanEvery = %v, saveEvery = %v", every, save)
	}
	passes := make(chan passLog, 1000)
	release := releaseMemory
	releaseMemory = func() { passes <- passLog{release: true} }
	t.Cleanup(func() { releaseMemory = release })
	log := zap.New(&passCore{LevelEnabler: zapcore.DebugLevel, ch: passes})
	d := openDaemon(t, cfg, Options{Logger: log})
	if failSave { // a directory where the history goes: every save fails
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, historyName, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; (err != nil) != failSave { // the save at the stop fails too
			t.Errorf("run stopped with %v", err)
		}
	})
	return logs, func() passLog {
		t.Helper()
		select {
		case p := <-passes:
			return p
		case <-time.After(30 * time.Second):
			t.Fatal("no pass")
		}
		return passLog{}
	}
}

// With inotify watching, a tick re-reads only directories that had an event: an
// idle directory is vouched unchanged (its previous scan reused), a write is seen
// through its event, and every fullScanEvery a tick re-reads everything anyway.
func TestRunRereadsOnlyWhatChanged(t *testing.T) {
	logs, nextEntry := runIdle(t, false)
	next := func() passLog {
		t.Helper()
		for {
			if p := nextEntry(); !p.release {
				return p
			}
		}
	}
	if p := next(); p.reread != 1 || p.hot != 30 {
		t.Fatalf("first pass %+v", p)
	}
	// Idle: passes reuse the scan, and a full re-read comes back at least every
	// fullScanEvery (no event happened, so nothing else makes it re-read).
	reused, reread := 0, 0
	for n := 0; reused < 3 || reread < 2; n++ {
		if n > 200 {
			t.Fatalf("after %d idle passes: %d streams reused, %d re-read", n, reused, reread)
		}
		p := next()
		reused += int(p.reused)
		reread += int(p.reread)
		if p.hot != 30 {
			t.Fatalf("idle pass %+v", p)
		}
	}
	// A write is an event: the next passes see it.
	f, err := os.OpenFile(filepath.Join(logs, "app-2.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("more\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for p := next(); p.hot != 35; p = next() {
		if p.hot != 30 {
			t.Fatalf("pass %+v", p)
		}
	}
}

// An idle daemon gives the memory of a re-read that built new lists back to
// the kernel right after it (the runtime would keep it resident up to its
// heap goal: at 100,000 idle segments 55 MiB instead of 41), but not after
// the ticks that re-read nothing, nor after a safety-net re-read that found
// the same files and kept their lists: those pay for no collection, also when
// the history cannot be saved (the save is tried again every cycle).
func TestRunGivesMemoryBackAfterAFullReRead(t *testing.T) {
	t.Run("saving", func(t *testing.T) { givesMemoryBack(t, false) })
	t.Run("save failing", func(t *testing.T) { givesMemoryBack(t, true) })
}

func givesMemoryBack(t *testing.T, failSave bool) {
	_, next := runIdle(t, failSave)
	var passes []passLog // each with release set when the memory was given back after it
	for verified, reused, n := 0, 0, 0; verified < 3 || reused < 10; n++ {
		if n > 500 { // a filesystem whose getdents and stat inode numbers differ verifies nothing
			t.Fatalf("after %d entries: %d streams verified, %d reused", n, verified, reused)
		}
		switch p := next(); {
		case p.release:
			if len(passes) == 0 {
				t.Fatal("memory given back before the first pass")
			}
			passes[len(passes)-1].release = true
		default:
			passes = append(passes, p)
			verified += int(p.verified)
			reused += int(p.reused)
		}
	}
	passes = passes[:len(passes)-1] // what follows the last one is not known yet
	if p := passes[0]; p.reread != 1 || p.verified != 0 || !p.release {
		t.Fatalf("the first pass built the lists and kept their memory: %+v", p)
	}
	quiet := 0
	for i, p := range passes {
		if p.reread > p.verified && !p.release {
			t.Fatalf("pass %d built new lists and kept their memory: %+v", i, p)
		}
		if failSave && p.reread > 0 && p.reread == p.verified && p.release {
			t.Fatalf("pass %d re-read a directory that held the same files, kept its list, and still paid for a collection: %+v", i, p)
		}
		if p.reused > 0 && !p.release {
			quiet++
		}
	}
	if quiet == 0 {
		t.Fatalf("every one of %d passes paid for a collection, the ticks that re-read nothing too", len(passes))
	}
}
