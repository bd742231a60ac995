//go:build linux

package proxy

import (
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/agentauth/agentauth/pkg/wire"
	"golang.org/x/sys/unix"
)

// A connection that iptables did not redirect has no original destination; the real redirect path is covered
// by the network-namespace end-to-end suite.
func TestOriginalDstWithoutRedirect(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	defer sc.Close()
	if dst, err := originalDst(sc.(*net.TCPConn)); err == nil {
		t.Fatalf("original destination %v for a direct connection", dst)
	}
}

// A transparent listener still serves direct connections, routing by Host.
func TestTransparentListenerDirectConnection(t *testing.T) {
	tool := echoTool(t)
	h, err := NewEgressHandler(EgressConfig{Routes: mustTable(t,
		&Route{Name: "r", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough})})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	serve(t, Limits{}, Listener{Name: "transparent", Listener: ln, Handler: h, Transparent: true})
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/t", nil)
	req.Host = "tool.test"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeSeen(t, res); got.Path != "/t" {
		t.Fatalf("tool saw %+v", got)
	}
}

// An upstream that refuses connections: a TCP socket bound (so no one else gets the port) but not listening.
func TestUpstreamRefused(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	upstreamFailure(t, fmt.Sprintf("http://127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port))
}
