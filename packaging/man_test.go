package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

// renderMan renders the man pages with `make man` into a fresh bin dir copy
// of the tree's docs and returns page -> roff.
func renderMan(t *testing.T) map[string]string {
	t.Helper()
	testutil.RequireTool(t, "make")
	run(t, "..", "make", "--no-print-directory", "man")
	out := map[string]string{}
	for _, p := range []string{"logcompactd.8", "logcompactd.yaml.5"} {
		b, err := os.ReadFile(filepath.Join("..", "bin", "man", p))
		if err != nil {
			t.Fatal(err)
		}
		out[p] = string(b)
	}
	return out
}

// TestManPages: logcompactd(8) documents every command, exit code, signal
// and contract metric; logcompactd.yaml(5) every config key; both render the
// same twice (no build date: the .deb is reproducible) and man reads them
// without a warning.
func TestManPages(t *testing.T) {
	first := renderMan(t)
	again := renderMan(t)
	for p := range first {
		if first[p] != again[p] {
			t.Errorf("%s renders differently twice", p)
		}
		if regexp.MustCompile(`20\d\d-\d\d-\d\d`).MatchString(strings.SplitN(first[p], "\n", 3)[1]) {
			t.Errorf("%s: a date in the title line: %q", p, strings.SplitN(first[p], "\n", 3)[1])
		}
	}
	page8, page5 := first["logcompactd.8"], first["logcompactd.yaml.5"]
	bold := func(s string) string { return `\fB` + strings.ReplaceAll(s, "_", `\_`) + `\fP` }
	has := func(page, s string) bool {
		return strings.Contains(page, bold(s)) || strings.Contains(page, `\fB`+s+`\fP`)
	}
	for _, c := range []string{"run", "once", "plan", "status", "check", "cat", "restore", "version", "SIGHUP", "SIGTERM", "0", "1", "2"} {
		if !has(page8, c) {
			t.Errorf("logcompactd(8) lacks %s", c)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	metrics := regexp.MustCompile("(?m)^\\| `(logcompactd_[a-z_]+)`").FindAllStringSubmatch(string(readme), -1)
	if len(metrics) < 20 {
		t.Fatalf("README's metrics table: %d names", len(metrics))
	}
	for _, m := range metrics {
		if !has(page8, m[1]) {
			t.Errorf("logcompactd(8) lacks the metric %s", m[1])
		}
	}
	for _, k := range config.Keys() {
		if k, ok := strings.CutPrefix(k, "streams[]."); ok {
			if !has(page5, k) {
				t.Errorf("logcompactd.yaml(5) lacks the stream key %s", k)
			}
			continue
		}
		if !has(page5, k) {
			t.Errorf("logcompactd.yaml(5) lacks %s", k)
		}
	}
	if man, err := exec.LookPath("man"); err == nil {
		for p := range first {
			cmd := exec.Command(man, "--warnings", "-l", "-Tutf8", filepath.Join("..", "bin", "man", p))
			cmd.Stdout = nil
			out, err := cmd.CombinedOutput()
			if err != nil || strings.Contains(string(out), "warning:") {
				t.Errorf("man %s: %v\n%s", p, err, grepWarnings(string(out)))
			}
		}
	}
}

func grepWarnings(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "warning") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
