package controller

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sys/unix"

	"github.com/agentauth/agentauth/internal/netlimit"
)

// hardenedConfig is a controller with a token service and SSF push, every listener capped low; extra is added
// at the top level of the YAML.
func hardenedConfig(t *testing.T, socketDir, extra string) (cfg *Config) {
	t.Helper()
	dir := t.TempDir()
	jwks := filepath.Join(dir, "ssf-jwks.json")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jwks, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	const lim = "limits: {maxConnections: 8, maxConnectionsPerIP: 4, readHeaderTimeout: 2s, readTimeout: 5s, idleTimeout: 1s}"
	if socketDir == "" {
		socketDir = dir
	}
	cfg, err = Parse(fmt.Appendf(nil, `trustDomain: example.org
dataDir: %s
admin: {socket: %s}
issuer: {listen: 127.0.0.1:0, %s}
xds: {listen: 127.0.0.1:0, %s}
ops: {listen: 127.0.0.1:0, %s}
tokenService: {listen: 127.0.0.1:0, %s, rateLimit: {requestsPerSecond: 0.01, burst: 3}}
ssf:
  listen: 127.0.0.1:0
  %s
  transmitters: [{issuer: https://idp.example, audience: [agentauth], jwksFile: %s}]
%s
`, filepath.Join(dir, "data"), filepath.Join(socketDir, "admin.sock"), lim, lim, lim, lim, lim, jwks, extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer waits (generously) for the server to close c, reporting false if it still holds it open.
func closedByServer(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// waitClosed waits until the server has closed want of conns, or within has passed, and returns how many it
// closed.
func waitClosed(conns []net.Conn, want int, within time.Duration) int {
	closed := make(chan bool, len(conns))
	for _, c := range conns {
		go func() { closed <- closedByServer(c, within) }()
	}
	n := 0
	for range conns {
		if <-closed {
			n++
		}
		if n >= want {
			break
		}
	}
	return n
}

// TestIdleConnectionFloodExhaustsDescriptors: the token service, SSF push, the issuer, xDS and ops each hold at
// most maxConnectionsPerIP connections of one client (the rest are closed at once), close keep-alive connections
// after idleTimeout, and the control plane answers another client meanwhile. The HTTP listeners' flood
// connections have made a request, so no handshake or header timeout ends them: only the caps do.
func TestIdleConnectionFloodExhaustsDescriptors(t *testing.T) {
	cfg := hardenedConfig(t, "", "")
	for _, l := range []*netlimit.Config{&cfg.TokenService.Limits, &cfg.SSF.Limits} {
		l.IdleTimeout, l.ReadTimeout = time.Hour, time.Hour
	}
	c, _ := runController(t, cfg)
	for _, ln := range []struct {
		name, request string
		tls           bool
		addr          net.Addr
	}{
		{"tokenService", "GET /jwks", true, c.tokenLn().Addr()},
		{"ssf", "GET /ssf/events", false, c.ssfLn().Addr()},
		{"ops", "GET /healthz", false, c.opsLn().Addr()},
		{"issuer", "", false, c.issuerLn().Addr()},
		{"xds", "", false, c.xdsLn().Addr()},
	} {
		t.Run(ln.name, func(t *testing.T) {
			const flood = 40
			conns := make([]net.Conn, flood)
			for i := range conns {
				conns[i] = dialFrom(t, "127.0.0.3", ln.addr.String())
				if ln.tls {
					conns[i] = tls.Client(conns[i], &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only connections are under test
				}
				if ln.request != "" {
					// An error here means the server closed the connection: that is counted below.
					_, _ = io.WriteString(conns[i], ln.request+" HTTP/1.1\r\nHost: x\r\n\r\n")
					_ = conns[i].SetReadDeadline(time.Now().Add(10 * time.Second))
					_, _ = http.ReadResponse(bufio.NewReader(conns[i]), nil)
				}
			}
			want := flood - cfg.Ops.Limits.MaxConnectionsPerIP
			if closed := waitClosed(conns, want, 20*time.Second); closed < want {
				t.Fatalf("%d of %d connections from one client were closed; want at least %d", closed, flood, want)
			}
			resp, err := http.Get("http://" + c.opsLn().Addr().String() + "/readyz")
			if err != nil {
				t.Fatalf("/readyz during the flood: %v", err)
			}
			resp.Body.Close()
		})
	}

	t.Run("keep-alive connections are closed when idle", func(t *testing.T) {
		conn := dialFrom(t, "127.0.0.1", c.opsLn().Addr().String())
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// idleTimeout is 1s: the server must close the connection well within 20s.
		if !closedByServer(conn, 20*time.Second) {
			t.Fatal("an idle keep-alive connection to ops was not closed")
		}
	})
}

// TestUnauthenticatedEndpointsRateLimited: the token service and SSF push answer 429 with Retry-After once a
// client is over its rate; another client is still served.
func TestUnauthenticatedEndpointsRateLimited(t *testing.T) {
	cfg := hardenedConfig(t, "", "")
	cfg.SSF.RateLimit.RequestsPerSecond, cfg.SSF.RateLimit.Burst = 0.01, 3
	c, _ := runController(t, cfg)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the rate, not the server, is under test
	defer tr.CloseIdleConnections()
	for _, url := range []string{"https://" + c.tokenLn().Addr().String() + "/jwks", "http://" + c.ssfLn().Addr().String() + "/ssf/events"} {
		var last int
		for range 4 {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			last = resp.StatusCode
			if last == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
				t.Fatalf("%s: 429 without Retry-After", url)
			}
		}
		if last != http.StatusTooManyRequests {
			t.Fatalf("%s: 4th request of a burst of 3 answered %d, want 429", url, last)
		}
	}
}

// dialUnixAs connects to the Unix socket at path from a thread running as uid/gid, so that the kernel records
// those as the peer's credentials. The thread is never unlocked: it ends, with its changed ids, with the goroutine.
func dialUnixAs(t *testing.T, path string, uid, gid int) (net.Conn, error) {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
			ch <- result{nil, e}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			ch <- result{nil, e}
			return
		}
		c, err := net.Dial("unix", path)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// TestAdminSocketChecksPeer: the admin API serves root, the controller's user and admin.allowedUIDs/GIDs, and
// answers 403 to any other local user that reaches the socket.
func TestAdminSocketChecksPeer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as other users")
	}
	sockDir, err := os.MkdirTemp("", "agentauth-admin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := hardenedConfig(t, sockDir, "")
	cfg.Admin.AllowedGIDs = []uint32{4242}
	runController(t, cfg)
	for _, tt := range []struct {
		name     string
		uid, gid int
		want     int
	}{
		{"root", 0, 0, http.StatusOK},
		{"other user", 65534, 65534, http.StatusForbidden},
		{"allowed group", 65534, 4242, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := dialUnixAs(t, cfg.Admin.Socket, tt.uid, tt.gid)
			if err != nil {
				t.Fatalf("connecting as %d:%d: %v", tt.uid, tt.gid, err)
			}
			used := atomic.Bool{}
			client := &http.Client{Transport: &http.Transport{DialContext: func(_ context.Context, _, _ string) (net.Conn, error) {
				if used.Swap(true) {
					return nil, fmt.Errorf("one connection only")
				}
				return conn, nil
			}}}
			resp, err := client.Get("http://admin/v1/policies")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("as %d:%d: %d %s, want %d", tt.uid, tt.gid, resp.StatusCode, body, tt.want)
			}
		})
	}
}

// TestAdminSocketCreatedWithUmaskMode: under a permissive umask the admin socket never exists at its path with
// a mode that lets other users connect, not even between bind(2) and a chmod.
func TestAdminSocketCreatedWithUmaskMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.sock")
	var seen atomic.Uint32
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if fi, err := os.Lstat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				seen.Store(uint32(fi.Mode().Perm()))
			}
		}
	}()
	for i := 0; i < 500 && seen.Load() == 0; i++ {
		ln, err := listenUnix("admin.socket", path, 0o700, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		os.Remove(path)
	}
	close(stop)
	<-done
	if m := seen.Load(); m != 0 {
		t.Fatalf("the admin socket existed at its path with mode %v", os.FileMode(m))
	}
}
