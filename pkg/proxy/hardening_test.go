package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/wire"
)

// rawConn is an HTTP/1.1 client over a plain socket, for requests net/http would not send (bodies held back,
// broken framing, asterisk form).
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A bound on a broken run, not a timed assertion: every answer here comes at once when the fix holds.
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) write(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) response() *http.Response {
	rc.t.Helper()
	res, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		rc.t.Fatalf("no response: %v", err)
	}
	return res
}

// state says what the server did with the connection so far, for a failure message: the response it sent, that
// it closed it, or that it is still waiting. It waits up to a second.
func (rc *rawConn) state() string {
	_ = rc.c.SetReadDeadline(time.Now().Add(time.Second))
	res, err := http.ReadResponse(rc.br, nil)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return "open, no response"
	}
	if err != nil {
		return fmt.Sprintf("no response: %v", err)
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	return fmt.Sprintf("answered %s: %s", res.Status, b)
}

// closed reports whether the server closed the connection (EOF, or a reset) rather than leaving it open.
func (rc *rawConn) closed() bool {
	_, err := rc.br.ReadByte()
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func sigHeaders(sub string, bodyLen int) string {
	return fmt.Sprintf("Workload-Identity-Token: wit-of:%s\r\nSignature-Input: wimse=();len=%d\r\nSignature: wimse=:AAAA:\r\n", sub, bodyLen)
}

// Issue 13 item 6: an HTTP-signature ingress buffered the body before verifying any credential, so unauthenticated
// clients could make it hold their bodies. The refusal must come with the body still unsent.
func TestIngressHTTPSigRefusesBeforeReadingBody(t *testing.T) {
	tool := echoTool(t)
	f := startIngress(t, IngressConfig{
		Options: Options{Limits: Limits{MaxBufferedBody: 16 << 20, BodyReadTimeout: time.Hour}},
		Routes: mustTable(t, &Route{Name: "sig", Match: Match{Host: AnyHost}, Audience: "aud", Upstream: mustURL(t, tool.URL),
			Modes: wire.ModeHTTPSig}),
		Steps: testChain(map[wire.Mode]Authenticator{wire.ModeHTTPSig: fakeSigAuthn{}}, nil, allowAll()),
	})
	for _, tc := range []struct {
		name, header string
		status       int
		code         string
	}{
		{"bad signature", "Workload-Identity-Token: wit-of:" + agentID + "\r\nSignature-Input: wimse=()\r\nSignature: wimse=:bad:\r\n",
			400, "bad_signature"},
		{"no WIT", "Signature-Input: wimse=()\r\nSignature: wimse=:AAAA:\r\n", 401, "credential_missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, f.plain)
			rc.write("POST /x HTTP/1.1\r\nHost: tool\r\nContent-Length: 8388608\r\n" + tc.header + "\r\n")
			checkRefusal(t, rc.response(), tc.status, tc.code)
			f.done.wait(t)
		})
	}
}

