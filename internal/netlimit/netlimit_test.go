package netlimit

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// dialFrom connects to addr from the loopback address src (any 127/8 address is local on Linux).
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

// echoServer accepts on ln and echoes each connection; accepted reports each accepted connection.
func echoServer(t *testing.T, ln net.Listener) <-chan net.Conn {
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return accepted
}

// alive reports whether c echoes a byte back; false when the server closed it.
func alive(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return false
	}
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	return err == nil
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestListenerPerIPCap(t *testing.T) {
	ln := NewListener(listen(t), 100, 2)
	echoServer(t, ln)
	addr := ln.Addr().String()
	a1, a2 := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	if !alive(t, a1) || !alive(t, a2) {
		t.Fatal("connections within the per-IP cap were closed")
	}
	if alive(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("a third connection from 127.0.0.1 was served; the cap is 2")
	}
	if !alive(t, dialFrom(t, "127.0.0.2", addr)) {
		t.Fatal("another client was refused while 127.0.0.1 was at its cap")
	}
	a1.Close()
	// The slot is freed once the server side closes; poll for it.
	deadline := time.Now().Add(10 * time.Second)
	for !alive(t, dialFrom(t, "127.0.0.1", addr)) {
		if time.Now().After(deadline) {
			t.Fatal("the per-IP slot was not released when a connection closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestListenerCapWaits(t *testing.T) {
	ln := NewListener(listen(t), 2, 0)
	accepted := echoServer(t, ln)
	addr := ln.Addr().String()
	dialFrom(t, "127.0.0.1", addr)
	dialFrom(t, "127.0.0.1", addr)
	first := <-accepted
	<-accepted
	third := dialFrom(t, "127.0.0.1", addr) // completes in the kernel's accept queue
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted over the cap of 2")
	case <-time.After(100 * time.Millisecond):
	}
	first.Close()
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connection was not accepted once one closed")
	}
	if !alive(t, third) {
		t.Fatal("the waiting connection is not served")
	}
}

// TestListenerSetCaps: a raised cap lets a waiting connection in at once; a lowered one closes nothing but takes
// no new connection until enough have closed; a per-IP cap set at runtime applies to the next connections.
func TestListenerSetCaps(t *testing.T) {
	ln := NewListener(listen(t), 1, 0)
	accepted := echoServer(t, ln)
	addr := ln.Addr().String()
	first := dialFrom(t, "127.0.0.1", addr)
	a1 := <-accepted
	second := dialFrom(t, "127.0.0.1", addr) // waits in the accept queue: the cap is 1
	ln.(CapSetter).SetCaps(3, 0)
	var a2 net.Conn
	select {
	case a2 = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("raising the cap did not let the waiting connection in")
	}
	ln.(CapSetter).SetCaps(1, 0)
	if !alive(t, first) || !alive(t, second) {
		t.Fatal("lowering the cap closed a connection")
	}
	third := dialFrom(t, "127.0.0.1", addr)
	a1.Close()
	select {
	case <-accepted:
		t.Fatal("a connection was accepted with 1 open and a cap of 1")
	case <-time.After(100 * time.Millisecond):
	}
	a2.Close()
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connection was not accepted once the listener was under its lowered cap")
	}
	if !alive(t, third) {
		t.Fatal("the waiting connection is not served")
	}

	ln.(CapSetter).SetCaps(10, 1)
	if alive(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("a second connection from 127.0.0.1 was served after the per-IP cap was set to 1")
	}
	if !alive(t, dialFrom(t, "127.0.0.2", addr)) {
		t.Fatal("another client was refused")
	}
}

func TestListenerCloseUnblocksAccept(t *testing.T) {
	ln := NewListener(listen(t), 1, 0)
	echoServer(t, ln)
	dialFrom(t, "127.0.0.1", ln.Addr().String())
	done := make(chan error)
	go func() {
		time.Sleep(10 * time.Millisecond)
		_, err := ln.Accept()
		done <- err
	}()
	ln.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
}

func TestClientKey(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want string
		ok   bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7/32", true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7/32", true},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::/64", true},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "", false},
	} {
		got, ok := ClientKey(tt.addr)
		if ok != tt.ok || ok && got != netip.MustParsePrefix(tt.want) {
			t.Errorf("ClientKey(%v) = %v, %v; want %s, %v", tt.addr, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRateLimiterHandler(t *testing.T) {
	l := NewRateLimiter(RateConfig{RequestsPerSecond: 0.001, Burst: 2})
	h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	do := func(remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/token", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range 2 {
		if w := do("192.0.2.1:1000"); w.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i, w.Code)
		}
	}
	w := do("192.0.2.1:1001") // another port, same client
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("over the rate: %d Retry-After=%q, want 429 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "rate_limited" {
		t.Fatalf("body %q, want error rate_limited", w.Body)
	}
	if w := do("192.0.2.2:1000"); w.Code != http.StatusOK {
		t.Fatalf("another client: %d", w.Code)
	}
}

func TestRateLimiterBoundedMemory(t *testing.T) {
	l := NewRateLimiter(RateConfig{RequestsPerSecond: 0.001, Burst: 1})
	for i := range maxTracked + 10 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Allow(netip.AddrPortFrom(a, 1).String())
	}
	if n := len(l.clients); n > maxTracked {
		t.Fatalf("tracks %d clients, more than %d", n, maxTracked)
	}
	if l.Allow("10.200.0.1:1") {
		t.Fatal("an untracked client past the bound got through the shared, exhausted bucket")
	}
}

func TestConfigValidate(t *testing.T) {
	var got []string
	add := func(field, format string, args ...any) { got = append(got, field) }
	Config{MaxConnections: 10, MaxConnectionsPerIP: 20, ReadHeaderTimeout: time.Second, ReadTimeout: -1,
		IdleTimeout: time.Second}.Validate("limits", add)
	if strings.Join(got, ",") != "limits.readTimeout,limits.maxConnectionsPerIP" {
		t.Fatalf("problems %v", got)
	}
}
