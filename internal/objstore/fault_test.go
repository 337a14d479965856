package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

// proxy sits between the client and a real S3 server on loopback and injects
// faults into the requests fault selects.
type proxy struct {
	srv    *http.Server
	addr   string
	faults atomic.Int32 // how many more requests to fault
	seen   atomic.Int32 // faults injected
	mu     sync.Mutex
	fault  func(w http.ResponseWriter, r *http.Request) bool // true: handled (faulted)
}

func newProxy(t *testing.T, target string) *proxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &proxy{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = "http://" + l.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		f := p.fault
		p.mu.Unlock()
		if f != nil && p.faults.Load() > 0 && f(w, r) {
			p.faults.Add(-1)
			p.seen.Add(1)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(l)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

func (p *proxy) set(n int, f func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.fault = f
	p.mu.Unlock()
	p.faults.Store(int32(n))
	p.seen.Store(0)
}

type faultRig struct {
	t     *testing.T
	s3    *testutil.S3
	px    *proxy
	store *Store
	stage *fsx.Dir
	pub   *Publisher
}

func newFaultRig(t *testing.T, partSize int64, timeout time.Duration) *faultRig {
	s3 := testutil.StartS3(t, "bkt")
	for _, kv := range s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	px := newProxy(t, s3.Endpoint)
	st, err := New(context.Background(), "s3://bkt/p", config.S3{Endpoint: px.addr, Region: "us-east-1", PathStyle: true,
		PartSize: config.Size(partSize), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	stage, err := fsx.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stage.Close() })
	return &faultRig{t: t, s3: s3, px: px, store: st, stage: stage, pub: st.Publisher("app", stage)}
}

// publish publishes a temp staged from data, as the layer would (its size and CRC-32C).
func (r *faultRig) publish(p *Publisher, temp, name string, data []byte) error {
	return p.Publish(temp, name, int64(len(data)), fsx.UpdateChecksum(0, data))
}

// staged writes data as a staged temp, as the operation layer would.
func (r *faultRig) staged(data []byte) (string, fsx.FileRef) {
	temp := ".lcd-o-" + strings.ReplaceAll(r.t.Name(), "/", "_")
	f, _, err := r.pub.Stage(temp, fsx.Stat{})
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		r.t.Fatal(err)
	}
	f.Close()
	st, err := r.stage.Stat(temp)
	if err != nil {
		r.t.Fatal(err)
	}
	return temp, fsx.RefOf(temp, st)
}

func (r *faultRig) object(name string) []byte {
	b, err := os.ReadFile(filepath.Join(r.s3.Dir, "bkt", "p", "app", name))
	if err != nil {
		return nil
	}
	return b
}

func isPut(r *http.Request) bool { return r.Method == http.MethodPut }

// slowDown answers like a throttled S3.
func slowDown(w http.ResponseWriter, r *http.Request) bool {
	if !isPut(r) {
		return false
	}
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
	return true
}

// TestUploadRetriesSlowDown: two 503 SlowDown answers to the PUT, then the
// upload goes through (the SDK's retryer, with backoff): one object, verified.
func TestUploadRetriesSlowDown(t *testing.T) {
	r := newFaultRig(t, 5<<20, 10*time.Second)
	data := bytes.Repeat([]byte("line\n"), 1000)
	temp, _ := r.staged(data)
	r.px.set(2, slowDown)
	if err := r.publish(r.pub, temp, "a.zst", data); err != nil {
		t.Fatalf("Publish after SlowDown: %v", err)
	}
	if r.px.seen.Load() != 2 {
		t.Errorf("%d SlowDowns injected, want 2", r.px.seen.Load())
	}
	if !bytes.Equal(r.object("a.zst"), data) {
		t.Errorf("object differs")
	}
	if _, err := r.stage.Stat(temp); err == nil {
		t.Errorf("staged temp left after the upload")
	}
}

// TestUploadSurvivesAResetMidPart: the connection is cut after the first
// bytes of a part; the part is sent again (the body is a file: seekable).
func TestUploadSurvivesAResetMidPart(t *testing.T) {
	r := newFaultRig(t, 5<<20, 10*time.Second)
	data := bytes.Repeat([]byte("0123456789abcdef\n"), (6<<20)/17) // two parts
	temp, _ := r.staged(data)
	r.px.set(1, func(w http.ResponseWriter, req *http.Request) bool {
		if !isPut(req) || req.URL.Query().Get("partNumber") != "2" {
			return false
		}
		io.CopyN(io.Discard, req.Body, 4096)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0) // RST
			conn.Close()
		}
		return true
	})
	if err := r.publish(r.pub, temp, "b", data); err != nil {
		t.Fatalf("Publish after a reset: %v", err)
	}
	if r.px.seen.Load() != 1 || !bytes.Equal(r.object("b"), data) {
		t.Errorf("resets %d, object equal %v", r.px.seen.Load(), bytes.Equal(r.object("b"), data))
	}
	if open := r.s3.OpenUploads("bkt"); len(open) > 0 {
		t.Errorf("uploads left open: %v", open)
	}
}

