package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// startEgress serves an egress handler on a real loopback socket and returns its address.
func startEgress(t *testing.T, cfg EgressConfig) (string, *done) {
	t.Helper()
	h, err := NewEgressHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	d := track(h)
	ln := listen(t)
	serve(t, cfg.Limits, Listener{Name: "egress", Listener: ln, Handler: d})
	return ln.Addr().String(), d
}

func TestEgressExplicitProxy(t *testing.T) {
	tool := echoTool(t)
	toolURL := mustURL(t, tool.URL)
	s := &sink{}
	addr, d := startEgress(t, EgressConfig{
		Options: Options{Self: agentID, Sink: s},
		Routes: mustTable(t,
			&Route{Name: "signed", Match: Match{Host: "tool.test"}, Upstream: toolURL, Modes: wire.ModeWPT},
			&Route{Name: "plain", Match: Match{Host: "plain.test"}, Upstream: toolURL, Modes: wire.ModePassthrough},
			// No upstream: to whatever loopback address the agent asked for.
			&Route{Name: "dynamic", Match: Match{Host: "127.0.0.1"}, Modes: wire.ModePassthrough},
		),
		Steps: signChain(map[wire.Mode]ProofSigner{wire.ModeWPT: &fakeSigner{subject: agentID}}),
	})
	c := proxyClient(addr)

	req, _ := http.NewRequest("POST", "http://tool.test/x?q=1", strings.NewReader("hello"))
	req.Header.Set(wire.HeaderWPT, "agent-forged")
	req.Header.Set("x-agentauth-workload-id", "forged")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeSeen(t, res)
	d.wait(t)
	want := fmt.Sprintf("aud=http://%s/x", toolURL.Host)
	if got.Path != "/x" || got.Query != "q=1" || got.Body != "hello" || got.Header.Get(wire.HeaderWPT) != want ||
		got.Header.Get(wire.HeaderWIT) != "wit-of:"+agentID || got.Header.Get(wire.HeaderWorkloadID) != "" {
		t.Fatalf("tool saw %+v, want WPT %q", got, want)
	}
	if len(got.Header.Values(wire.HeaderWPT)) != 1 {
		t.Fatalf("agent's own proof header leaked: %v", got.Header.Values(wire.HeaderWPT))
	}

	res, err = c.Get("http://plain.test/y")
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeSeen(t, res); got.Header.Get(wire.HeaderWPT) != "" || got.Path != "/y" {
		t.Fatalf("passthrough added proofs: %+v", got)
	}
	d.wait(t)

	res, err = c.Get(tool.URL + "/z")
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeSeen(t, res); got.Host != toolURL.Host || got.Path != "/z" {
		t.Fatalf("dynamic route: %+v", got)
	}
	d.wait(t)

	recs := s.all()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	r0 := recs[0]
	if r0.Direction != Egress || r0.Route != "signed" || !r0.Allowed || r0.Status != 200 || r0.Subject != agentID ||
		r0.Host != "tool.test:80" || r0.Method != "POST" || r0.Path != "/x" || r0.Reason != "" {
		t.Errorf("record %+v", r0)
	}
}

