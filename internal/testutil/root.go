package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips a test that needs root when not root, except under CI=true,
// where a missing prerequisite is a failure: CI runs as root and must run it.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root (%s), and CI=true: refusing to skip", why)
	}
	t.Skipf("needs root (%s)", why)
}
