package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

// TestS3ArchiveUnderKillAndOutage: the renumbering writer, `run` merging and
// archiving to s3://bkt/fleet/{host} on a real S3 server (versitygw on
// loopback) with zstd, killed -9 every 1-3 s for a minute; the server itself
// is killed 20 s in and restarted 6 s later. Afterwards: every line exactly
// once across hot and the bucket, in order (the bucket by name, then hot); no
// archival finished while the server was down (nothing left hot for it); no
// multipart upload left open; no temp file anywhere.
func TestS3ArchiveUnderKillAndOutage(t *testing.T) {
	store := testutil.StartS3(t, "bkt")
	r := newRigStream(t, rigStream{pattern: "app.log*", order: "mtime", targetSize: "64KiB", maxHot: "512KiB", store: store})
	const killPhase = 60 * time.Second
	stop := r.startWriter(fmt.Sprintf("renumber:%s:20:100:%d", r.hot, r.rng.Uint64()))
	var down, up time.Time
	outage := make(chan error, 1)
	go func() {
		<-time.After(20 * time.Second)
		down = time.Now()
		store.Stop()
		<-time.After(6 * time.Second)
		up = time.Now()
		outage <- store.Restart()
	}()
	kills, inFlight := r.killLoop(killPhase)
	if err := <-outage; err != nil {
		t.Fatal(err)
	}
	written := stop()
	r.finalOnce()
	files := r.inStreamOrder()
	r.check("s3 cold tier", killPhase, written, kills, inFlight, fmt.Sprintf("; %d files in stream order; server down %s", len(files), up.Sub(down).Round(time.Millisecond)))
	if open := store.OpenUploads("bkt"); len(open) > 0 {
		t.Errorf("multipart uploads left open: %v", open)
	}
	// Nothing finished archiving while the server was down: an "archived"
	// record is written after the object was verified and the segment removed.
	f, err := os.Open(r.logPath)
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	during, unusable := 0, 0
	for sc.Scan() {
		var rec struct {
			TS  string `json:"ts"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", rec.TS)
		if err != nil {
			continue
		}
		if rec.Msg == "archived" && ts.After(down.Add(time.Second)) && ts.Before(up) {
			during++
		}
		if strings.HasPrefix(rec.Msg, "cold dir unusable") || strings.HasPrefix(rec.Msg, "archival not finished") {
			unusable++
		}
	}
	// cat: every line once, in order, across the bucket and hot; restore:
	// each archive back, byte-exact.
	lines := r.catCheck(written)
	dir := t.TempDir()
	restore := exec.Command(r.bin, "--config", r.config, "restore", "app", "--to", dir)
	restore.Env = r.env()
	if b, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, b)
	}
	objs, err := os.ReadDir(filepath.Join(r.cold, "app"))
	must(t, err)
	for _, o := range objs {
		rd, done := openSegment(t, filepath.Join(r.cold, "app", o.Name()))
		want, err := io.ReadAll(rd)
		done()
		must(t, err)
		got, err := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(o.Name(), ".zst")))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("restore of %s: %v, equal %v", o.Name(), err, bytes.Equal(got, want))
		}
	}
	t.Logf("cat: %d lines in order; restore: %d archives byte-exact", lines, len(objs))
	if during > 0 {
		t.Errorf("%d archivals finished while the S3 server was down", during)
	}
	if unusable == 0 {
		t.Errorf("the outage went unnoticed in the log")
	}
	t.Logf("%d log records of archival failing or backing off during the outage", unusable)
}

// catCheck runs `cat app` and requires the writer's lines 0..written-1, each
// once, in order. It returns how many it read.
func (r *renumberRig) catCheck(written int) int {
	t := r.t
	var out, errb bytes.Buffer
	cat := exec.Command(r.bin, "--config", r.config, "cat", "app")
	cat.Env, cat.Stdout, cat.Stderr = r.env(), &out, &errb
	if err := cat.Run(); err != nil {
		t.Fatalf("cat: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for i, l := range lines {
		if l != "app "+strconv.Itoa(i) {
			t.Fatalf("cat: line %d is %q (of %d)", i, l, len(lines))
		}
	}
	if len(lines) != written {
		t.Fatalf("cat printed %d lines, %d were written", len(lines), written)
	}
	return len(lines)
}

// TestSmallSegmentsGoInOneObject: forty 2 KB closed segments past max_age: one
// `once` archives them as one archive named after the first and last segment
// it holds — one object to a bucket (an object store charges per request),
// one file to a local cold dir (one job and one set of fsyncs, not forty) —
// removes them from hot, and `cat` gives their bytes back in order. With
// compress: none a local archival is a rename per segment: no batch.
func TestSmallSegmentsGoInOneObject(t *testing.T) {
	for _, tier := range []string{"s3", "local", "local-none"} {
		t.Run(tier, func(t *testing.T) { smallSegmentsInOneArchive(t, tier) })
	}
}

func smallSegmentsInOneArchive(t *testing.T, tier string) {
	e := newEnv(t)
	var storeEnv []string
	archive := fmt.Sprintf(`{cold_dir: %s/cold, max_age: 1h}`, e.dir)
	coldDir := filepath.Join(e.dir, "cold", "app")
	switch tier {
	case "s3":
		store := testutil.StartS3(t, "bkt")
		storeEnv = store.Env()
		archive = fmt.Sprintf(`{cold_dir: "s3://bkt/h", max_age: 1h, s3: {endpoint: %q, path_style: true}}`, store.Endpoint)
		coldDir = filepath.Join(store.Dir, "bkt", "h", "app")
	case "local-none":
		archive = fmt.Sprintf(`{cold_dir: %s/cold, max_age: 1h, compress: none}`, e.dir)
	}
	must(t, os.MkdirAll(filepath.Join(e.dir, "cold"), 0o755))
	must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`state_dir: %s/state
load: {enabled: false}
compaction: {threshold: 1000000, target_size: 1MiB}
archive: %s
streams:
  - {name: app, dir: %s, pattern: "app-*.log"}
`, e.dir, archive, e.logs)), 0o644))
	var want strings.Builder
	for i := 1; i <= 40; i++ {
		p := e.segment(fmt.Sprintf("app-%06d.log", i), 2000, 2*time.Hour)
		b, err := os.ReadFile(p)
		must(t, err)
		want.Write(b)
	}
	e.segment("app-000041.log", 10, 0) // the newest: active, stays hot
	want.WriteString(strings.Repeat("l\n", 5))
	run := func(args ...string) string {
		cmd := exec.Command(binary, append([]string{"--config", e.config}, args...)...)
		cmd.Env = append(childEnv(), storeEnv...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return string(out)
	}
	run("once")
	objs, err := os.ReadDir(coldDir)
	must(t, err)
	if tier == "local-none" {
		if len(objs) != 40 || objs[0].Name() != "app-000001.log" {
			t.Fatalf("%d archives (first %v), want the 40 segments renamed", len(objs), objs[0])
		}
		if got := run("cat", "app"); got != want.String() {
			t.Fatalf("cat: %d bytes, want %d", len(got), want.Len())
		}
		return
	}
	if len(objs) != 1 || objs[0].Name() != "app-000001.log..app-000040.log.zst" {
		var names []string
		for _, o := range objs {
			names = append(names, o.Name())
		}
		t.Fatalf("objects: %v, want one named after the 40 segments", names)
	}
	if left, _ := os.ReadDir(e.logs); len(left) != 1 {
		t.Fatalf("%d files left hot, want the active one", len(left))
	}
	if got := run("cat", "app"); got != want.String() {
		t.Fatalf("cat: %d bytes, want %d", len(got), want.Len())
	}
	// restore writes the object back; a second restore into the same dir
	// fails and replaces nothing.
	dir := t.TempDir()
	run("restore", "app", "--to", dir)
	restored := filepath.Join(dir, "app-000001.log..app-000040.log")
	got, err := os.ReadFile(restored)
	must(t, err)
	if want40 := want.String()[:len(want.String())-10]; string(got) != want40 {
		t.Fatalf("restored %d bytes, want %d", len(got), len(want40))
	}
	must(t, os.WriteFile(restored, []byte("the operator's own\n"), 0o644))
	again := exec.Command(binary, "--config", e.config, "restore", "app", "--to", dir)
	again.Env = append(childEnv(), storeEnv...)
	if out, err := again.CombinedOutput(); err == nil || !strings.Contains(string(out), "exists") {
		t.Fatalf("restore over an existing file: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(restored); string(b) != "the operator's own\n" {
		t.Fatalf("restore replaced a file: %q", b)
	}
}
