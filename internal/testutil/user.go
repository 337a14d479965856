package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"os/user"
	"strconv"
	"testing"
)

// User is an unprivileged local user a test created.
type User struct {
	Name     string
	UID, GID int
}

// NewUser creates a system user with no home and no login for the test, and
// removes it when the test ends. It needs root (RequireRoot first).
func NewUser(t testing.TB) User {
	t.Helper()
	RequireTool(t, "useradd")
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "lcdtest" + hex.EncodeToString(b[:])
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return User{Name: name, UID: uid, GID: gid}
}
