package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const good = `
state_dir: /var/lib/logcompactd-test
scan_interval: 250ms
compaction:
  target_size: 1MiB
  growth_ref: 10KiB/s
archive:
  cold_dir: /srv/cold
  time_to_archive: 1h
streams:
  - name: app
    dir: /srv/logs/app
    pattern: "app-*.log"
    compaction: {target_size: 4MiB, compress: zstd}
    archive: {max_hot_bytes: 1GiB}
  - name: other
    dir: /srv/logs/other
    pattern: "*.log"
    order: mtime
`

func TestParseGoodConfig(t *testing.T) {
	c, err := Parse("test.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.ScanInterval != 250*time.Millisecond {
		t.Errorf("scan_interval = %v", c.ScanInterval)
	}
	app, other := c.Streams[0], c.Streams[1]
	if app.Compaction.TargetSize != 4<<20 || app.Compaction.Compress != "zstd" {
		t.Errorf("stream override not applied: %+v", app.Compaction)
	}
	if app.Compaction.GrowthRef != 10*1024 {
		t.Errorf("global growth_ref not inherited by override: %v", app.Compaction.GrowthRef)
	}
	if other.Compaction.TargetSize != 1<<20 || other.Order != "mtime" || app.Order != "name" {
		t.Errorf("global values not inherited: %+v %q", other.Compaction, other.Order)
	}
	if app.Archive.MaxHotBytes != 1<<30 || other.Archive.MaxHotBytes != 10<<30 {
		t.Errorf("archive override: %v %v", app.Archive.MaxHotBytes, other.Archive.MaxHotBytes)
	}
	if c.Growth.Horizon != time.Hour {
		t.Errorf("growth.horizon should default to archive.time_to_archive, got %v", c.Growth.Horizon)
	}
	if c.Archive.KeepFree.Percent != 5 || !c.Load.Enabled || c.Compaction.Workers != 2 {
		t.Errorf("defaults not applied: %+v %+v", c.Archive.KeepFree, c.Load)
	}
}

func TestShippedExampleConfigIsValid(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "configs", "logcompactd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Streams) == 0 {
		t.Fatal("example config has no streams")
	}
}

func TestLoadMissingFileNamesIt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(p)
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), p) {
		t.Fatalf("want an error naming %s, got %v", p, err)
	}
}

// withStream builds a config whose only stream entry is given.
func withStream(stream string) string {
	return "streams:\n  - " + strings.ReplaceAll(strings.TrimSpace(stream), "\n", "\n    ") + "\n"
}

const okStream = "name: a\ndir: /srv/a\npattern: \"a-*.log\""