// Issue 13 item 6: bodies held for verification are bounded by one budget across requests; past it the answer
// is 503 body_budget_exhausted, and the budget comes back when the request holding it ends.
func TestIngressBodyBudgetExhausted(t *testing.T) {
	tool := echoTool(t)
	m := &metrics{}
	const big = 1 << 20
	f := startIngress(t, IngressConfig{
		// The holder's body must not time out while the test waits for the refusal on a loaded machine.
		Options: Options{Metrics: m, Limits: Limits{MaxBufferedBody: big, MaxBufferedBodies: big + 4, BodyReadTimeout: time.Hour}},
		Routes: mustTable(t, &Route{Name: "sig", Match: Match{Host: AnyHost}, Audience: "aud", Upstream: mustURL(t, tool.URL),
			Modes: wire.ModeHTTPSig}),
		Steps: testChain(map[wire.Mode]Authenticator{wire.ModeHTTPSig: fakeSigAuthn{}}, nil, allowAll()),
	})
	small := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+f.plain+"/x", strings.NewReader("hello"))
		req.Header.Set(wire.HeaderWIT, "wit-of:"+agentID)
		req.Header.Set(wire.HeaderSignatureInput, "wimse=();len=5")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		f.done.wait(t)
		return res
	}
	if res := small(); res.StatusCode != 200 {
		t.Fatalf("before: status %d", res.StatusCode)
	}

	// One signed request takes (almost) the whole budget and holds it while its body trickles in.
	holder := dialRaw(t, f.plain)
	holder.write("POST /x HTTP/1.1\r\nHost: tool\r\nContent-Length: " + strconv.Itoa(big) + "\r\n" + sigHeaders(agentID, big) + "\r\n")
	holder.write(strings.Repeat("a", 1000))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res := small()
		if res.StatusCode == http.StatusServiceUnavailable {
			if res.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			checkRefusal(t, res, http.StatusServiceUnavailable, "body_budget_exhausted")
			break
		}
		res.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a second body was buffered while the first held the budget (status %d); the holder's connection: %s",
				res.StatusCode, holder.state())
		}
		time.Sleep(10 * time.Millisecond)
	}
	holder.write(strings.Repeat("a", big-1000))
	if got := decodeSeen(t, holder.response()); len(got.Body) != big {
		t.Fatalf("the holder's body reached the tool with %d bytes", len(got.Body))
	}
	f.done.wait(t)
	if res := small(); res.StatusCode != 200 {
		t.Fatalf("after the holder finished: status %d", res.StatusCode)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	found := false
	for _, o := range m.obs {
		found = found || o == "ingress|sig|denied|body_budget_exhausted"
	}
	if !found {
		t.Errorf("no body_budget_exhausted observation in %v", m.obs)
	}
}

