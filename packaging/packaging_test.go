// Package packaging holds the tests of what ships around the binary: the
// systemd unit, make install and make deb.
package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

// unitWithBinary writes the unit with ExecStart pointing at a real binary, as
// an installed unit would (verify checks that the command exists).
func unitWithBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "logcompactd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/logcompactd").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	unit, err := os.ReadFile("systemd/logcompactd.service")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "logcompactd.service")
	if err := os.WriteFile(p, bytes.ReplaceAll(unit, []byte("/usr/bin/logcompactd"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnitVerifiesSilently: systemd-analyze verify prints nothing at all (an
// unknown key only warns on stderr with exit 0, so stderr must be empty too).
func TestUnitVerifiesSilently(t *testing.T) {
	sa := testutil.RequireTool(t, "systemd-analyze")
	unit := unitWithBinary(t)
	out, err := exec.Command(sa, "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitSecurityScore: the hardened unit's exposure is at most 2.0.
func TestUnitSecurityScore(t *testing.T) {
	sa := testutil.RequireTool(t, "systemd-analyze")
	unit := unitWithBinary(t)
	out, err := exec.Command(sa, "security", "--offline=true", "--threshold=20", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("exposure %.1f", score)
	if err != nil || score > 2.0 {
		t.Fatalf("exposure %.1f (want ≤ 2.0), err %v", score, err)
	}
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestMakeInstallAndDeb: make install lays out binary, unit (ExecStart at
// PREFIX), man page, config and a 0700 state dir, and keeps an existing config;
// make deb builds a package whose config is a conffile and whose postinst
// enables the unit with deb-systemd-helper.
func TestMakeInstallAndDeb(t *testing.T) {
	testutil.RequireTool(t, "make")
	dest := t.TempDir()
	run(t, "..", "make", "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr/local")
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/logcompactd": 0o755, "lib/systemd/system/logcompactd.service": 0o644,
		"usr/local/share/man/man8/logcompactd.8.gz": 0o644, "usr/local/share/man/man5/logcompactd.yaml.5.gz": 0o644,
		"usr/local/share/doc/logcompactd/copyright": 0o644, "etc/logcompactd.yaml": 0o644, "var/lib/logcompactd": 0o700,
	} {
		fi, err := os.Stat(filepath.Join(dest, path))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v %v (want mode %o)", path, fi, err, mode)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "lib/systemd/system/logcompactd.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/logcompactd ") {
		t.Fatalf("unit ExecStart not at PREFIX:\n%s", unit)
	}
	conf := filepath.Join(dest, "etc/logcompactd.yaml")
	if err := os.WriteFile(conf, []byte("# the operator's own\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "..", "make", "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr/local")
	if b, _ := os.ReadFile(conf); string(b) != "# the operator's own\n" {
		t.Fatal("make install overwrote an existing /etc/logcompactd.yaml")
	}

	testutil.RequireTool(t, "dpkg-deb")
	dist := t.TempDir()
	run(t, "..", "make", "--no-print-directory", "deb", "DIST="+dist)
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("debs: %v", debs)
	}
	info := run(t, dist, "dpkg-deb", "-I", debs[0])
	if !strings.Contains(info, "Package: logcompactd") {
		t.Fatalf("control:\n%s", info)
	}
	x := t.TempDir()
	run(t, dist, "dpkg-deb", "-R", debs[0], x)
	if b, _ := os.ReadFile(filepath.Join(x, "DEBIAN/conffiles")); strings.TrimSpace(string(b)) != "/etc/logcompactd.yaml" {
		t.Fatalf("conffiles %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(x, "DEBIAN/postinst")); !strings.Contains(string(b), "deb-systemd-helper enable logcompactd.service") ||
		!strings.Contains(string(b), "check --strict") {
		t.Fatal("postinst does not enable the unit, or starts it without check --strict")
	}
	for _, p := range []string{"usr/bin/logcompactd", "lib/systemd/system/logcompactd.service", "usr/share/man/man8/logcompactd.8.gz",
		"usr/share/man/man5/logcompactd.yaml.5.gz", "usr/share/doc/logcompactd/copyright", "usr/share/doc/logcompactd/changelog.gz",
		"etc/logcompactd.yaml"} {
		if _, err := os.Stat(filepath.Join(x, p)); err != nil {
			t.Fatalf("package lacks %s", p)
		}
	}
	// lintian (Debian's package checker): no error, no warning.
	lintian := testutil.RequireTool(t, "lintian")
	cmd := exec.Command(lintian, "--tag-display-limit", "0", debs[0])
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}
	if err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	}
}
