package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

// ns drives a real systemd booted as PID 1 in private namespaces
// (scripts/systemd-ns.sh: overlay root over the host's /, private cgroup2,
// tmpfs /tmp and /run; the host is never written).
type ns struct {
	t   *testing.T
	pid string
}

func (n ns) sh(script string) (string, error) {
	out, err := exec.Command("nsenter", "-t", n.pid, "-m", "-p", "--", "sh", "-c", script).CombinedOutput()
	return string(out), err
}

func (n ns) must(script string) string {
	n.t.Helper()
	out, err := n.sh(script)
	if err != nil {
		n.t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

// waitFor polls a shell condition inside the namespace until it succeeds.
func (n ns) waitFor(what, script string) string {
	n.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := n.sh(script)
		if err == nil && strings.TrimSpace(out) != "" {
			return out
		}
		if time.Now().After(deadline) {
			log, _ := n.sh("journalctl -u logcompactd -o cat --no-pager | tail -30")
			n.t.Fatalf("timed out waiting for %s; journal:\n%s", what, log)
		}
		<-tick.C
	}
}

func (n ns) prop(name string) string {
	return strings.TrimSpace(strings.TrimPrefix(n.must("systemctl show -p "+name+" logcompactd"), name+"="))
}

// TestUnderARealSystemd installs the .deb into a real systemd (PID 1 in a
// namespace), then: starts the service; generates segments and a writer; sees
// merges and an archival and finds them with journalctl STREAM=/ACTION=;
// reloads with a broken config (kept out, logged); stalls the main loop through
// the test hook and sees the watchdog restart it; stops it cleanly.
func TestUnderARealSystemd(t *testing.T) {
	testutil.RequireRoot(t, "namespaces, mounts and a private cgroup")
	for _, tool := range []string{"unshare", "nsenter", "dpkg-deb", "make"} {
		testutil.RequireTool(t, tool)
	}
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("/lib/systemd/systemd missing under CI=true")
		}
		t.Skip("no systemd binary")
	}
	// Build the package before booting: the namespace's root is an overlay over
	// the host's /, and files added to it afterwards are not reliably visible.
	dist, err := os.MkdirTemp("/var/tmp", "lcd-e2e-deb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dist) })
	run(t, "..", "make", "--no-print-directory", "deb", "DIST="+dist)
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("debs %v", debs)
	}
	work, err := os.MkdirTemp("", "lcd-e2e-ns-")
	if err != nil {
		t.Fatal(err)
	}
	boot := exec.Command("../scripts/systemd-ns.sh", "boot", work)
	out, err := boot.Output()
	t.Cleanup(func() {
		_ = exec.Command("../scripts/systemd-ns.sh", "stop", work).Run()
		os.RemoveAll(work)
	})
	if err != nil {
		t.Fatalf("boot systemd: %v\n%s", err, out)
	}
	n := ns{t: t, pid: strings.TrimSpace(string(out))}

	n.must("dpkg -i " + debs[0] + " >/dev/null 2>&1 && systemctl is-enabled logcompactd")
	n.must(`mkdir -p /var/log/e2e/app /var/log/e2e-cold && cat > /etc/logcompactd.yaml <<'Y'
scan_interval: 200ms
growth: {window: 5s}
load: {enabled: false}
compaction: {quiesce: 1s, target_size: 256KiB, min_segments: 2, threshold: 0.000001}
archive: {cold_dir: /var/log/e2e-cold, time_to_archive: 3s, max_hot_bytes: 1MiB, compress: zstd}
streams:
  - {name: app, dir: /var/log/e2e/app, pattern: "app-*.log"}
Y
mkdir -p /etc/systemd/system/logcompactd.service.d
printf '[Service]\nWatchdogSec=3s\nRestartSec=1s\nEnvironment=LOGCOMPACTD_TEST_HOOKS=1\n' > /etc/systemd/system/logcompactd.service.d/e2e.conf
for i in 1 2 3 4 5 6 7 8; do seq 1 3000 | sed "s/^/seg$i /" > /var/log/e2e/app/app-00000$i.log; touch -d "1 hour ago" /var/log/e2e/app/app-00000$i.log; done
systemctl daemon-reload && systemctl start logcompactd && systemctl is-active logcompactd`)

	// Merges, found through the journal's structured fields.
	n.waitFor("a merge in the journal", "journalctl -u logcompactd STREAM=app ACTION=compact -o cat --no-pager | grep merged")
	rec := n.must("journalctl -u logcompactd STREAM=app ACTION=compact -o json --no-pager | grep '\"merged\"' | head -1")
	for _, f := range []string{`"STREAM":"app"`, `"ACTION":"compact"`, `"BYTES":"`, `"DURATION_MS":"`, `"PRIORITY":"6"`} {
		if !strings.Contains(rec, f) {
			t.Fatalf("journal record lacks %s:\n%s", f, rec)
		}
	}
	// A writer: its growth makes the hot dir predicted over the cap: archival.
	n.must(`systemd-run --quiet --unit=e2e-writer sh -c 'i=0; while :; do seq 1 20000 | sed "s/^/w$i /" >> /var/log/e2e/app/app-000009.log; i=$((i+1)); sleep 0.1; done'`)
	n.waitFor("an archival in the journal", "journalctl -u logcompactd STREAM=app ACTION=archive -o cat --no-pager | grep archived")
	n.waitFor("an archive in the cold dir", "ls /var/log/e2e-cold/app/ | grep zst")

	// Reload with a broken config: the old one stays, the journal says why.
	n.must(`cp /etc/logcompactd.yaml /root/good.yaml && echo "scan_intervl: 1s" >> /etc/logcompactd.yaml && systemctl reload logcompactd`)
	n.waitFor("the reload error", "journalctl -u logcompactd -o json --no-pager | grep 'keeping the old one' | grep scan_intervl")
	if st := n.prop("ActiveState"); st != "active" {
		t.Fatalf("after a broken reload: %s", st)
	}
	n.must("cp /root/good.yaml /etc/logcompactd.yaml && systemctl reload logcompactd")

	// The watchdog: a stalled main loop is killed and restarted by systemd.
	pid0, restarts0 := n.prop("MainPID"), n.prop("NRestarts")
	n.must("systemctl kill -s USR2 --kill-whom=main logcompactd")
	n.waitFor("a watchdog restart", fmt.Sprintf(`r=$(systemctl show -p NRestarts --value logcompactd); [ "$r" -gt %s ] && systemctl is-active logcompactd`, restarts0))
	if pid := n.prop("MainPID"); pid == pid0 {
		t.Fatalf("MainPID still %s after the watchdog", pid)
	}
	n.waitFor("the watchdog in the journal", "journalctl -u logcompactd -o cat --no-pager | grep -i 'watchdog timeout'")

	// A clean stop, well within TimeoutStopSec.
	n.must("systemctl stop e2e-writer")
	start := time.Now()
	n.must("systemctl stop logcompactd")
	took := time.Since(start)
	timeout, _ := time.ParseDuration(strings.ReplaceAll(n.prop("TimeoutStopUSec"), " ", ""))
	if res, code := n.prop("Result"), n.prop("ExecMainStatus"); res != "success" || code != "0" {
		t.Fatalf("stop: Result=%s ExecMainStatus=%s", res, code)
	}
	t.Logf("stopped in %v (TimeoutStopSec %v); restarts %s", took.Round(time.Millisecond), timeout, n.prop("NRestarts"))
	if timeout > 0 && took > timeout {
		t.Fatalf("stop took %v > TimeoutStopSec %v", took, timeout)
	}

}
