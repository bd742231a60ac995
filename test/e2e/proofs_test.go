package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// capture is a network observer between the sidecars: it records every request it forwards.
type capture struct {
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
	// tamper, when set, rewrites the body in flight.
	tamper func([]byte) []byte
}

func (c *capture) handler(ingress string) http.Handler {
	u, _ := url.Parse(ingress)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Rewrite = nil
	director := rp.Director
	rp.Director = func(r *http.Request) {
		host := r.Host
		director(r)
		r.Host = host
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.reqs = append(c.reqs, r.Clone(context.Background()))
		c.body = append(c.body, b)
		c.mu.Unlock()
		if c.tamper != nil {
			b = c.tamper(b)
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		rp.ServeHTTP(w, r)
	})
}

func (c *capture) last(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) == 0 {
		t.Fatal("nothing captured")
	}
	return c.reqs[len(c.reqs)-1], c.body[len(c.body)-1]
}

// resend replays a captured request, byte for byte, straight to the ingress sidecar.
func resend(t *testing.T, p *pair, r *http.Request, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(r.Method, "http://"+p.ingressAddr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = r.Header.Clone()
	req.Host = r.Host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, readAll(t, resp)
}

// TestReplayRefused: a request captured on the wire and sent again is refused, in both proof modes.
func TestReplayRefused(t *testing.T) {
	ca := testca.New(t, trustDomain)
	for _, mode := range []string{"wpt", "httpsig"} {
		t.Run(mode, func(t *testing.T) {
			c := &capture{}
			p := startPair(t, ca, pairOptions{egressModes: "[" + mode + "]", ingressReq: "[" + mode + "]", mitm: c.handler})
			if code, _, body := getWhoami(t, p.agent(), "http://"+toolHost+"/whoami", nil); code != http.StatusOK {
				t.Fatalf("first call: %d %s", code, body)
			}
			r, b := c.last(t)
			code, body := resend(t, p, r, b)
			if code != http.StatusBadRequest || !strings.Contains(body, `"replay"`) {
				t.Fatalf("replay got %d %s, want 400 replay", code, body)
			}
		})
	}
}

// TestTamperedBodyRefused: under httpsig a body changed in flight does not reach the tool.
func TestTamperedBodyRefused(t *testing.T) {
	ca := testca.New(t, trustDomain)
	c := &capture{tamper: func(b []byte) []byte { return bytes.Replace(b, []byte("10"), []byte("99"), 1) }}
	p := startPair(t, ca, pairOptions{egressModes: "[httpsig]", ingressReq: "[httpsig]", mitm: c.handler})
	resp, err := p.agent().Post("http://"+toolHost+"/echo", "application/json", strings.NewReader(`{"transfer":10}`))
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"binding_mismatch"`) ||
		!strings.Contains(strings.ToLower(body), "digest") {
		t.Fatalf("tampered body got %d %s, want 400 binding_mismatch on the digest", resp.StatusCode, body)
	}
	// The same call untampered goes through, so the refusal was the tampering.
	c.tamper = nil
	resp, err = p.agent().Post("http://"+toolHost+"/echo", "application/json", strings.NewReader(`{"transfer":10}`))
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || body != `{"transfer":10}` {
		t.Fatalf("untampered call got %d %s", resp.StatusCode, body)
	}
}

// TestExpiredCredentialsRefused: an expired WIT (with a WPT made while it was valid) and an expired client
// certificate are both refused by the ingress sidecar.
func TestExpiredCredentialsRefused(t *testing.T) {
	ca := testca.New(t, trustDomain)
	p := startPair(t, ca, pairOptions{egressModes: "[mtls, wpt]", ingressReq: "[wpt]", tls: true})

	t.Run("expired WIT", func(t *testing.T) {
		now := time.Now()
		wit := ca.CreateWITSVID(agentID, testca.WithNotBefore(now.Add(-2*time.Hour)), testca.WithNotAfter(now.Add(-time.Minute)))
		prover, err := wpt.NewProver(wit.Token, wit.Key)
		if err != nil {
			t.Fatal(err)
		}
		proof, err := prover.Mint(wpt.ProofParams{Audience: "https://" + toolHost + "/whoami",
			Lifetime: 3 * time.Minute, Now: now.Add(-2 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		c, base := p.direct(true)
		code, _, body := getWhoami(t, c, base+"/whoami", map[string]string{"Host": toolHost,
			wire.HeaderWIT: wit.Token, wire.HeaderWPT: proof})
		if code != http.StatusBadRequest || !strings.Contains(body, `"expired"`) {
			t.Fatalf("got %d %s, want 400 expired", code, body)
		}
	})

	t.Run("expired client certificate", func(t *testing.T) {
		mp := startPair(t, ca, pairOptions{egressModes: "[mtls]", ingressReq: "[mtls]", tls: true})
		now := time.Now()
		svid := ca.CreateX509SVID(agentID, testca.WithNotBefore(now.Add(-2*time.Hour)), testca.WithNotAfter(now.Add(-time.Minute)))
		cfg := tlsconfig.MTLSClientConfig(svidSource{svid}, ca.X509Bundle(), tlsconfig.AuthorizeID(toolID))
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		req, _ := http.NewRequest(http.MethodGet, "https://"+mp.ingressAddr+"/whoami", nil)
		req.Host = toolHost
		resp, err := c.Do(req)
		if err == nil {
			body := readAll(t, resp)
			t.Fatalf("expired client certificate got %d %s, want the handshake refused", resp.StatusCode, body)
		}
		if !strings.Contains(err.Error(), "tls") {
			t.Fatalf("want a TLS handshake refusal, got %v", err)
		}
	})
}

type svidSource struct{ svid *x509svid.SVID }

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