// Issue 13 item 7: without a body read timeout, clients sending a body one byte at a time held every connection
// the listener allows, and new clients waited forever.
func TestIngressSlowBodyDoesNotLockOutClients(t *testing.T) {
	tool := echoTool(t)
	const conns = 4
	f := startIngress(t, IngressConfig{
		Options: Options{Limits: Limits{MaxConns: conns, BodyReadTimeout: 200 * time.Millisecond}},
		Routes: mustTable(t,
			&Route{Name: "open", Match: Match{Host: AnyHost, PathPrefix: "/open"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough},
			&Route{Name: "wpt", Match: Match{Host: AnyHost}, Audience: "aud", Upstream: mustURL(t, tool.URL), Modes: wire.ModeWPT}),
		Steps: testChain(map[wire.Mode]Authenticator{wire.ModeWPT: fakeAuthn{}}, nil, allowAll()),
	})
	// Half the slow bodies go where the body is forwarded (read by the proxy), half where the request is refused
	// unread (drained by net/http to reuse the connection).
	slow := make([]*rawConn, conns)
	for i := range slow {
		path := "/open"
		if i%2 == 1 {
			path = "/refused"
		}
		slow[i] = dialRaw(t, f.plain)
		slow[i].write("POST " + path + " HTTP/1.1\r\nHost: tool\r\nContent-Length: 100\r\n\r\nx")
	}
	res, err := (&http.Client{Timeout: 60 * time.Second}).Get("http://" + f.plain + "/open/x")
	if err != nil {
		t.Fatalf("a new client was locked out: %v", err)
	}
	if got := decodeSeen(t, res); got.Path != "/open/x" {
		t.Fatalf("tool saw %q", got.Path)
	}
	for i, rc := range slow {
		res := rc.response()
		io.Copy(io.Discard, res.Body)
		if want := []int{http.StatusRequestTimeout, http.StatusUnauthorized}[i%2]; res.StatusCode != want {
			t.Errorf("slow connection %d: status %d, want %d", i, res.StatusCode, want)
		}
		if !rc.closed() {
			t.Errorf("slow connection %d is still open", i)
		}
	}
}

// Issue 13 item 7: the minimum rate is a floor, not a total deadline: a body arriving steadily keeps going long
// after BodyReadTimeout, and a forwarded one is cut off with 408 body_timeout once it stalls.
func TestIngressBodyMinRate(t *testing.T) {
	tool := echoTool(t)
	f := startIngress(t, IngressConfig{
		Options: Options{Limits: Limits{BodyReadTimeout: 300 * time.Millisecond, BodyMinRate: 1024}},
		Routes:  mustTable(t, &Route{Name: "open", Match: Match{Host: AnyHost}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough}),
	})
	const chunk, n = 8 << 10, 10 // each chunk earns 8 s more
	pr, pw := io.Pipe()
	go func() {
		for range n {
			time.Sleep(100 * time.Millisecond)
			if _, err := pw.Write([]byte(strings.Repeat("s", chunk))); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+f.plain+"/x", pr)
	req.ContentLength = chunk * n
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeSeen(t, res); len(got.Body) != chunk*n {
		t.Fatalf("tool got %d bytes", len(got.Body))
	}
	f.done.wait(t)

	rc := dialRaw(t, f.plain)
	rc.write("POST /x HTTP/1.1\r\nHost: tool\r\nContent-Length: 100\r\n\r\nx")
	checkRefusal(t, rc.response(), http.StatusRequestTimeout, "body_timeout")
}

// Issue 13 item 10: a malformed chunked body from the client was reported as 502 upstream_unavailable.
func TestIngressMalformedChunkedBodyIsClientError(t *testing.T) {
	tool := echoTool(t)
	m := &metrics{}
	f := startIngress(t, IngressConfig{
		Options: Options{Metrics: m},
		Routes: mustTable(t,
			&Route{Name: "open", Match: Match{Host: AnyHost, PathPrefix: "/open"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough},
			&Route{Name: "sig", Match: Match{Host: AnyHost}, Audience: "aud", Upstream: mustURL(t, tool.URL), Modes: wire.ModeHTTPSig}),
		Steps: testChain(map[wire.Mode]Authenticator{wire.ModeHTTPSig: fakeSigAuthn{}}, nil, allowAll()),
	})
	for _, tc := range []struct{ name, path, header, route string }{
		{"forwarded", "/open/x", "", "open"},
		{"buffered", "/x", sigHeaders(agentID, 5), "sig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, f.plain)
			rc.write("POST " + tc.path + " HTTP/1.1\r\nHost: tool\r\nTransfer-Encoding: chunked\r\n" + tc.header +
				"\r\n5\r\nhello\r\nzz-not-hex\r\n")
			checkRefusal(t, rc.response(), http.StatusBadRequest, "bad_request_framing")
			f.done.wait(t)
			recs := f.sink.all()
			if r := recs[len(recs)-1]; r.Reason != "bad_request_framing" || r.Status != 400 || r.Allowed && tc.route == "sig" {
				t.Errorf("record %+v", r)
			}
			m.mu.Lock()
			last := m.obs[len(m.obs)-1]
			m.mu.Unlock()
			if want := "ingress|" + tc.route + "|denied|bad_request_framing"; last != want {
				t.Errorf("metric %q, want %q", last, want)
			}
		})
	}
}

// Issue 13 item 9: "GET * HTTP/1.1" was decided as path "*" but forwarded as "/%2A", past a forbid on "/*".
func TestIngressAsteriskFormIsForwardedAsDecided(t *testing.T) {
	var (
		mu    sync.Mutex
		paths []string
	)
	tool := echoTool(t)
	authz := authzFunc(func(_ context.Context, req *AuthzRequest) (*Decision, error) {
		mu.Lock()
		paths = append(paths, req.Path)
		mu.Unlock()
		return &Decision{Allowed: req.Path != "/*", PolicyIDs: []string{"forbid-star"}}, nil
	})
	f := startIngress(t, IngressConfig{
		Routes: mustTable(t, &Route{Name: "r", Match: Match{Host: AnyHost}, Audience: "aud", Upstream: mustURL(t, tool.URL), Modes: wire.ModeWPT}),
		Steps:  testChain(map[wire.Mode]Authenticator{wire.ModeWPT: fakeAuthn{}}, nil, authz),
	})
	creds := http.Header{wire.HeaderWIT: {"wit-of:" + agentID}, wire.HeaderWPT: {"aud=aud"}}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	for _, tc := range []struct {
		method string
		proto  *http.Protocols
		status int
	}{
		{"GET", nil, http.StatusBadRequest},
		{"GET", &h2c, http.StatusBadRequest},
		{"DELETE", nil, http.StatusBadRequest},
		// net/http answers OPTIONS * itself (200, no body): it reaches neither policy nor the tool.
		{"OPTIONS", nil, http.StatusOK},
	} {
		req := &http.Request{Method: tc.method, URL: mustURL(t, "http://"+f.plain), Host: "tool", Header: creds.Clone()}
		req.URL.Opaque = "*"
		res, err := (&http.Client{Transport: &http.Transport{Protocols: tc.proto}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if tc.status == http.StatusOK {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || len(b) != 0 {
				t.Errorf("OPTIONS *: %d %q", res.StatusCode, b)
			}
			continue
		}
		checkRefusal(t, res, tc.status, "malformed")
		f.done.wait(t)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) != 0 {
		t.Errorf("policy decided on %q", paths)
	}
}

// Issue 13 item 11: only a fixed list of X-Agentauth- headers was stripped; X-Agentauth-Other reached the tool.
func TestIngressStripsReservedHeaderPrefix(t *testing.T) {
	tool := echoTool(t)
	f := startIngress(t, IngressConfig{Routes: mustTable(t,
		&Route{Name: "r", Match: Match{Host: AnyHost}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough})})
	req, _ := http.NewRequest("GET", "http://"+f.plain+"/x", nil)
	req.Header["X-Agentauth-Other"] = []string{"forged"}
	req.Header["x_agentauth_future_header"] = []string{"forged"}
	req.Header["X-AGENTAUTH-ROLE"] = []string{"admin"}
	req.Header["X-Agentauthentic"] = []string{"kept"}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeSeen(t, res)
	for k := range got.Header {
		if reservedHeader(k) {
			t.Errorf("%s reached the tool: %q", k, got.Header[k])
		}
	}
	if got.Header.Get("X-Agentauthentic") != "kept" {
		t.Errorf("a header merely starting like the prefix was dropped: %v", got.Header)
	}
}

// Issue 13 item 12: a 502's error_description showed the tool's internal address to the remote caller. The
// detail belongs in the decision record (and the log), not in the answer.
func TestIngressUpstreamRefusalHidesInternals(t *testing.T) {
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	hang := listen(t)
	t.Cleanup(func() { hang.Close() })
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	f := startIngress(t, IngressConfig{
		Options: Options{Limits: Limits{ResponseHeaderTimeout: 100 * time.Millisecond}},
		Routes: mustTable(t,
			&Route{Name: "dead", Match: Match{Host: AnyHost, PathPrefix: "/dead"}, Upstream: mustURL(t, "http://"+deadAddr), Modes: wire.ModePassthrough},
			&Route{Name: "hang", Match: Match{Host: AnyHost, PathPrefix: "/hang"}, Upstream: mustURL(t, "http://"+hang.Addr().String()), Modes: wire.ModePassthrough}),
	})
	_, deadPort, _ := net.SplitHostPort(deadAddr)
	for _, tc := range []struct {
		path, addr, code, detail string
		status                   int
	}{
		{"/dead", deadAddr, "upstream_unavailable", deadPort, http.StatusBadGateway},
		{"/hang", hang.Addr().String(), "upstream_timeout", "awaiting response headers", http.StatusGatewayTimeout},
	} {
		t.Run(tc.code, func(t *testing.T) {
			res, err := http.Get("http://" + f.plain + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			e := checkRefusal(t, res, tc.status, tc.code)
			_, port, _ := net.SplitHostPort(tc.addr)
			for _, leak := range []string{port, "127.0.0.1", "dial", "tcp", "route"} {
				if strings.Contains(e.Description, leak) {
					t.Errorf("error_description %q reveals %q", e.Description, leak)
				}
			}
			f.done.wait(t)
			recs := f.sink.all()
			if r := recs[len(recs)-1]; !strings.Contains(r.Message, tc.detail) {
				t.Errorf("the decision record lost the detail: %q", r.Message)
			}
		})
	}
}
