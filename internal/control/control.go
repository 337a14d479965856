// Package control is the running daemon's control endpoint: HTTP over a unix
// socket in the state dir, which only the daemon's user can open (the state dir
// is 0700 and the socket 0600). `plan` and `status` find it from the config
// alone (state_dir) and ask the daemon instead of computing a second answer.
package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketName is the control socket's name in the state dir.
const SocketName = "control.sock"

// SocketPath is the control socket of the daemon whose state dir is stateDir.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, SocketName) }

// ErrNoDaemon: nothing answers on the socket (no daemon runs on this state dir).
var ErrNoDaemon = errors.New("no daemon answers on the control socket")

// Listen creates the socket at path, mode 0600, replacing a stale one. The
// caller must hold the state dir's one-instance lock: then a socket already
// there is a dead daemon's.
func Listen(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: remove the stale one: %w", path, err)
	}
	old := syscall.Umask(0o177) // created 0600: no window in which others may connect
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	return l, nil
}

// Serve serves h on l until ctx ends, then shuts down (waiting up to 2 s for
// requests in flight). Its error is nil after ctx ends.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return err
}

// Get asks the daemon listening on socket for path and returns the body of a
// 200 answer. ErrNoDaemon when the socket is missing or refuses.
func Get(ctx context.Context, socket, path string) ([]byte, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://logcompactd"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrNoDaemon
		}
		return nil, fmt.Errorf("control socket %s: %w", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("control socket %s: %s: %s", socket, resp.Status, body)
	}
	return body, nil
}