func TestEgressRefusals(t *testing.T) {
	tool := echoTool(t)
	up := mustURL(t, tool.URL)
	s, m := &sink{}, &metrics{}
	addr, d := startEgress(t, EgressConfig{
		Options: Options{Sink: s, Metrics: m},
		Routes: mustTable(t,
			&Route{Name: "bad-signer", Match: Match{Host: "bad.test"}, Upstream: up, Modes: wire.ModeWPT},
			&Route{Name: "broken-signer", Match: Match{Host: "broken.test"}, Upstream: up, Modes: wire.ModeHTTPSig},
		),
		Steps: signChain(map[wire.Mode]ProofSigner{
			wire.ModeWPT:     &fakeSigner{err: fmt.Errorf("wpt: %w: no WIT for this trust domain", autherr.ErrUntrustedIssuer)},
			wire.ModeHTTPSig: &fakeSigner{err: errBoom},
		}),
	})
	c := proxyClient(addr)
	tests := []struct {
		url    string
		status int
		code   string
	}{
		{"http://bad.test/", 400, "untrusted_issuer"},
		{"http://broken.test/", 500, "internal"},
		{"http://nowhere.test/", 403, "policy_denied"},
		{"http://bad.test/a/../b", 400, "malformed"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", tt.url, nil)
		req.URL.Opaque = strings.TrimPrefix(tt.url, "http:") // keep the path as written
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		e := checkRefusal(t, res, tt.status, tt.code)
		if tt.code == "internal" && strings.Contains(e.Description, "boom") {
			t.Errorf("internal detail leaked to the client: %q", e.Description)
		}
		d.wait(t)
	}
	recs := s.all()
	if len(recs) != len(tests) {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		if r.Allowed || r.Reason != tests[i].code || r.Status != tests[i].status {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if !strings.Contains(recs[1].Message, "boom") {
		t.Errorf("internal detail missing from the record: %q", recs[1].Message)
	}
	if len(m.obs) != len(tests) || m.obs[2] != "egress||denied|policy_denied" || m.obs[1] != "egress|broken-signer|error|internal" {
		t.Errorf("metrics %v", m.obs)
	}
}

func TestEgressSignerValidation(t *testing.T) {
	up := mustURL(t, "http://127.0.0.1:1")
	tab := mustTable(t, &Route{Name: "r", Match: Match{Host: "a"}, Upstream: up, Modes: wire.ModeHTTPSig})
	if _, err := NewEgressHandler(EgressConfig{Routes: tab}); err == nil || !strings.Contains(err.Error(), "no signer") {
		t.Errorf("missing signer: %v", err)
	}
	// A proof route without an upstream would send the proof wherever the agent sent the request (in transparent
	// mode, any address), with the audience of the tool the agent named in Host.
	dynamic := mustTable(t, &Route{Name: "r", Match: Match{Host: "a"}, Modes: wire.ModeWPT})
	if _, err := NewEgressHandler(EgressConfig{Routes: dynamic, Steps: signChain(map[wire.Mode]ProofSigner{wire.ModeWPT: &fakeSigner{}})}); err == nil ||
		!strings.Contains(err.Error(), "needs an upstream") {
		t.Errorf("proof route without upstream: %v", err)
	}
	both := mustTable(t, &Route{Name: "r", Match: Match{Host: "a"}, Upstream: up, Modes: wire.ModeHTTPSig | wire.ModeWPT})
	sig := map[wire.Mode]ProofSigner{wire.ModeWPT: &fakeSigner{}, wire.ModeHTTPSig: &fakeSigner{}}
	if _, err := NewEgressHandler(EgressConfig{Routes: both, Steps: signChain(sig)}); err == nil {
		t.Error("egress route with two proof modes accepted")
	}
	if _, err := NewEgressHandler(EgressConfig{Routes: tab, Steps: signChain(map[wire.Mode]ProofSigner{wire.ModeMTLS: &fakeSigner{}})}); err == nil {
		t.Error("signer for mtls accepted")
	}
	for _, u := range []string{"", "http://127.0.0.1:1"} {
		rt := &Route{Name: "r", Match: Match{Host: "a"}, Modes: wire.ModeMTLS}
		if u != "" {
			rt.Upstream = mustURL(t, u)
		}
		if _, err := NewEgressHandler(EgressConfig{Routes: mustTable(t, rt)}); err == nil || !strings.Contains(err.Error(), "https") {
			t.Errorf("egress mtls to %q: %v", u, err)
		}
	}
	if _, err := NewEgressHandler(EgressConfig{}); err == nil {
		t.Error("nil table accepted")
	}
}

// An httpsig route buffers the body so the signer can digest it, and still sends all of it; over the limit is 413.
func TestEgressBuffersBodyForHTTPSig(t *testing.T) {
	tool := echoTool(t)
	addr, _ := startEgress(t, EgressConfig{
		Options: Options{Limits: Limits{MaxBufferedBody: 16}},
		Routes: mustTable(t, &Route{Name: "sig", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tool.URL),
			Modes: wire.ModeHTTPSig}),
		Steps: signChain(map[wire.Mode]ProofSigner{wire.ModeHTTPSig: fakeSigSigner{}}),
	})
	c := proxyClient(addr)
	res, err := c.Post("http://tool.test/", "text/plain", io.MultiReader(strings.NewReader("0123456789")))
	if err != nil {
		t.Fatal(err)
	}
	got := decodeSeen(t, res)
	if got.Body != "0123456789" || got.Header.Get(wire.HeaderSignatureInput) != "wimse=();len=10" {
		t.Fatalf("tool saw %+v", got)
	}
	res, err = c.Post("http://tool.test/", "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("x", 17))))
	if err != nil {
		t.Fatal(err)
	}
	checkRefusal(t, res, http.StatusRequestEntityTooLarge, "too_large")
}

func TestEgressConnect(t *testing.T) {
	tlsTool := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tunnelled")
	}))
	defer tlsTool.Close()
	s := &sink{}
	addr, d := startEgress(t, EgressConfig{
		Options: Options{Sink: s},
		Routes: mustTable(t,
			&Route{Name: "tunnel", Match: Match{Host: tlsTool.Listener.Addr().String()}, Modes: wire.ModePassthrough},
			&Route{Name: "signed", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tlsTool.URL), Modes: wire.ModeWPT},
		),
		Steps: signChain(map[wire.Mode]ProofSigner{wire.ModeWPT: &fakeSigner{}}),
	})

	// A route that needs proofs cannot be reached through a tunnel: 405 with the explanation.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT tool.test:443 HTTP/1.1\r\nHost: tool.test:443\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.Get("Allow") == "" {
		t.Error("405 without Allow")
	}
	e := checkRefusal(t, res, http.StatusMethodNotAllowed, "policy_denied")
	if !strings.Contains(e.Description, "cannot be authenticated") {
		t.Errorf("description %q", e.Description)
	}
	d.wait(t)

	// A passthrough route is tunnelled: an HTTPS client through the proxy reaches the TLS server.
	c := proxyClient(addr)
	c.Transport.(*http.Transport).TLSClientConfig = tlsTool.Client().Transport.(*http.Transport).TLSClientConfig
	res, err = c.Get(tlsTool.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "tunnelled" {
		t.Fatalf("through tunnel: %q", b)
	}
	c.CloseIdleConnections()
	d.wait(t)
	recs := s.all()
	if len(recs) != 2 || recs[1].Route != "tunnel" || !recs[1].Allowed || recs[1].Status != 200 || recs[1].Method != "CONNECT" {
		t.Fatalf("records %+v", recs)
	}
}