func TestInvalidConfigsNameTheKey(t *testing.T) {
	worldWritable := t.TempDir()
	if err := os.Chmod(worldWritable, 0o777); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, yaml, key string
		line            int
	}{
		{"a typo in a top-level key is rejected", "scan_intervl: 1s\n" + withStream(okStream), "scan_intervl", 1},
		{"a typo in a nested key is rejected", "compaction:\n  target_sise: 1MiB\n" + withStream(okStream), "compaction.target_sise", 2},
		{"a typo inside a stream is rejected", withStream(okStream + "\npatern: x"), "streams[0].patern", 5},
		{"a typo in a stream override is rejected", withStream(okStream + "\ncompaction: {workerz: 2}"), "streams[0].compaction.workerz", 5},
		{"a list where a duration belongs is rejected", "scan_interval: [1]\n" + withStream(okStream), "scan_interval", 1},
		{"a string where a number belongs is rejected", "growth:\n  alpha: lots\n" + withStream(okStream), "growth.alpha", 2},
		{"a string where a bool belongs is rejected", "load:\n  enabled: maybe\n" + withStream(okStream), "load.enabled", 2},
		{"an unknown size unit is rejected", "compaction:\n  target_size: 12XB\n" + withStream(okStream), "compaction.target_size", 2},
		{"a duration without unit is rejected", "scan_interval: 30\n" + withStream(okStream), "scan_interval", 1},
		{"a negative duration is rejected", "compaction:\n  quiesce: -5m\n" + withStream(okStream), "compaction.quiesce", 2},
		{"a rate without a time unit is rejected", "compaction:\n  growth_ref: 1MiB\n" + withStream(okStream), "compaction.growth_ref", 2},
		{"a keep_free above 100% is rejected", "archive:\n  keep_free: 150%\n" + withStream(okStream), "archive.keep_free", 2},
		{"alpha above 1 is rejected", "growth:\n  alpha: 1.5\n" + withStream(okStream), "growth.alpha", 2},
		{"low_watermark of 0 is rejected", "archive:\n  low_watermark: 0\n" + withStream(okStream), "archive.low_watermark", 2},
		{"pause_above above 1 is rejected", "load:\n  pause_above: 2\n" + withStream(okStream), "load.pause_above", 2},
		{"zero workers are rejected", "compaction:\n  workers: 0\n" + withStream(okStream), "compaction.workers", 2},
		{"a fraction of a worker is rejected", "compaction:\n  workers: 2.5\n" + withStream(okStream), "compaction.workers", 2},
		{"a fraction of min_segments is rejected", "compaction:\n  min_segments: 3.5\n" + withStream(okStream), "compaction.min_segments", 2},
		{"a 1ns scan interval is rejected", "scan_interval: 1ns\n" + withStream(okStream), "scan_interval", 1},
		{"a 1ms load interval is rejected", "load:\n  interval: 1ms\n" + withStream(okStream), "load.interval", 2},
		{"a zero quiesce is rejected", "compaction:\n  quiesce: 0s\n" + withStream(okStream), "compaction.quiesce", 2},
		{"a 1ns growth window is rejected", "growth:\n  window: 1ns\n" + withStream(okStream), "growth.window", 2},
		{"a 1ns time_to_archive in a stream is rejected", withStream(okStream + "\narchive: {time_to_archive: 1ns}"), "streams[0].archive.time_to_archive", 5},
		{"min_segments below 2 is rejected", "compaction:\n  min_segments: 1\n" + withStream(okStream), "compaction.min_segments", 2},
		{"an unknown compression is rejected", "archive:\n  compress: lz4\n" + withStream(okStream), "archive.compress", 2},
		{"an unknown stream order is rejected", withStream(okStream + "\norder: size"), "streams[0].order", 5},
		{"an unknown log level is rejected", "log_level: loud\n" + withStream(okStream), "log_level", 1},
		{"a relative stream dir is rejected", withStream("name: a\ndir: logs/a\npattern: x"), "streams[0].dir", 3},
		{"a relative state dir is rejected", "state_dir: state\n" + withStream(okStream), "state_dir", 1},
		{"a relative cold dir is rejected", "archive:\n  cold_dir: cold\n" + withStream(okStream), "archive.cold_dir", 2},
		{"a stream without a name is rejected", withStream("dir: /srv/a\npattern: x"), "streams[0].name", 0},
		{"two streams with one name are rejected", withStream(okStream) + "  - name: a\n    dir: /srv/b\n    pattern: x\n", "streams[1].name", 5},
		{"a pattern with a slash is rejected", withStream("name: a\ndir: /srv/a\npattern: \"x/*.log\""), "streams[0].pattern", 4},
		{"a malformed glob is rejected", withStream("name: a\ndir: /srv/a\npattern: \"[a-\""), "streams[0].pattern", 4},
		{"no streams at all is rejected", "scan_interval: 1s\n", "streams", 0},
		{"overlapping patterns in one dir are rejected", withStream(okStream) + "  - name: b\n    dir: /srv/a\n    pattern: \"*.log\"\n", "streams[1].pattern", 7},
		{"a nested dir whose entry matches the outer pattern is rejected", withStream("name: a\ndir: /srv/a\npattern: \"*\"") + "  - name: b\n    dir: /srv/a/sub\n    pattern: \"*.log\"\n", "streams[1].dir", 6},
		{"a cold dir equal to a managed dir is rejected", "archive:\n  cold_dir: /srv/a\n" + withStream(okStream), "streams[0].archive.cold_dir", 0},
		{"a cold dir inside a managed dir is rejected", withStream(okStream + "\narchive: {cold_dir: /srv/a/cold}"), "streams[0].archive.cold_dir", 5},
		{"a managed dir inside a cold dir is rejected", "archive:\n  cold_dir: /srv\n" + withStream(okStream), "streams[0].dir", 5},
		{"a state dir inside a managed dir is rejected", "state_dir: /srv/a/state\n" + withStream(okStream), "state_dir", 1},
		{"a world-writable managed dir without sticky bit is rejected", withStream("name: a\ndir: " + worldWritable + "\npattern: x"), "streams[0].dir", 3},
		{"a managed dir that is a file is rejected", withStream("name: a\ndir: " + notDir + "\npattern: x"), "streams[0].dir", 3},
		{"a negative cold_max_bytes is rejected", "archive:\n  cold_max_bytes: -1\n" + withStream(okStream), "archive.cold_max_bytes", 2},
		{"a cold_max_age without unit is rejected", "archive:\n  cold_max_age: 7\n" + withStream(okStream), "archive.cold_max_age", 2},
		{"a zero target size is rejected", "compaction:\n  target_size: 0\n" + withStream(okStream), "compaction.target_size", 2},
		{"a scalar where a section belongs is rejected", "growth: 5\n" + withStream(okStream), "growth", 1},
		{"a YAML syntax error is rejected", "streams: [\n", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.yaml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			if ce.File != "bad.yaml" || ce.Key != tc.key {
				t.Fatalf("error %q: want file bad.yaml and key %q, got file %q key %q", err, tc.key, ce.File, ce.Key)
			}
			if tc.line != 0 && ce.Line != tc.line {
				t.Fatalf("error %q: want line %d, got %d", err, tc.line, ce.Line)
			}
			if tc.key != "" && !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("message %q does not name the key", err)
			}
		})
	}
	if len(cases) < 15 {
		t.Fatalf("only %d distinct bad configs", len(cases))
	}
}

