package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/wire"
	"golang.org/x/net/http2"
)

// seenPaths records what a test's authorizer and tool saw.
type seenPaths struct {
	mu          sync.Mutex
	authz, tool []string
}

func (p *seenPaths) addAuthz(s string) { p.mu.Lock(); p.authz = append(p.authz, s); p.mu.Unlock() }
func (p *seenPaths) addTool(s string)  { p.mu.Lock(); p.tool = append(p.tool, s); p.mu.Unlock() }
func (p *seenPaths) snapshot() (authz, tool []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.authz...), append([]string(nil), p.tool...)
}

// ingressAllowing serves an ingress in front of tool whose authorizer allows only paths allowed says yes to.
func ingressAllowing(t *testing.T, tool http.Handler, rec *seenPaths, allowed func(path string) bool) string {
	t.Helper()
	up := httptest.NewServer(tool)
	t.Cleanup(up.Close)
	authn := StepFunc(func(_ context.Context, x *Exchange) error {
		x.Identity = &Identity{Subject: agentID, Method: wire.AuthWITWPT}
		return nil
	})
	authz := authzFunc(func(_ context.Context, req *AuthzRequest) (*Decision, error) {
		rec.addAuthz(req.Method + " " + req.Path)
		if allowed(req.Path) {
			return &Decision{Allowed: true, PolicyIDs: []string{"allow"}}, nil
		}
		return &Decision{Allowed: false, Reason: "path " + req.Path + " is not allowed"}, nil
	})
	h, err := NewIngressHandler(IngressConfig{
		Routes: mustTable(t, &Route{Name: "in", Match: Match{Host: AnyHost}, Upstream: mustURL(t, up.URL),
			Modes: wire.ModeWPT, Audience: "https://tool.test/", KeepHost: true}),
		Steps: []Step{authn, &AuthorizeStep{Authorizer: authz}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	ln := listen(t)
	serve(t, Limits{}, Listener{Name: "ingress", Listener: ln, Handler: h})
	return ln.Addr().String()
}

// sendRaw sends raw bytes on a fresh connection and reads one response.
func sendRaw(t *testing.T, addr, raw string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", raw, err)
	}
	return res, c, br
}

// An "Upgrade: h2c" would turn the connection into an HTTP/2 session with the tool (Tomcat, Jetty, Netty and
// nghttp2-based servers accept h2c upgrades) in which no request is decided. Ingress drops any Upgrade but
// WebSocket, so the request is served as plain HTTP/1.1 and the connection is never spliced.
func TestH2CUpgradeIsNotSpliced(t *testing.T) {
	rec := &seenPaths{}
	h2srv := &http2.Server{}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.addTool("h2 " + r.Method + " " + r.URL.Path)
		fmt.Fprintf(w, "secret of %s", r.URL.Path)
	})
	tool := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.addTool(r.Method + " " + r.URL.Path)
		if !strings.EqualFold(r.Header.Get("Upgrade"), "h2c") {
			io.WriteString(w, "ok")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
		brw.Flush()
		h2srv.ServeConn(conn, &http2.ServeConnOpts{Handler: inner})
	})
	addr := ingressAllowing(t, tool, rec, func(p string) bool { return p == "/public" })

	res, c, br := sendRaw(t, addr, "GET /public HTTP/1.1\r\nHost: tool.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	if res.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || string(b) != "ok" {
			t.Fatalf("GET /public offering h2c: status %d %q, want the plain HTTP/1.1 answer 200 \"ok\"", res.StatusCode, b)
		}
		return
	}
	if br.Buffered() != 0 {
		t.Fatalf("unexpected bytes after 101")
	}
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(c)
	if err != nil {
		t.Fatalf("h2 over the upgraded connection: %v", err)
	}
	req, _ := http.NewRequest("GET", "http://tool.test/admin/keys", nil)
	res2, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatalf("h2 request inside the tunnel: %v", err)
	}
	b, _ := io.ReadAll(res2.Body)
	res2.Body.Close()
	authz, toolSaw := rec.snapshot()
	t.Errorf("ingress spliced an h2c upgrade: GET /admin/keys inside it reached the tool (status %d, body %q) "+
		"although policy only ever decided %v (tool saw %v); ingress must drop Upgrade tokens other than websocket",
		res2.StatusCode, b, authz, toolSaw)
}

// Servlet containers drop ";params" from each segment before resolving dot segments: "/orders/..;/admin" is
// /admin to them, while routing and policy would see a path under /orders/.
func TestPathParametersCannotHideDotSegments(t *testing.T) {
	rec := &seenPaths{}
	tool := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.addTool(r.Method + " " + r.URL.EscapedPath())
		io.WriteString(w, "ok")
	})
	addr := ingressAllowing(t, tool, rec, func(p string) bool { return strings.HasPrefix(p, "/orders/") })

	base, _, _ := sendRaw(t, addr, "GET /orders/../admin HTTP/1.1\r\nHost: tool.test\r\n\r\n")
	if base.StatusCode != http.StatusBadRequest {
		t.Fatalf("baseline /orders/../admin: status %d, want 400", base.StatusCode)
	}
	for _, p := range []string{"/orders/..;/admin", "/orders/..;x/admin", "/orders/%2e%2e;/admin", "/orders/.;/..;/admin"} {
		res, _, _ := sendRaw(t, addr, "GET "+p+" HTTP/1.1\r\nHost: tool.test\r\n\r\n")
		if res.StatusCode != http.StatusBadRequest {
			authz, toolSaw := rec.snapshot()
			t.Errorf("GET %s: status %d, want 400 like /orders/../admin; policy decided %v and the tool got %v, "+
				"which a servlet container resolves to /admin", p, res.StatusCode, authz[len(authz)-1], toolSaw[len(toolSaw)-1])
		}
	}
}

// Many web frameworks run the method an X-HTTP-Method-Override names instead of the request line's, while policy
// decides on the request line's.
func TestMethodOverrideRefused(t *testing.T) {
	rec := &seenPaths{}
	tool := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.addTool(r.Method + " " + r.URL.Path)
		io.WriteString(w, "ok")
	})
	addr := ingressAllowing(t, tool, rec, func(string) bool { return true })
	for _, h := range []string{"X-HTTP-Method-Override: DELETE", "x_http_method: DELETE", "X-Method-Override: DELETE"} {
		res, _, _ := sendRaw(t, addr, "POST /orders/1 HTTP/1.1\r\nHost: tool.test\r\nContent-Length: 0\r\n"+h+"\r\n\r\n")
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", h, res.StatusCode)
		}
	}
	if _, toolSaw := rec.snapshot(); len(toolSaw) != 0 {
		t.Errorf("the tool got %v", toolSaw)
	}
}