// Transparent mode: the handler gets the original destination from the context (the Server puts it there from
// SO_ORIGINAL_DST; here a fake one is injected).
func TestEgressTransparent(t *testing.T) {
	tool := echoTool(t)
	toolAddr := netip.MustParseAddrPort(tool.Listener.Addr().String())
	h, err := NewEgressHandler(EgressConfig{Routes: mustTable(t,
		&Route{Name: "by-host", Match: Match{Host: "tool.test:" + fmt.Sprint(toolAddr.Port())}, Upstream: mustURL(t, tool.URL),
			Modes: wire.ModePassthrough},
		&Route{Name: "by-ip", Match: Match{Host: toolAddr.String()}, Modes: wire.ModePassthrough},
	)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return WithOriginalDestination(ctx, toolAddr)
	}
	srv.Start()
	defer srv.Close()

	for _, host := range []string{"tool.test", "unknown.test", ""} {
		req, _ := http.NewRequest("GET", srv.URL+"/p", nil)
		req.Host = host
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeSeen(t, res)
		wantHost := host
		if host == "tool.test" {
			wantHost = toolAddr.String() // the configured upstream's host
		}
		if host == "" {
			wantHost = srv.Listener.Addr().String() // the Go client always sends a Host
		}
		if got.Path != "/p" || got.Host != wantHost {
			t.Errorf("Host %q: tool saw %+v, want Host %q", host, got, wantHost)
		}
	}
}

func TestOriginalDestinationContext(t *testing.T) {
	if _, ok := OriginalDestination(context.Background()); ok {
		t.Fatal("empty context has a destination")
	}
	if _, ok := OriginalDestination(WithOriginalDestination(context.Background(), netip.AddrPort{})); ok {
		t.Fatal("invalid destination reported")
	}
	want := netip.MustParseAddrPort("10.1.2.3:8080")
	if got, ok := OriginalDestination(WithOriginalDestination(context.Background(), want)); !ok || got != want {
		t.Fatalf("got %v %v", got, ok)
	}
}

// Swapping in an equal route keeps its warm connections; a changed route gets a new pool; every new upstream
// connection asks the TLSConfigFunc again, which is how rotated credentials take effect.
func TestEgressRouteSwapAndTLSPerHandshake(t *testing.T) {
	tool := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer tool.Close()
	roots := tool.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	var (
		mu    sync.Mutex
		calls int
	)
	route := func(id string) *RouteTable {
		return mustTable(t, &Route{Name: "r", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tool.URL),
			Modes: wire.ModePassthrough, UpstreamID: id})
	}
	h, err := NewEgressHandler(EgressConfig{
		Options: Options{TLSConfig: func(context.Context, *Route) (*tls.Config, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			return &tls.Config{RootCAs: roots}, nil
		}},
		Routes: route("a"),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := proxyClient(strings.TrimPrefix(srv.URL, "http://"))
	get := func(wantCalls int) {
		t.Helper()
		res, err := c.Get("http://tool.test/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		if res.StatusCode != 200 || calls != wantCalls {
			t.Fatalf("status %d, TLS configs fetched %d times, want %d", res.StatusCode, calls, wantCalls)
		}
	}
	get(1)
	get(1)
	if err := h.SetRoutes(route("a")); err != nil {
		t.Fatal(err)
	}
	get(1)
	if err := h.SetRoutes(route("b")); err != nil {
		t.Fatal(err)
	}
	get(2)
	h.Close()
	get(3)
}