func TestUnknownKeySuggestsTheKnownOne(t *testing.T) {
	_, err := Parse("x.yaml", []byte("scan_intervl: 1s\n"+withStream(okStream)))
	if err == nil || !strings.Contains(err.Error(), `did you mean "scan_interval"`) {
		t.Fatalf("got %v", err)
	}
}

func TestPatternsOverlap(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"app-*.log", "*.log", true},
		{"app-*.log", "db-*.log", false},
		{"*.log", "*.txt", false},
		{"[0-9]*.log", "a*", false},
		{"[0-9]*.log", "1?.log", true},
		{"[^a]*", "a*", false},
		{"x\\*", "x*", true},
		{"app-??.log", "app-???.log", false},
		{"*", "anything", true},
	}
	for _, c := range cases {
		if got := PatternsOverlap(c.a, c.b); got != c.want {
			t.Errorf("PatternsOverlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := PatternsOverlap(c.b, c.a); got != c.want {
			t.Errorf("PatternsOverlap(%q, %q) = %v, want %v (symmetric)", c.b, c.a, got, c.want)
		}
	}
}

// TestConfigFileIsRefusedUnlessOnlyItsOwnerCanWriteIt: a root daemon takes its
// orders from this file, so one that others can change, or that is not a
// regular file (a FIFO would hang the read), or that is huge, is refused with
// an error that names the file, at once.
func TestConfigFileIsRefusedUnlessOnlyItsOwnerCanWriteIt(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ok.yaml")
	body := []byte(withStream(okStream))
	if err := os.WriteFile(good, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(good, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(good); err != nil {
		t.Fatalf("a 0644 config of ours: %v", err)
	}
	groupW := filepath.Join(dir, "g.yaml")
	os.WriteFile(groupW, body, 0o600)
	os.Chmod(groupW, 0o664)
	worldW := filepath.Join(dir, "w.yaml")
	os.WriteFile(worldW, body, 0o600)
	os.Chmod(worldW, 0o646)
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	os.WriteFile(huge, append(body, make([]byte, MaxFileBytes)...), 0o600)
	for _, c := range []struct{ name, path, want string }{
		{"group-writable", groupW, "writable by group or others"},
		{"world-writable", worldW, "writable by group or others"},
		{"a FIFO", fifo, "not a regular file"},
		{"a directory", dir, "not a regular file"},
		{"larger than MaxFileBytes", huge, "more than"},
	} {
		done := make(chan error, 1)
		go func() { _, err := Load(c.path); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
				t.Errorf("%s: err = %v, want it to name the file and say %q", c.name, err, c.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Load blocked", c.name)
		}
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(dir, "other.yaml")
		os.WriteFile(other, body, 0o644)
		if err := os.Chown(other, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(other); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
			t.Errorf("a config owned by another user: err = %v", err)
		}
	}
}

func TestS3ColdDir(t *testing.T) {
	host, _ := os.Hostname()
	cfg, err := Parse("t.yaml", []byte(`archive: {cold_dir: "s3://logs/fleet/{host}", s3: {endpoint: "http://127.0.0.1:9000", path_style: true}}
streams:
  - {name: a, dir: /var/log/a, pattern: "*.log"}
  - {name: b, dir: /var/log/b, pattern: "*.log", archive: {cold_dir: "s3://other"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Streams[0].Archive.ColdDir; got != "s3://logs/fleet/"+host {
		t.Errorf("{host} not expanded: %q", got)
	}
	if a := cfg.Streams[0].Archive.S3; a.Region != "us-east-1" || a.PartSize != 64<<20 || !a.PathStyle || a.Timeout != 2*time.Minute {
		t.Errorf("s3 defaults and values: %+v", a)
	}
	if u, ok, err := ParseColdURL(cfg.Streams[1].Archive.ColdDir); !ok || err != nil || u.Bucket != "other" || u.Prefix != "" {
		t.Errorf("s3://other: %+v %v %v", u, ok, err)
	}
	for _, bad := range []string{"s3://ab", "s3://Logs/x", "s3://logs//x", "s3://logs/a/../b", "s3://logs/{user}"} {
		if _, ok, err := ParseColdURL(bad); !ok || err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, ok, _ := ParseColdURL("/var/log/cold"); ok {
		t.Error("a path taken for a URL")
	}
}
