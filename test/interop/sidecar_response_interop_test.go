//go:build interop

package interop

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/sidecar"
	"github.com/agentauth/agentauth/pkg/wire"
)

// The sidecars' signed responses (wimse-sign-response) against http-message-signatures: node verifies what a real
// ingress sidecar signs, and a real egress sidecar accepts what node signs (and refuses it when it answers another
// request).

var (
	sidecarTD    = spiffeid.RequireTrustDomainFromString("example.org")
	sidecarAgent = spiffeid.RequireFromString("spiffe://example.org/agent/planner")
	sidecarTool  = spiffeid.RequireFromString("spiffe://example.org/tool/weather")
)

const sidecarToolHost = "weather.tools.local"

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// workloadFiles writes id's X.509-SVID, WIT and the CA's bundles, and returns the identity section and the WIT.
func workloadFiles(t *testing.T, ca *testca.CA, id spiffeid.ID) (string, *testca.WITSVID) {
	t.Helper()
	dir := t.TempDir()
	cert, key := ca.WriteSVIDFiles(dir, ca.CreateX509SVID(id))
	wit := ca.CreateWITSVID(id)
	witPath, witKey := ca.WriteWITFiles(dir, wit)
	return fmt.Sprintf(`identity:
  files:
    cert: %s
    key: %s
    bundles:
      example.org: [%s, %s]
    wit: %s
    witKey: %s
`, cert, key, ca.WriteBundleFile(dir), ca.WriteJWTBundleFile(dir), witPath, witKey), wit
}

