// Package testutil starts real processes for tests: a writer that holds a file
// open for writing, and a writer that appends at a given rate.
package testutil

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
)

// HoldOpenForWrite starts a shell that opens path for appending and then sleeps,
// holding the fd, until the test ends. It returns once the file is open.
func HoldOpenForWrite(t testing.TB, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", `exec 3>>"$1" && echo ready && exec sleep 3600`, "sh", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("writer did not start: %q %v", line, err)
	}
	return cmd
}
