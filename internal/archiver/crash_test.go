package archiver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/objstore"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

const crashExit = 97

// crashChild runs one move (or one recovery) and exits at LCD_ACRASH_AT; with
// LCD_ACRASH_RECORD it appends every step it reaches to that file.
func crashChild(mode string) int {
	r, err := openRig(os.Getenv("LCD_ACRASH_HOT"), os.Getenv("LCD_ACRASH_COLD"), os.Getenv("LCD_ACRASH_STATE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	at, record := os.Getenv("LCD_ACRASH_AT"), os.Getenv("LCD_ACRASH_RECORD")
	var store *objstore.Publisher
	if ep := os.Getenv("LCD_ACRASH_S3"); ep != "" {
		st, err := objstore.New(context.Background(), "s3://bkt", config.S3{Endpoint: ep, Region: "us-east-1", PathStyle: true,
			PartSize: 5 << 20, Timeout: 10 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		st.Fault = func(p string) { r.env.Ops.Fault(p) }
		store = st.Publisher("app", r.hot)
	}
	dst := func(string) (fsx.Publisher, error) {
		if store != nil {
			return store, nil
		}
		return r.cold, nil
	}
	r.env.Ops.Fault = func(p string) {
		if record != "" {
			if f, err := os.OpenFile(record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
				fmt.Fprintln(f, p)
				f.Close()
			}
		}
		if p == at {
			os.Exit(crashExit)
		}
	}
	switch mode {
	case "move":
		names, _ := r.hot.Names()
		if len(names) != 1 {
			fmt.Fprintln(os.Stderr, "want one segment, have", names)
			return 1
		}
		st, err := r.hot.Stat(names[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		f, err := r.hot.OpenRead(names[0], st)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		head := make([]byte, 4)
		n, _ := f.ReadAt(head, 0)
		f.Close()
		compress := os.Getenv("LCD_ACRASH_COMPRESS")
		_, err = r.env.Move(context.Background(), MoveJob{Stream: "app", Hot: r.hot, HotPath: r.hotPath, Cold: r.cold,
			ColdPath: r.coldPath, Segment: fsx.RefOf(names[0], st), Output: ColdName(names[0], codec.Sniff(head[:n]), compress, 0),
			Compress: compress, Encoding: codec.Sniff(head[:n]), Store: publisherOrNil(store)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "move:", err)
			return 1
		}
	case "recover":
		if _, err := r.env.Ops.Recover(fsx.Resolver{Src: func(string) (*fsx.Dir, error) { return r.hot, nil },
			Dst: dst}); err != nil {
			fmt.Fprintln(os.Stderr, "recover:", err)
			return 1
		}
	}
	return 0
}

// publisherOrNil keeps a nil *objstore.Publisher a nil fsx.Publisher.
func publisherOrNil(p *objstore.Publisher) fsx.Publisher {
	if p == nil {
		return nil
	}
	return p
}

// crashCase is one archival scenario: the segment's bytes, the compress
// setting, and whether the cold dir is another filesystem (a tmpfs); with s3
// set, the cold tier is bucket "bkt" of that real S3 server.
type crashCase struct {
	hot, cold, state string
	data, compress   string
	text             string // what the archive decompresses to
	s3               *testutil.S3
}

func setup(t *testing.T, data, text, compress string, tmpfs bool) crashCase {
	base := t.TempDir()
	c := crashCase{hot: filepath.Join(base, "hot"), cold: filepath.Join(base, "cold"), state: filepath.Join(base, "state"), data: data, compress: compress, text: text}
	for _, p := range []string{c.hot, c.cold, c.state} {
		os.MkdirAll(p, 0o750)
	}
	if tmpfs {
		if err := syscall.Mount("tmpfs", c.cold, "tmpfs", 0, "size=16m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Unmount(c.cold, syscall.MNT_DETACH) })
	}
	os.WriteFile(filepath.Join(c.hot, "app-1.log"), []byte(data), 0o644)
	return c
}

func (c crashCase) child(t *testing.T, mode, at, record string) bool {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0", "LCD_ACRASH_MODE="+mode, "LCD_ACRASH_HOT="+c.hot,
		"LCD_ACRASH_COLD="+c.cold, "LCD_ACRASH_STATE="+c.state, "LCD_ACRASH_AT="+at, "LCD_ACRASH_COMPRESS="+c.compress,
		"LCD_ACRASH_RECORD="+record)
	if c.s3 != nil {
		cmd.Env = append(append(cmd.Env, c.s3.Env()...), "LCD_ACRASH_S3="+c.s3.Endpoint)
	}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == crashExit {
		return true
	}
	if err != nil {
		t.Fatalf("%s child (crash at %q): %v\n%s", mode, at, err, out)
	}
	return false
}

func (c crashCase) steps(t *testing.T, mode string) []string {
	rec := filepath.Join(t.TempDir(), "steps")
	c.child(t, mode, "", rec)
	b, _ := os.ReadFile(rec)
	return strings.Fields(string(b))
}

// rename renames the hot segment (if it is still hot under its name), as a
// rotating writer would.
func (c crashCase) rename(t *testing.T) {
	if err := os.Rename(filepath.Join(c.hot, "app-1.log"), filepath.Join(c.hot, "app-1.log.1")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// check recovers in the parent and asserts: the segment's bytes exist exactly
// once — hot, or in cold (decompressed once) — and no temp file is left anywhere.
func (c crashCase) check(t *testing.T, scenario string) {
	r, err := openRig(c.hot, c.cold, c.state)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	coldPath := c.cold
	var dst fsx.Publisher = r.cold
	if c.s3 != nil {
		for _, kv := range c.s3.Env() {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
		st, err := objstore.New(context.Background(), "s3://bkt", config.S3{Endpoint: c.s3.Endpoint, Region: "us-east-1",
			PathStyle: true, PartSize: 5 << 20, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		dst = st.Publisher("app", r.hot)
		coldPath = filepath.Join(c.s3.Dir, "bkt", "app")
	}
	if _, err := r.env.Ops.Recover(fsx.Resolver{Src: func(string) (*fsx.Dir, error) { return r.hot, nil },
		Dst: func(string) (fsx.Publisher, error) { return dst, nil }}); err != nil {
		t.Fatalf("%s: recover: %v", scenario, err)
	}
	hotNames, _ := r.hot.Names()
	var coldNames []string
	ents, _ := os.ReadDir(coldPath)
	for _, e := range ents {
		coldNames = append(coldNames, e.Name())
	}
	if c.s3 != nil {
		if open := c.s3.OpenUploads("bkt"); len(open) > 0 {
			t.Fatalf("%s: multipart uploads left open: %v", scenario, open)
		}
	}
	for _, n := range append(hotNames, coldNames...) {
		if fsx.IsTemp(n) {
			t.Fatalf("%s: temp left: %s", scenario, n)
		}
	}
	switch {
	case len(hotNames) == 1 && len(coldNames) == 0:
		if b, _ := os.ReadFile(filepath.Join(c.hot, hotNames[0])); string(b) != c.data {
			t.Fatalf("%s: hot segment changed", scenario)
		}
	case len(hotNames) == 0 && len(coldNames) == 1:
		enc := "none"
		if strings.HasSuffix(coldNames[0], ".zst") {
			enc = "zstd"
		}
		if got := decompress(t, filepath.Join(coldPath, coldNames[0]), enc); got != c.text {
			t.Fatalf("%s: archive %s differs", scenario, coldNames[0])
		}
	default:
		t.Fatalf("%s: hot %v, cold %v: not exactly once", scenario, hotNames, coldNames)
	}
	if p := r.env.Ops.Journal.Pending(); len(p) != 0 {
		t.Fatalf("%s: pending after recovery: %+v", scenario, p)
	}
}

// TestCrashAtEveryArchiveStep kills a real process at every step the layer
// reaches in each archival protocol — the compressing copy, the copy of a
// segment that is zstd already (to a cold dir on a tmpfs), the rename — then at
// every step of the recovery that follows; each state is also recovered after a
// writer renamed the segment in between. After each, the segment's bytes exist
// exactly once and no temp file remains.
func TestCrashAtEveryArchiveStep(t *testing.T) {
	testutil.RequireRoot(t, "mount a tmpfs as another filesystem")
	text := content(5000)
	var zb strings.Builder
	zw, _ := zstd.NewWriter(&zb)
	zw.Write([]byte(text))
	zw.Close()
	steps, inRecovery := 0, 0
	for _, m := range []struct {
		name, data, compress string
		tmpfs                bool
	}{{"compressing copy", text, "zstd", false}, {"as-is copy", zb.String(), "zstd", true}, {"rename", text, "none", false}} {
		points := setup(t, m.data, text, m.compress, m.tmpfs).steps(t, "move")
		if len(points) < 5 {
			t.Fatalf("%s reached only %v", m.name, points)
		}
		for _, p := range points {
			for _, renamed := range []bool{false, true} {
				c := setup(t, m.data, text, m.compress, m.tmpfs)
				if !c.child(t, "move", p, "") {
					t.Fatalf("%s never reached %s", m.name, p)
				}
				if renamed {
					c.rename(t)
				}
				steps++
				c.check(t, fmt.Sprintf("%s: crash at %s (renamed %v)", m.name, p, renamed))
			}
			probe := setup(t, m.data, text, m.compress, m.tmpfs)
			probe.child(t, "move", p, "")
			for _, rp := range probe.steps(t, "recover") {
				c := setup(t, m.data, text, m.compress, m.tmpfs)
				c.child(t, "move", p, "")
				if !c.child(t, "recover", rp, "") {
					t.Fatalf("recovery after %s never reached %s", p, rp)
				}
				inRecovery++
				c.check(t, fmt.Sprintf("%s: crash at %s, then in recovery at %s", m.name, p, rp))
			}
		}
	}
	t.Logf("archive crash sweep: %d crashes at protocol steps (half with the segment renamed before recovery), %d crashes inside recovery", steps, inRecovery)
	if inRecovery == 0 {
		t.Fatal("no crash inside recovery exercised")
	}
}

// TestCrashAtEveryS3UploadStep: the same sweep with the cold tier on a real S3
// server (versitygw on loopback): a compressing copy uploaded in one PUT and an
// as-is copy of a zstd segment large enough for a multipart upload (two 5 MiB
// parts), a crash at every step of the layer and of the upload ("s3:put",
// "s3:part:N", "s3:uploaded", "s3:verified"), then at every step of the
// recovery after each. After each: the segment's bytes once — hot, or one
// object that decompresses to them — no temp, no multipart upload left open,
// nothing pending.
func TestCrashAtEveryS3UploadStep(t *testing.T) {
	store := testutil.StartS3(t, "bkt")
	text := content(5000)
	big := strings.Repeat(randomText(7<<20), 1) // incompressible enough: > 5 MiB as zstd
	var zb strings.Builder
	zw, _ := zstd.NewWriter(&zb)
	zw.Write([]byte(big))
	zw.Close()
	fresh := func(data, text, compress string) crashCase {
		// a new bucket directory per case: empty the server's bucket
		if err := os.RemoveAll(filepath.Join(store.Dir, "bkt", "app")); err != nil {
			t.Fatal(err)
		}
		c := setup(t, data, text, compress, false)
		c.s3 = store
		return c
	}
	steps, inRecovery, s3Steps := 0, 0, 0
	for _, m := range []struct{ name, data, text, compress string }{
		{"compressing copy, one PUT", text, text, "zstd"},
		{"as-is copy, multipart", zb.String(), big, "zstd"},
	} {
		points := fresh(m.data, m.text, m.compress).steps(t, "move")
		if !slices.Contains(points, "s3:uploaded") || !slices.Contains(points, "s3:verified") {
			t.Fatalf("%s reached only %v", m.name, points)
		}
		for _, p := range points {
			if strings.HasPrefix(p, "s3:") {
				s3Steps++
			}
			c := fresh(m.data, m.text, m.compress)
			if !c.child(t, "move", p, "") {
				t.Fatalf("%s never reached %s", m.name, p)
			}
			steps++
			c.check(t, fmt.Sprintf("%s: crash at %s", m.name, p))
			if m.data != text {
				continue // the recovery sweep on the small case: each step uploads 5 MiB here
			}
			probe := fresh(m.data, m.text, m.compress)
			probe.child(t, "move", p, "")
			for _, rp := range probe.steps(t, "recover") {
				c := fresh(m.data, m.text, m.compress)
				c.child(t, "move", p, "")
				if !c.child(t, "recover", rp, "") {
					t.Fatalf("recovery after %s never reached %s", p, rp)
				}
				inRecovery++
				c.check(t, fmt.Sprintf("%s: crash at %s, then in recovery at %s", m.name, p, rp))
			}
		}
	}
	t.Logf("S3 archive crash sweep: %d crashes at protocol steps (%d of them inside the upload), %d inside recovery", steps, s3Steps, inRecovery)
}

// randomText is n bytes of lines of random base64 (zstd saves ~25 %).
func randomText(n int) string {
	b := make([]byte, n*3/4)
	rand.Read(b)
	enc := base64.StdEncoding.EncodeToString(b)
	var sb strings.Builder
	for len(enc) > 0 {
		k := min(99, len(enc))
		sb.WriteString(enc[:k])
		sb.WriteByte('\n')
		enc = enc[k:]
	}
	return sb.String()
}