// runSidecar starts a sidecar in this process and waits until it is ready.
func runSidecar(t *testing.T, yml, admin string) {
	t.Helper()
	cfg, err := sidecar.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sidecar.New(ctx, cfg, zap.NewNop())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func witPublicJWK(t *testing.T, w *testca.WITSVID) any {
	t.Helper()
	return httpsigJWK(t, w.Key.Public())
}

// TestSidecarSignedResponseVerifiedByNode: a request asking for a signed response goes to a real ingress sidecar;
// http-message-signatures verifies the response it signed with its WIT, over the profile's components.
func TestSidecarSignedResponseVerifiedByNode(t *testing.T) {
	requireNode(t, "http-message-signatures", "structured-headers")
	ca := testca.New(t, sidecarTD)
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"forecast":"sun"}`)
	}))
	defer tool.Close()
	identity, toolWIT := workloadFiles(t, ca, sidecarTool)
	listen, admin := freeAddr(t), freeAddr(t)
	runSidecar(t, identity+fmt.Sprintf(`ingress:
  listen: %s
  backend: %s
  allowCleartextProofs: true
  require: [httpsig]
  host: %s
admin: {listen: %s}
`, listen, tool.URL, sidecarToolHost, admin), admin)

	agent := ca.CreateWITSVID(sidecarAgent)
	signer, err := httpsig.NewSigner(agent.Token, agent.Key, httpsig.SignerOptions{RequestSignedResponse: true})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/forecast?city=paris", nil)
	req.Host = sidecarToolHost
	if err := signer.SignRequestFor(req, nil, "http://"+sidecarToolHost+"/forecast"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(wire.HeaderWIT) != toolWIT.Token {
		t.Fatalf("got %d %s, WIT %q", resp.StatusCode, body, resp.Header.Get(wire.HeaderWIT))
	}
	nreq := nodeRequest{Method: req.Method, URL: req.URL.String(), Headers: req.Header}
	check := func(status int, h http.Header, b []byte) nodeVerifyOut {
		var out nodeVerifyOut
		runNode(t, "httpsig_verify.mjs", map[string]any{
			"request": nreq, "response": nodeResponse{Status: status, Headers: h},
			"jwk": witPublicJWK(t, toolWIT), "alg": string(httpsig.AlgECDSAP256SHA256), "label": httpsig.Label,
			"body": base64.StdEncoding.EncodeToString(b),
			"requiredFields": []string{"@status", "@method", "@request-target", "workload-identity-token",
				"content-type", "content-digest"},
		}, &out)
		return out
	}
	if out := check(resp.StatusCode, resp.Header, body); !out.OK || out.DigestOK == nil || !*out.DigestOK {
		t.Fatalf("node refused the ingress sidecar's signed response: %+v\nheaders: %v", out, resp.Header)
	}
	if out := check(http.StatusCreated, resp.Header, body); out.OK {
		t.Fatal("node accepted the signed response with another status")
	}
}

// TestNodeSignedResponseAcceptedBySidecar: a real egress sidecar with signedResponses calls an upstream whose
// responses http-message-signatures signs; the agent gets the response. Signed for another request (the wrong
// wimse-req-nonce), it gets 502 response_unverified instead.
func TestNodeSignedResponseAcceptedBySidecar(t *testing.T) {
	requireNode(t, "http-message-signatures", "structured-headers")
	ca := testca.New(t, sidecarTD)
	_, toolWIT := workloadFiles(t, ca, sidecarTool)
	var wrongNonce atomic.Bool
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ins, err := httpsig.ParseSignatureInput(r.Header.Values(wire.HeaderSignatureInput))
		if err != nil || len(ins) != 1 {
			http.Error(w, "no signature input", http.StatusBadRequest)
			return
		}
		nonce, _ := ins[0].StringParam("nonce")
		if wrongNonce.Load() {
			nonce = "another-request"
		}
		body := []byte(`{"forecast":"rain"}`)
		now := time.Now().Unix()
		var signed nodeSignOut
		runNode(t, "httpsig_sign.mjs", map[string]any{
			"request": nodeRequest{Method: r.Method, URL: "http://" + r.Host + r.URL.RequestURI(), Headers: r.Header},
			"response": nodeResponse{Status: http.StatusOK, Headers: http.Header{
				"Content-Type": {"application/json"}, wire.HeaderWIT: {toolWIT.Token}}},
			"jwk": httpsigJWK(t, toolWIT.Key.(crypto.Signer)), "alg": string(httpsig.AlgECDSAP256SHA256), "label": httpsig.Label,
			"body": base64.StdEncoding.EncodeToString(body),
			"fields": []string{"@status", "workload-identity-token", "content-type", "content-digest",
				`"@method";req`, `"@request-target";req`},
			"params": []string{"created", "expires", "nonce", "tag", "wimse-req-nonce"},
			"paramValues": map[string]any{"created": now, "expires": now + 60, "nonce": fmt.Sprintf("node-%d", time.Now().UnixNano()),
				"tag": httpsig.Tag, "wimse-req-nonce": nonce},
		}, &signed)
		if signed.Error != "" {
			http.Error(w, signed.Error, http.StatusInternalServerError)
			return
		}
		for k, vs := range signed.Headers {
			w.Header()[http.CanonicalHeaderKey(k)] = vs
		}
		w.Write(body)
	}))
	defer upstream.Close()

	identity, _ := workloadFiles(t, ca, sidecarAgent)
	proxyAddr, admin := freeAddr(t), freeAddr(t)
	runSidecar(t, identity+fmt.Sprintf(`egress:
  proxyListen: %s
  routes:
    - name: weather
      host: %s
      upstream: %s
      modes: [httpsig]
      allowCleartextProofs: true
      serverID: %s
      signedResponses: true
admin: {listen: %s}
`, proxyAddr, sidecarToolHost, upstream.URL, sidecarTool, admin), admin)

	proxyURL, _ := url.Parse("http://" + proxyAddr)
	agent := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	call := func() (int, string) {
		resp, err := agent.Get("http://" + sidecarToolHost + "/forecast?city=paris")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, body := call(); code != http.StatusOK || body != `{"forecast":"rain"}` {
		t.Fatalf("node-signed response: got %d %s, want 200", code, body)
	}
	wrongNonce.Store(true)
	if code, body := call(); code != http.StatusBadGateway || !strings.Contains(body, `"response_unverified"`) {
		t.Fatalf("response for another request: got %d %s, want 502 response_unverified", code, body)
	}
}