// TestHungStoreFailsWithinItsDeadline: every PUT hangs; each attempt ends at
// timeout and the upload fails (the staged temp stays for the operation layer
// to discard; nothing is published) instead of blocking the job forever.
func TestHungStoreFailsWithinItsDeadline(t *testing.T) {
	r := newFaultRig(t, 5<<20, time.Second)
	temp, created := r.staged([]byte("x\n"))
	data := []byte("x\n")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	r.px.set(100, func(w http.ResponseWriter, req *http.Request) bool {
		if !isPut(req) {
			return false
		}
		select {
		case <-release:
		case <-req.Context().Done():
		}
		return true
	})
	start := time.Now()
	err := r.publish(r.pub, temp, "c", data)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Publish to a hung store succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline") {
		t.Errorf("error does not say deadline: %v", err)
	}
	if took > 30*time.Second {
		t.Errorf("took %s", took)
	}
	if r.object("c") != nil {
		t.Errorf("an object appeared")
	}
	if _, err := r.stage.Stat(temp); err != nil {
		t.Errorf("staged temp gone: %v", err)
	}
	r.px.set(0, nil)
	if err := r.pub.Discard(temp, "c", &created); err != nil {
		t.Errorf("Discard: %v", err)
	}
}

// TestStoreIgnoringIfNoneMatch: a store that drops If-None-Match (the proxy
// strips it) is detected by the probe; uploads then HEAD first, and an
// object of somebody else's under the name is never overwritten (ErrExists),
// nor deleted by Discard.
func TestStoreIgnoringIfNoneMatch(t *testing.T) {
	r := newFaultRig(t, 5<<20, 10*time.Second)
	// The header is signed: the proxy cannot drop it. It makes the write
	// unconditional instead, deleting the key through the server first — so a
	// conditional PUT over an existing object overwrites it, as such a store does.
	direct, err := New(context.Background(), "s3://bkt", config.S3{Endpoint: r.s3.Endpoint, Region: "us-east-1", PathStyle: true,
		PartSize: 5 << 20, Timeout: 10 * time.Second})
	must(t, err)
	r.px.set(1<<30, func(w http.ResponseWriter, req *http.Request) bool {
		if isPut(req) && req.Header.Get("If-None-Match") != "" {
			bucket, key, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
			_, _ = direct.client.DeleteObject(req.Context(), &s3.DeleteObjectInput{Bucket: &bucket, Key: &key})
		}
		return false // forwarded
	})
	what, err := r.store.Probe(context.Background())
	if err != nil || !r.store.IgnoresIfNoneMatch() || !strings.Contains(what, "IGNORES") {
		t.Fatalf("probe: %q %v (ignores %v)", what, err, r.store.IgnoresIfNoneMatch())
	}
	theirs := filepath.Join(r.s3.Dir, "bkt", "p", "app")
	must(t, os.MkdirAll(theirs, 0o755))
	// somebody else's object, written through the server
	temp0, _ := r.staged([]byte("theirs\n"))
	other := r.store.Publisher("app", r.stage)
	must(t, r.publish(other, temp0, "d", []byte("theirs\n")))
	temp, created := r.staged([]byte("ours\n"))
	err = r.publish(r.pub, temp, "d", []byte("ours\n"))
	if !errors.Is(err, fsx.ErrExists) {
		t.Fatalf("Publish over another object: %v, want ErrExists", err)
	}
	if string(r.object("d")) != "theirs\n" {
		t.Errorf("the other object was overwritten: %q", r.object("d"))
	}
	must(t, r.pub.Discard(temp, "d", &created))
	if string(r.object("d")) != "theirs\n" {
		t.Errorf("Discard deleted an object that was not the op's")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestUploadWithAWrongChecksumIsRefused: the CRC-32C the layer verified goes
// with the upload; bytes that do not match it never become an object.
func TestUploadWithAWrongChecksumIsRefused(t *testing.T) {
	r := newFaultRig(t, 5<<20, 10*time.Second)
	data := []byte("verified line\n")
	temp, _ := r.staged(data)
	err := r.pub.Publish(temp, "e", int64(len(data)), fsx.UpdateChecksum(0, data)+1)
	if err == nil {
		t.Fatal("an upload whose checksum does not match its bytes was accepted")
	}
	if r.object("e") != nil {
		t.Errorf("an object appeared: %q", r.object("e"))
	}
}
