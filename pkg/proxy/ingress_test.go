package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

type ingressFixture struct {
	plain, tls string // listener addresses
	done       *done
	sink       *sink
	pki        *testPKI
	agentCert  tls.Certificate
}

// startIngress serves one ingress handler on a cleartext and an mTLS listener.
func startIngress(t *testing.T, cfg IngressConfig) *ingressFixture {
	t.Helper()
	f := &ingressFixture{sink: &sink{}, pki: newPKI(t)}
	f.agentCert = f.pki.issue(t, agentID)
	if cfg.Sink == nil {
		cfg.Sink = f.sink
	}
	cfg.Self = toolID
	h, err := NewIngressHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	f.done = track(h)
	pl, tl := listen(t), listen(t)
	st := f.pki.serverTLS(t, toolID)
	st.ClientAuth = tls.VerifyClientCertIfGiven
	serve(t, cfg.Limits,
		Listener{Name: "plain", Listener: pl, Handler: f.done},
		Listener{Name: "tls", Listener: tl, Handler: f.done, TLSConfig: st})
	f.plain, f.tls = pl.Addr().String(), tl.Addr().String()
	return f
}

func (f *ingressFixture) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: f.pki.pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
}

func TestIngressChainOrder(t *testing.T) {
	tool := echoTool(t)
	var (
		mu    sync.Mutex
		order []string
	)
	step := func(name string, fn func(x *Exchange) error) Step {
		return StepFunc(func(_ context.Context, x *Exchange) error {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return fn(x)
		})
	}
	failAt := ""
	mk := func(name string, fn func(x *Exchange)) Step {
		return step(name, func(x *Exchange) error {
			if failAt == name {
				return fmt.Errorf("%w: step %s", autherr.ErrDenied, name)
			}
			fn(x)
			return nil
		})
	}
	f := startIngress(t, IngressConfig{
		Routes: mustTable(t, &Route{Name: "r", Match: Match{Host: "127.0.0.1"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModeWPT}),
		Steps: []Step{
			mk("authn", func(x *Exchange) { x.Identity = &Identity{Subject: agentID, Method: wire.AuthWITWPT} }),
			mk("revocation", func(*Exchange) {}),
			mk("authz", func(x *Exchange) { x.Decision = &Decision{Allowed: true} }),
		},
	})
	for _, tt := range []struct {
		failAt string
		want   []string
		status int
	}{
		{"", []string{"authn", "revocation", "authz"}, 200},
		{"revocation", []string{"authn", "revocation"}, 403},
		{"authn", []string{"authn"}, 403},
	} {
		failAt, order = tt.failAt, nil
		res, err := http.Get("http://" + f.plain + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		f.done.wait(t)
		if res.StatusCode != tt.status || !slices.Equal(order, tt.want) {
			t.Errorf("fail at %q: status %d, order %v; want %d, %v", tt.failAt, res.StatusCode, order, tt.status, tt.want)
		}
	}
}

// Every inbound copy of our identity headers goes, however it is spelled; verified values replace them, even when
// the caller's Connection header names them; proof headers are consumed; Txn-Token passes unchanged.
func TestIngressHeaders(t *testing.T) {
	tool := echoTool(t)
	f := startIngress(t, IngressConfig{
		Routes: mustTable(t, &Route{Name: "r", Match: Match{Host: "127.0.0.1"}, Upstream: mustURL(t, tool.URL),
			Modes: wire.ModeMTLS | wire.ModeWPT}),
		Steps: testChain(map[wire.Mode]Authenticator{wire.ModeWPT: fakeAuthn{}}, nil, allowAll()),
	})
	conn, err := tls.Dial("tcp", f.tls, &tls.Config{RootCAs: f.pki.pool, Certificates: []tls.Certificate{f.agentCert},
		NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := strings.Join([]string{
		"GET /x HTTP/1.1",
		"Host: " + f.tls,
		"x-agentauth-workload-id: forged-1",
		"X-AGENTAUTH-WORKLOAD-ID: forged-2",
		"X_Agentauth_Workload_Id: forged-3",
		"x-agentauth-auth-method: forged",
		"X-Agentauth-Delegated-Subject: forged",
		"x_agentauth_transaction_id: forged",
		"X-Forwarded-Client-Cert: By=evil;URI=spiffe://evil/x",
		"x-forwarded-client-cert: Hash=00",
		"Workload-Identity-Token: wit-of:" + agentID,
		"Workload-Proof-Token: aud=https://" + f.tls + "/x",
		"Signature-Input: other=();created=1",
		"Txn-Token: txn.token.value",
		"Txn_Token: forged.unverified.token",
		"X-Test-Delegated: user:alice",
		"X-Test-Txn: txn-1",
		// The reverse proxy deletes what Connection names: verified values must still reach the tool.
		"Connection: close, X-Agentauth-Workload-Id, X-Agentauth-Auth-Method, X-Agentauth-Delegated-Subject",
		"Connection: X-Agentauth-Transaction-Id, X-Forwarded-Client-Cert",
		"", "",
	}, "\r\n")
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeSeen(t, res)
	sum := sha256.Sum256(f.agentCert.Certificate[0])
	want := map[string]string{
		wire.HeaderWorkloadID:       agentID,
		wire.HeaderAuthMethod:       string(wire.AuthWITWPT),
		wire.HeaderDelegatedSubject: "user:alice",
		wire.HeaderTransactionID:    "txn-1",
		wire.HeaderXFCC:             "By=" + toolID + ";Hash=" + hex.EncodeToString(sum[:]) + ";URI=" + agentID,
		wire.HeaderTxnToken:         "txn.token.value",
	}
	for k, v := range want {
		if vs := got.Header.Values(k); len(vs) != 1 || vs[0] != v {
			t.Errorf("%s = %q, want [%q]", k, vs, v)
		}
	}
	for k := range got.Header {
		for _, n := range append(slices.Clone(identityHeaders), proofHeaders...) {
			if headerIs(k, n) && want[k] == "" {
				t.Errorf("header %s reached the tool: %q", k, got.Header[k])
			}
		}
		if headerIs(k, "txn-token") && k != wire.HeaderTxnToken {
			t.Errorf("unverified %s reached the tool: %q", k, got.Header[k])
		}
	}
	if xff := got.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
	f.done.wait(t)
	recs := f.sink.all()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Direction != Ingress || !r.Allowed || r.Subject != agentID || r.PeerID != agentID || r.AuthMethod != string(wire.AuthWITWPT) ||
		r.DelegatedSubject != "user:alice" || r.TransactionID != "txn-1" || r.ProofID != "jti-1" ||
		!slices.Equal(r.PolicyIDs, []string{"allow-all"}) || r.Status != 200 || r.Route != "r" || r.Path != "/x" {
		t.Errorf("record %+v", r)
	}
}

func TestIngressRefusals(t *testing.T) {
	tool := echoTool(t)
	up := mustURL(t, tool.URL)
	authz := authzFunc(func(_ context.Context, req *AuthzRequest) (*Decision, error) {
		switch req.Path {
		case "/deny":
			return &Decision{Allowed: false, PolicyIDs: []string{"p1", "p2"}, Reason: "agent may not write"}, nil
		case "/mcp":
			b, err := req.Body()
			if err != nil {
				return nil, err
			}
			ok := strings.Contains(string(b), `"name":"search"`)
			return &Decision{Allowed: ok, PolicyIDs: []string{"mcp"}}, nil
		case "/authz-error":
			return nil, errBoom
		}
		return &Decision{Allowed: true, PolicyIDs: []string{"allow"}}, nil
	})
	rev := revFunc(func(_ context.Context, id *Identity) error {
		if id.Subject == "spiffe://test.example/revoked" {
			return Revoked("set-123", "CAEP session-revoked")
		}
		return nil
	})
	f := startIngress(t, IngressConfig{
		Options: Options{Limits: Limits{MaxBufferedBody: 64}},
		Routes: mustTable(t,
			&Route{Name: "wpt", Match: Match{Host: "127.0.0.1"}, Upstream: up, Modes: wire.ModeWPT},
			&Route{Name: "mtls", Match: Match{Host: "127.0.0.1", PathPrefix: "/mtls"}, Upstream: up, Modes: wire.ModeMTLS},
			&Route{Name: "both", Match: Match{Host: "127.0.0.1", PathPrefix: "/both"}, Upstream: up, Modes: wire.ModeMTLS | wire.ModeWPT},
			&Route{Name: "sig", Match: Match{Host: "127.0.0.1", PathPrefix: "/sig"}, Upstream: up, Modes: wire.ModeHTTPSig},
			&Route{Name: "nosig", Match: Match{Host: "127.0.0.1", PathPrefix: "/nosig"}, Upstream: up, Modes: wire.ModeHTTPSig | wire.ModeWPT},
			&Route{Name: "health", Match: Match{Host: "127.0.0.1", PathPrefix: "/healthz"}, Upstream: up, Modes: wire.ModePassthrough},
		),
		Steps: append([]Step{StepFunc(func(_ context.Context, x *Exchange) error {
			if x.Request.URL.Path == "/panic" {
				panic("step exploded")
			}
			return nil
		})}, testChain(map[wire.Mode]Authenticator{wire.ModeWPT: fakeAuthn{}, wire.ModeHTTPSig: fakeSigAuthn{}}, rev, authz)...),
	})
	wpt := func(sub, path, scheme, host string) http.Header {
		return http.Header{wire.HeaderWIT: {"wit-of:" + sub}, wire.HeaderWPT: {"aud=" + scheme + "://" + host + path}}
	}
	agent := &f.agentCert
	tests := []struct {
		name     string
		tls      bool
		cert     *tls.Certificate
		method   string
		path     string
		header   http.Header
		body     string
		status   int
		code     string
		check    func(t *testing.T, r DecisionRecord)
		toolBody string
	}{
		{name: "ok", path: "/ok", header: wpt(agentID, "/ok", "http", "127.0.0.1"), status: 200},
		{name: "no credential", path: "/x", status: 401, code: "credential_missing"},
		{name: "WIT without proof", path: "/x", header: http.Header{wire.HeaderWIT: {"wit-of:" + agentID}}, status: 401, code: "credential_missing"},
		{name: "wrong audience", path: "/x", header: wpt(agentID, "/elsewhere", "http", "127.0.0.1"), status: 400, code: "wrong_audience"},
		{name: "policy deny", path: "/deny", header: wpt(agentID, "/deny", "http", "127.0.0.1"), status: 403, code: "policy_denied",
			check: func(t *testing.T, r DecisionRecord) {
				if !slices.Equal(r.PolicyIDs, []string{"p1", "p2"}) || !strings.Contains(r.Message, "agent may not write") {
					t.Errorf("record %+v", r)
				}
			}},
		{name: "revoked", path: "/x", header: wpt("spiffe://test.example/revoked", "/x", "http", "127.0.0.1"), status: 403, code: "revoked",
			check: func(t *testing.T, r DecisionRecord) {
				if r.RevocationID != "set-123" || r.Subject != "spiffe://test.example/revoked" {
					t.Errorf("record %+v", r)
				}
			}},
		{name: "authorizer error", path: "/authz-error", header: wpt(agentID, "/authz-error", "http", "127.0.0.1"), status: 500, code: "internal"},
		{name: "mcp allowed", method: "POST", path: "/mcp", header: wpt(agentID, "/mcp", "http", "127.0.0.1"),
			body: `{"method":"tools/call","params":{"name":"search"}}`, status: 200, toolBody: `{"method":"tools/call","params":{"name":"search"}}`},
		{name: "mcp denied", method: "POST", path: "/mcp", header: wpt(agentID, "/mcp", "http", "127.0.0.1"),
			body: `{"method":"tools/call","params":{"name":"rm"}}`, status: 403, code: "policy_denied"},
		{name: "mcp too large", method: "POST", path: "/mcp", header: wpt(agentID, "/mcp", "http", "127.0.0.1"),
			body: strings.Repeat("x", 65), status: 413, code: "too_large"},
		{name: "mtls over cleartext", path: "/mtls", status: 401, code: "credential_missing"},
		{name: "mtls without cert", tls: true, path: "/mtls", status: 401, code: "credential_missing"},
		{name: "mtls ok", tls: true, cert: agent, path: "/mtls", status: 200,
			check: func(t *testing.T, r DecisionRecord) {
				if r.Subject != agentID || r.AuthMethod != string(wire.AuthMTLS) || r.PeerID != agentID {
					t.Errorf("record %+v", r)
				}
			}},
		{name: "peer is not WIT subject", tls: true, cert: agent, path: "/both",
			header: wpt("spiffe://test.example/other", "/both", "https", "127.0.0.1"), status: 400, code: "binding_mismatch"},
		{name: "peer and WIT agree", tls: true, cert: agent, path: "/both", header: wpt(agentID, "/both", "https", "127.0.0.1"), status: 200},
		{name: "httpsig ok, body still forwarded", method: "POST", path: "/sig", body: "hello",
			header: http.Header{wire.HeaderWIT: {"wit-of:" + agentID}, wire.HeaderSignatureInput: {"wimse=();len=5"}}, status: 200, toolBody: "hello"},
		{name: "httpsig bad", method: "POST", path: "/sig", body: "hello",
			header: http.Header{wire.HeaderWIT: {"wit-of:" + agentID}, wire.HeaderSignatureInput: {"wimse=();len=4"}}, status: 400, code: "bad_signature"},
		{name: "httpsig body too large", method: "POST", path: "/sig", body: strings.Repeat("x", 100),
			header: http.Header{wire.HeaderWIT: {"wit-of:" + agentID}, wire.HeaderSignatureInput: {"wimse=();len=100"}}, status: 413, code: "too_large"},
		{name: "either proof mode accepted", path: "/nosig", header: wpt(agentID, "/nosig", "http", "127.0.0.1"), status: 200},
		{name: "passthrough", path: "/healthz", status: 200},
		{name: "panic", path: "/panic", status: 500, code: "internal",
			check: func(t *testing.T, r DecisionRecord) {
				if !strings.Contains(r.Message, "step exploded") || r.Allowed {
					t.Errorf("record %+v", r)
				}
			}},
		{name: "CONNECT", method: "CONNECT", path: "", status: 405, code: "policy_denied"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, scheme := f.plain, "http"
			if tt.tls {
				addr, scheme = f.tls, "https"
			}
			method := tt.method
			if method == "" {
				method = "GET"
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(method, scheme+"://"+addr+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if method == "CONNECT" {
				req.Host = "127.0.0.1:1"
			}
			for k, vs := range tt.header {
				req.Header[k] = vs
			}
			// The audience names the host without port, as the route is configured; the port is ours.
			for _, k := range []string{wire.HeaderWPT} {
				if v := req.Header.Get(k); v != "" {
					req.Header.Set(k, strings.Replace(v, "://127.0.0.1/", "://"+addr+"/", 1))
				}
			}
			res, err := f.client(tt.cert).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if tt.code != "" {
				checkRefusal(t, res, tt.status, tt.code)
			} else {
				got := decodeSeen(t, res)
				if got.Body != tt.toolBody {
					t.Errorf("tool got body %q, want %q", got.Body, tt.toolBody)
				}
			}
			f.done.wait(t)
			recs := f.sink.all()
			if len(recs) != i+1 {
				t.Fatalf("%d records after %d requests", len(recs), i+1)
			}
			r := recs[i]
			if r.Status != tt.status || r.Reason != tt.code || r.Allowed != (tt.code == "") {
				t.Errorf("record status %d reason %q allowed %v; want %d %q", r.Status, r.Reason, r.Allowed, tt.status, tt.code)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestIngressFailsClosed(t *testing.T) {
	tool := echoTool(t)
	routes := mustTable(t, &Route{Name: "r", Match: Match{Host: "127.0.0.1"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModeWPT})
	for _, tt := range []struct {
		name  string
		steps []Step
	}{
		{"no steps", nil},
		{"no authorization", []Step{&AuthenticateStep{Authenticators: map[wire.Mode]Authenticator{wire.ModeWPT: fakeAuthn{}}}}},
		{"authz before authn", []Step{&AuthorizeStep{Authorizer: allowAll()}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := startIngress(t, IngressConfig{Routes: routes, Steps: tt.steps})
			req, _ := http.NewRequest("GET", "http://"+f.plain+"/x", nil)
			req.Header.Set(wire.HeaderWIT, "wit-of:"+agentID)
			req.Header.Set(wire.HeaderWPT, "aud=http://"+f.plain+"/x")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			checkRefusal(t, res, 500, "internal")
		})
	}
}

func TestIngressConfigValidation(t *testing.T) {
	up := mustURL(t, "http://127.0.0.1:1")
	for _, tt := range []struct {
		name string
		cfg  IngressConfig
		want string
	}{
		{"no table", IngressConfig{}, "route table"},
		{"dynamic upstream", IngressConfig{Routes: mustTable(t, &Route{Name: "r", Match: Match{Host: "a"}, Modes: wire.ModeWPT})}, "no upstream"},
		{"catch-all without audience", IngressConfig{Routes: mustTable(t,
			&Route{Name: "r", Match: Match{Host: AnyHost}, Upstream: up, Modes: wire.ModeWPT})}, "explicit audience"},
		{"nil step", IngressConfig{Routes: mustTable(t), Steps: []Step{nil}}, "step 0 is nil"},
	} {
		if _, err := NewIngressHandler(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestStripHeaders(t *testing.T) {
	h := http.Header{
		"X-Agentauth-Workload-Id":  {"a", "b"},
		"x-agentauth-workload-id":  {"c"}, // not canonical: a map written by hand
		"X_agentauth_AUTH_method":  {"d"},
		"X-Agentauth-Workload-Idx": {"keep"},
		"Content-Type":             {"keep"},
	}
	stripHeaders(h, identityHeaders)
	if len(h) != 2 || h.Get("Content-Type") != "keep" || h.Get("X-Agentauth-Workload-Idx") != "keep" {
		t.Fatalf("after strip: %v", h)
	}
	stripHeaders(nil, identityHeaders)
}

func TestXFCCQuoting(t *testing.T) {
	for in, want := range map[string]string{
		"spiffe://td/a": "spiffe://td/a",
		`a;b`:           `"a;b"`,
		`a"b\c`:         `"a\"b\\c"`,
		"x=y,z":         `"x=y,z"`,
	} {
		if got := xfccValue(in); got != want {
			t.Errorf("xfccValue(%q) = %q, want %q", in, got, want)
		}
	}
	if xfcc(&Peer{}, toolID) != "" {
		t.Error("XFCC without a certificate")
	}
	id := &Identity{Subject: "spiffe://td/a\nInjected: 1", Method: wire.AuthMTLS}
	if err := setIdentityHeaders(http.Header{}, id, nil, ""); !errors.Is(err, autherr.ErrMalformed) {
		t.Errorf("header injection: %v", err)
	}
}

// TestPeerCache checks that the cached peer facts are those computed afresh, whether the certificate is seen for
// the first time or again, and that the cache stays within its bound.
func TestPeerCache(t *testing.T) {
	pki := newPKI(t)
	certs := []*x509.Certificate{pki.issue(t, agentID).Leaf, pki.issue(t, "").Leaf, pki.issue(t, toolID).Leaf}
	c := newPeerCache(toolID)
	c.max = 2
	for round := range 3 {
		for _, leaf := range certs {
			r := httptest.NewRequest(http.MethodGet, "https://tool.test/x", nil)
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
			got := c.peerOf(r)
			want := &Peer{TLS: r.TLS, RemoteAddr: r.RemoteAddr}
			if len(leaf.URIs) == 1 {
				want.ID = spiffeid.RequireFromString(leaf.URIs[0].String())
			}
			if got.ID != want.ID || got.xfcc != xfcc(want, toolID) || got.xfcc == "" {
				t.Errorf("round %d, %v: got ID %v XFCC %q, want %v %q", round, leaf.URIs, got.ID, got.xfcc, want.ID, xfcc(want, toolID))
			}
		}
	}
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	if n > 2 {
		t.Errorf("cache holds %d certificates, bound 2", n)
	}
	if p := c.peerOf(httptest.NewRequest(http.MethodGet, "http://tool.test/x", nil)); !p.ID.IsZero() || p.xfcc != "" {
		t.Errorf("cleartext peer: %+v", p)
	}
}

// TestIngressBodyToTool checks that bodies reach the tool intact through both paths: small ones of known length
// are read first and written with the headers in one write (so the tool's first read holds the whole request),
// larger ones, chunked ones and 100-continue ones are streamed.
func TestIngressBodyToTool(t *testing.T) {
	tool := echoTool(t)
	f := startIngress(t, IngressConfig{Routes: mustTable(t,
		&Route{Name: "r", Match: Match{Host: AnyHost}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough})})
	small, large := strings.Repeat("s", 300), strings.Repeat("L", maxCoalescedBody+1)
	for _, tc := range []struct {
		name, body string
		chunked    bool
		header     http.Header
	}{
		{name: "small", body: small},
		{name: "large", body: large},
		{name: "chunked", body: small, chunked: true},
		{name: "expect-continue", body: small, header: http.Header{"Expect": {"100-continue"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, err := http.NewRequest(http.MethodPost, "http://"+f.plain+"/x", body)
			if err != nil {
				t.Fatal(err)
			}
			maps.Copy(req.Header, tc.header)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if got := decodeSeen(t, res); got.Body != tc.body {
				t.Errorf("the tool got %d bytes, want %d", len(got.Body), len(tc.body))
			}
			f.done.wait(t)
		})
	}

	// The tool's first read: a raw listener reads once and answers.
	ln := listen(t)
	first := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		n, _ := c.Read(buf)
		first <- string(buf[:n])
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	}()
	g := startIngress(t, IngressConfig{Routes: mustTable(t,
		&Route{Name: "r", Match: Match{Host: AnyHost}, Upstream: mustURL(t, "http://"+ln.Addr().String()), Modes: wire.ModePassthrough})})
	res, err := http.Post("http://"+g.plain+"/x", "text/plain", strings.NewReader(small))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := <-first; !strings.HasSuffix(got, "\r\n\r\n"+small) {
		t.Errorf("the tool's first read was %d bytes, not the headers and the %d-byte body", len(got), len(small))
	}
}
