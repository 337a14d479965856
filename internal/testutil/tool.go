package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool returns the path of a command the test needs. Missing, it skips —
// except under CI=true, where it fails: .ci/run installs what the tests need.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found, and CI=true: refusing to skip", name)
	}
	t.Skipf("%s not found", name)
	return ""
}
