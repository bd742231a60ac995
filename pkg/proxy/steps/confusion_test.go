package steps

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

const plannerID = "spiffe://example.org/agent/planner"

// toolSeen is one request as the tool behind the ingress received it.
type toolSeen struct{ Method, Host, Path, Body string }

// policyIngress runs the sidecar's real ingress wiring (proxy.IngressHandler + Policy + a Cedar engine)
// in front of a recording tool, both on 127.0.0.1. Authentication is stubbed: every caller is agent, by WPT.
// host is ingress.host.
func policyIngress(t *testing.T, cedar map[string][]byte, host, agent string, mcpPaths []string) (string, func() []toolSeen) {
	t.Helper()
	var (
		mu   sync.Mutex
		hits []toolSeen
	)
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hits = append(hits, toolSeen{r.Method, r.Host, r.URL.Path, string(b)})
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(tool.Close)

	set, err := policy.Compile(cedar)
	if err != nil {
		t.Fatal(err)
	}
	authz, err := NewPolicy(policy.NewEngine(set), host, mcpPaths, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse(tool.URL)
	// As pkg/sidecar builds it.
	route := &proxy.Route{Name: "ingress", Match: proxy.Match{Host: host}, Upstream: up, Modes: wire.ModeWPT,
		Audience: "https://tool.example/", KeepHost: true}
	table, err := proxy.NewRouteTable(route)
	if err != nil {
		t.Fatal(err)
	}
	authn := proxy.StepFunc(func(_ context.Context, x *proxy.Exchange) error {
		x.Identity = &proxy.Identity{Subject: agent, Method: wire.AuthWITWPT}
		return nil
	})
	h, err := proxy.NewIngressHandler(proxy.IngressConfig{Routes: table,
		Steps: []proxy.Step{authn, &proxy.AuthorizeStep{Authorizer: authz}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return "http://" + serveIngress(t, h), func() []toolSeen {
		mu.Lock()
		defer mu.Unlock()
		return append([]toolSeen(nil), hits...)
	}
}

func doRequest(t *testing.T, method, base, host, path, ctype, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// The Tool entity policies are written for comes from ingress.host, never from the Host header the caller
// writes: with the corpus's rules every example.org agent may GET orders.example, but only attested agents reach
// admin.example. An unattested agent naming orders.example in Host at admin.example's ingress is still refused.
func TestPolicyToolComesFromConfig(t *testing.T) {
	corpus, err := policyCorpus(t, "http.cedar")
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Compile(corpus)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewPolicy(policy.NewEngine(set), "Admin.Example.:8443", nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	const reporter = "spiffe://example.org/agent/reporter" // no attestation tag
	for _, host := range []string{"admin.example", "orders.example"} {
		d, err := a.Authorize(context.Background(), &proxy.AuthzRequest{Host: host, Method: "GET", Path: "/users",
			Identity: &proxy.Identity{Subject: reporter, Method: wire.AuthWITWPT}})
		if err != nil || d.Allowed {
			t.Errorf("Host %q at admin.example's ingress: %+v, %v; want refused as Tool::\"admin.example\"", host, d, err)
		}
	}
	if _, err := NewPolicy(policy.NewEngine(set), "", nil, 1<<20); err == nil {
		t.Error("a policy authorizer without a configured tool was built: it would take the tool from the Host header")
	}
}

// A broad MCP grant with a guardrail (forbid delete_* on mcp.example) must hold however the request names the
// tool and the MCP endpoint:
//   - "Host: mcp.example." matches the route (the proxy drops the trailing dot), so policy must see
//     Tool::"mcp.example" too, not another entity that no rule is scoped to;
//   - "/mcp/" and "/MCP" (Express, the MCP TypeScript SDK's usual host, routes both to app.post("/mcp")) and
//     "/mcp;x" (Spring drops ;params) reach the MCP handler, so they must be decided per MCP call, not as a plain
//     POST that the REST grant allows.
func TestMCPDecisionsCannotBeSidestepped(t *testing.T) {
	cedar := map[string][]byte{"p.cedar": []byte(`
@id("planner-rest")
permit (principal == Agent::"` + plannerID + `", action == Action::"POST", resource == Tool::"mcp.example");

@id("planner-mcp")
permit (principal == Agent::"` + plannerID + `", action in Action::"mcp", resource);

@id("mcp-no-deletes")
forbid (principal, action == Action::"tools/call", resource in Tool::"mcp.example")
when { resource.name like "delete_*" };
`)}
	base, seen := policyIngress(t, cedar, "mcp.example", plannerID, []string{"/mcp"})
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_order"}}`
	for _, tc := range []struct{ host, path string }{
		{"mcp.example", "/mcp"}, // the baseline
		{"mcp.example.", "/mcp"}, {"MCP.EXAMPLE.:80", "/mcp"},
		{"mcp.example", "/mcp/"}, {"mcp.example", "/MCP"}, {"mcp.example", "/mcp;x"},
	} {
		n := len(seen())
		if status := doRequest(t, "POST", base, tc.host, tc.path, "application/json", body); status != 403 || len(seen()) != n {
			t.Errorf("Host %q, POST %s: tools/call delete_order was forwarded (status %d, tool saw %+v)",
				tc.host, tc.path, status, seen()[n:])
		}
	}
}

func policyCorpus(t *testing.T, names ...string) (map[string][]byte, error) {
	t.Helper()
	out := make(map[string][]byte)
	for _, n := range names {
		b, err := os.ReadFile("../../policy/testdata/corpus/" + n)
		if err != nil {
			return nil, err
		}
		out[n] = b
	}
	return out, nil
}

// wptIngress is a real ingress (proxy.IngressHandler on 127.0.0.1, served by proxy.Server) with the sidecar's own
// WPTAuthenticator over a real wpt.Verifier, forwarding to a tool that reports the headers it received. Without
// ingress.txnToken configured, exactly as pkg/sidecar builds the chain then.
type wptIngress struct {
	addr   string
	prover *wpt.Prover
	seen   chan http.Header
}

func newWPTIngress(t *testing.T) *wptIngress {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	issuerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := wpt.NewIssuer(issuerKey, "k1", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	wkey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wit, err := iss.Mint(wpt.WITClaims{Subject: plannerID, ID: "wit-1", Expiry: time.Now().Add(time.Hour),
		Key: wkey.Public(), KeyAlg: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	prover, err := wpt.NewProver(wit, wkey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := wpt.NewVerifier(wpt.VerifierConfig{
		Bundles: wpt.FromWITBundles(witbundle.NewSet(witbundle.FromWITAuthorities(td,
			map[string]crypto.PublicKey{"k1": issuerKey.Public()}))),
		Replay: replay.New(replay.Options{}),
	})
	if err != nil {
		t.Fatal(err)
	}

	seen := make(chan http.Header, 8)
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		_ = json.NewEncoder(w).Encode(map[string]string{"ok": "yes"})
	}))
	t.Cleanup(tool.Close)
	up, _ := url.Parse(tool.URL)

	table, err := proxy.NewRouteTable(&proxy.Route{Name: "ingress", Match: proxy.Match{Host: "127.0.0.1"},
		Upstream: up, Modes: wire.ModeWPT, KeepHost: true})
	if err != nil {
		t.Fatal(err)
	}
	allow := authzFunc(func(context.Context, *proxy.AuthzRequest) (*proxy.Decision, error) {
		return &proxy.Decision{Allowed: true}, nil
	})
	h, err := proxy.NewIngressHandler(proxy.IngressConfig{Routes: table, Steps: []proxy.Step{
		&proxy.AuthenticateStep{Authenticators: map[wire.Mode]proxy.Authenticator{wire.ModeWPT: NewWPTAuthenticator(v)}},
		proxy.BindingStep{},
		&proxy.AuthorizeStep{Authorizer: allow},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return &wptIngress{addr: serveIngress(t, h), prover: prover, seen: seen}
}

// serveIngress serves h as the sidecar does, on a loopback port, until the test ends; it returns the address.
func serveIngress(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(proxy.Limits{}, nil, proxy.Listener{Name: "ingress", Listener: ln, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-errc })
	return ln.Addr().String()
}

type authzFunc func(context.Context, *proxy.AuthzRequest) (*proxy.Decision, error)

func (f authzFunc) Authorize(ctx context.Context, r *proxy.AuthzRequest) (*proxy.Decision, error) {
	return f(ctx, r)
}

// send writes one raw HTTP/1.1 request (so header lines can repeat exactly as an intermediary would send them) and
// returns the status and, when the tool was reached, the headers it received.
func (z *wptIngress) send(t *testing.T, extra []string) (int, http.Header) {
	t.Helper()
	conn, err := net.Dial("tcp", z.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lines := append([]string{"GET /x HTTP/1.1", "Host: " + z.addr, "Connection: close"}, extra...)
	if _, err := io.WriteString(conn, strings.Join(append(lines, "", ""), "\r\n")); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, nil
	}
	select {
	case h := <-z.seen:
		return res.StatusCode, h
	case <-time.After(10 * time.Second):
		t.Fatal("tool saw nothing")
	}
	return 0, nil
}

func (z *wptIngress) proof(t *testing.T, pp wpt.ProofParams) []string {
	t.Helper()
	pp.Audience = "http://" + z.addr + "/x"
	p, err := z.prover.Mint(pp)
	if err != nil {
		t.Fatal(err)
	}
	return []string{wire.HeaderWIT + ": " + z.prover.WIT(), wire.HeaderWPT + ": " + p}
}

// ath/tth must bind every access token and Txn-Token the request carries
// (draft-ietf-wimse-wpt §3.4 steps 10-11: tokens not covered must not be used for authorization). WPTAuthenticator
// hashes only Header.Get (the first line) and only "Bearer <sp>" credentials, but ingress forwards every line to
// the tool unchanged. An intermediary that sees a proof (TLS-terminating LB, or anyone on a cleartext hop, which the
// config allows) can attach its own token next to the agent's verified identity.
func TestWPTRefusesUnboundTokens(t *testing.T) {
	const agentTok, attackerTok = "agent-access-token", "attacker-access-token"
	const agentTxn, attackerTxn = "aaa.bbb.ccc", "xxx.yyy.zzz"
	tests := []struct {
		name    string
		pp      wpt.ProofParams
		headers []string
		header  string // the header whose unbound value must not reach the tool
		unbound string
	}{
		{"second Authorization line", wpt.ProofParams{AccessToken: agentTok},
			[]string{"Authorization: Bearer " + agentTok, "Authorization: Bearer " + attackerTok},
			"Authorization", "Bearer " + attackerTok},
		{"second Txn-Token line", wpt.ProofParams{TxnToken: agentTxn},
			[]string{"Txn-Token: " + agentTxn, "Txn-Token: " + attackerTxn},
			"Txn-Token", attackerTxn},
		{"Bearer with HTAB, no ath", wpt.ProofParams{},
			[]string{"Authorization: Bearer\t" + attackerTok}, "Authorization", "Bearer\t" + attackerTok},
		{"DPoP access token, no ath", wpt.ProofParams{},
			[]string{"Authorization: DPoP " + attackerTok}, "Authorization", "DPoP " + attackerTok},
	}
	z := newWPTIngress(t)
	// Bound tokens pass, whichever access-token scheme carries them.
	for _, auth := range []string{"Bearer " + agentTok, "DPoP " + agentTok, "bearer\t" + agentTok} {
		status, got := z.send(t, append(z.proof(t, wpt.ProofParams{AccessToken: agentTok, TxnToken: agentTxn}),
			"Authorization: "+auth, "Txn-Token: "+agentTxn))
		if status != http.StatusOK || got.Get("Authorization") != auth || got.Get("Txn-Token") != agentTxn {
			t.Fatalf("Authorization %q bound by ath: status %d, tool saw %v", auth, status, got)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := z.send(t, append(z.proof(t, tt.pp), tt.headers...))
			if got == nil {
				if status != http.StatusBadRequest && status != http.StatusUnauthorized {
					t.Errorf("status %d, want 400 or 401", status)
				}
				return
			}
			for _, v := range got.Values(tt.header) {
				if v == tt.unbound {
					t.Fatalf("status %d: ingress accepted the WPT and forwarded %s %q to the tool as agent %s, "+
						"although the WPT's ath/tth does not bind it (tool received %s = %q)",
						status, tt.header, tt.unbound, got.Get(wire.HeaderWorkloadID), tt.header, got.Values(tt.header))
				}
			}
		})
	}
}
