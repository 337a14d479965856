package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// S3 is a real S3 server for tests: versitygw with its POSIX backend, on a
// loopback port only (never its default :7070 on every interface). A bucket is
// a directory of Dir, an object a file under it.
type S3 struct {
	t        testing.TB
	bin      string
	Dir      string // the POSIX backend's root
	Addr     string // 127.0.0.1:PORT
	Endpoint string // http://127.0.0.1:PORT
	Access   string
	Secret   string
	cmd      *exec.Cmd
}

// StartS3 starts versitygw (which .ci/run installs) with the buckets named
// (created as directories first) and waits until it accepts connections.
func StartS3(t testing.TB, buckets ...string) *S3 {
	t.Helper()
	s := &S3{t: t, bin: RequireTool(t, "versitygw"), Dir: t.TempDir(), Access: "lcdtest", Secret: "lcdtestsecret"}
	for _, b := range buckets {
		if err := os.Mkdir(filepath.Join(s.Dir, b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	l.Close()
	s.Endpoint = "http://" + s.Addr
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Env is what a process needs to reach the server through the standard AWS
// credential chain.
func (s *S3) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.Access, "AWS_SECRET_ACCESS_KEY=" + s.Secret,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
}

// Start (re)starts the server and waits until it accepts connections.
func (s *S3) Start() {
	s.t.Helper()
	if err := s.Restart(); err != nil {
		s.t.Fatal(err)
	}
}

// Restart is Start for goroutines other than the test's: it returns the error.
func (s *S3) Restart() error {
	s.cmd = exec.Command(s.bin, "--port", s.Addr, "posix", s.Dir)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.Access, "ROOT_SECRET_KEY="+s.Secret)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	log, err := os.OpenFile(filepath.Join(filepath.Dir(s.Dir), "versitygw.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		s.cmd.Stdout, s.cmd.Stderr = log, log
		defer log.Close()
	}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("versitygw: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not listen on %s within 30 s", s.Addr)
		}
	}
	return nil
}

// Stop kills the server (as a crash or an outage would) and waits for it.
func (s *S3) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
	s.cmd = nil
}

// OpenUploads lists multipart uploads still open in bucket (versitygw keeps
// their parts under .sgwtmp/multipart).
func (s *S3) OpenUploads(bucket string) []string {
	ents, _ := os.ReadDir(filepath.Join(s.Dir, bucket, ".sgwtmp", "multipart"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// String names the server for logs.
func (s *S3) String() string { return fmt.Sprintf("versitygw %s (%s)", s.Endpoint, s.Dir) }
