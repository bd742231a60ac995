package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/wire"
)

// responseTamperer sits between the sidecars and rewrites the ingress's responses on the way back.
type responseTamperer struct {
	tamper atomic.Pointer[func(*http.Response)]
}

func (m *responseTamperer) handler(ingress string) http.Handler {
	u, _ := url.Parse(ingress)
	rp := httputil.NewSingleHostReverseProxy(u)
	director := rp.Director
	rp.Director = func(r *http.Request) {
		host := r.Host
		director(r)
		r.Host = host
	}
	rp.ModifyResponse = func(res *http.Response) error {
		if f := m.tamper.Load(); f != nil {
			(*f)(res)
		}
		return nil
	}
	return rp
}

func (m *responseTamperer) set(f func(*http.Response)) {
	if f == nil {
		m.tamper.Store(nil)
		return
	}
	m.tamper.Store(&f)
}

func replaceBody(res *http.Response, from, to string) {
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	b = bytes.Replace(b, []byte(from), []byte(to), 1)
	res.Body = io.NopCloser(bytes.NewReader(b))
	res.ContentLength = int64(len(b))
	res.Header.Set("Content-Length", strconv.Itoa(len(b)))
}

// TestSignedResponses: with signedResponses on the route the egress asks (wimse-sign-response), the ingress signs
// with its WIT, and the egress verifies before the agent sees the response; a response changed on the way back
// (status, body or a covered header) is refused with 502 response_unverified.
func TestSignedResponses(t *testing.T) {
	ca := testca.New(t, trustDomain)
	m := &responseTamperer{}
	p := startPair(t, ca, pairOptions{egressModes: "[httpsig]", ingressReq: "[httpsig]", mitm: m.handler,
		routeExtra: "      signedResponses: true\n"})

	post := func() (*http.Response, string) {
		t.Helper()
		resp, err := p.agent().Post("http://"+toolHost+"/echo", "application/json", strings.NewReader(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		return resp, readAll(t, resp)
	}

	resp, body := post()
	if resp.StatusCode != http.StatusOK || body != `{"n":1}` {
		t.Fatalf("signed call got %d %s", resp.StatusCode, body)
	}
	// The agent gets the signed response as the ingress sent it.
	in := resp.Header.Get(wire.HeaderSignatureInput)
	for _, want := range []string{`"@status"`, `"content-digest"`, `"@method";req`, `"@request-target";req`,
		`"workload-identity-token"`, "wimse-req-nonce="} {
		if !strings.Contains(in, want) {
			t.Errorf("Signature-Input %q lacks %s", in, want)
		}
	}

	tampers := []struct {
		name string
		f    func(*http.Response)
	}{
		{"status", func(res *http.Response) { res.StatusCode = http.StatusCreated }},
		{"body", func(res *http.Response) { replaceBody(res, `"n":1`, `"n":9`) }},
		{"body and digest dropped", func(res *http.Response) {
			replaceBody(res, `"n":1`, `"n":9`)
			res.Header.Del("Content-Digest")
		}},
		{"covered header", func(res *http.Response) { res.Header.Set("Content-Type", "text/html") }},
		{"signature removed", func(res *http.Response) {
			res.Header.Del("Signature")
			res.Header.Del("Signature-Input")
		}},
	}
	for _, tt := range tampers {
		t.Run(tt.name, func(t *testing.T) {
			m.set(tt.f)
			defer m.set(nil)
			resp, body := post()
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"response_unverified"`) ||
				strings.Contains(body, `"n":9`) {
				t.Fatalf("tampered response got %d %s, want 502 response_unverified", resp.StatusCode, body)
			}
		})
	}

	// An event stream cannot be signed: the ingress refuses it (501), and the egress passes on why.
	resp, err := p.agent().Get("http://" + toolHost + "/sse?n=2&interval=10ms")
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "response_signing_unavailable") {
		t.Fatalf("signed SSE got %d %s, want 502 quoting the ingress's response_signing_unavailable", resp.StatusCode, body)
	}
}

// TestSignedResponseWithoutWIT: an ingress with no WIT of its own cannot sign, so a request asking for a signed
// response gets 501 response_signing_unavailable, not an unsigned 200, and the tool never sees it.
func TestSignedResponseWithoutWIT(t *testing.T) {
	ca := testca.New(t, trustDomain)
	tool := issue(t, ca, toolID)
	toolAddr, ingressAddr, admin := freeAddr(t), freeAddr(t), freeAddr(t)
	st := start(t, "sampletool", nil, "-listen", toolAddr)
	waitHTTP(t, st, "http://"+toolAddr+"/whoami", http.StatusOK)
	cfg := fmt.Sprintf(`identity:
  files:
    cert: %s
    key: %s
    bundles:
      example.org: [%s, %s]
ingress:
  listen: %s
  backend: http://%s
  allowCleartextProofs: true
  require: [httpsig]
  host: %s
admin:
  listen: %s
`, tool.cert, tool.key, tool.bundlePEM, tool.bundleJSON, ingressAddr, toolAddr, toolHost, admin)
	ing := start(t, "sidecar", nil, "-config", writeFile(t, tool.dir, "ingress.yaml", cfg))
	waitHTTP(t, ing, "http://"+admin+"/readyz", http.StatusOK)

	wit := ca.CreateWITSVID(agentID)
	for _, ask := range []bool{true, false} {
		signer, err := httpsig.NewSigner(wit.Token, wit.Key, httpsig.SignerOptions{RequestSignedResponse: ask})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+ingressAddr+"/whoami", nil)
		req.Host = toolHost
		if err := signer.SignRequestFor(req, nil, "http://"+toolHost+"/whoami"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		want := http.StatusOK
		if ask {
			want = http.StatusNotImplemented
		}
		if resp.StatusCode != want || (ask && !strings.Contains(body, `"response_signing_unavailable"`)) {
			t.Fatalf("wimse-sign-response=%t: got %d %s, want %d", ask, resp.StatusCode, body, want)
		}
	}
}
