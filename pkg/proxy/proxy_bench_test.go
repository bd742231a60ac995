package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"

	"github.com/agentauth/agentauth/pkg/wire"
)

// BenchmarkRoundTrip measures one keep-alive request through: nothing, a bare httputil.ReverseProxy pair, and
// sidecar pairs (passthrough over cleartext; mTLS + WIT/WPT stand-ins + policy over HTTP/2). The difference is
// the sidecars' added latency; the stand-in signer/verifier cost nothing, so real crypto comes on top.
func BenchmarkRoundTrip(b *testing.B) {
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer tool.Close()
	toolURL := mustURL(b, tool.URL)
	keepAlive := func(proxyAddr string) *http.Client {
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		if proxyAddr != "" {
			tr.Proxy = http.ProxyURL(mustURL(b, "http://"+proxyAddr))
		}
		return &http.Client{Transport: tr}
	}
	run := func(b *testing.B, c *http.Client, url string) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	}

	b.Run("direct", func(b *testing.B) { run(b, keepAlive(""), tool.URL+"/x") })

	b.Run("bare-reverseproxy-pair", func(b *testing.B) {
		second := httptest.NewServer(httputil.NewSingleHostReverseProxy(toolURL))
		defer second.Close()
		first := httptest.NewServer(httputil.NewSingleHostReverseProxy(mustURL(b, second.URL)))
		defer first.Close()
		run(b, keepAlive(""), first.URL+"/x")
	})

	b.Run("sidecar-pair-passthrough", func(b *testing.B) {
		ingress, err := NewIngressHandler(IngressConfig{Routes: mustTable(b,
			&Route{Name: "tool", Match: Match{Host: AnyHost}, Upstream: toolURL, Modes: wire.ModePassthrough})})
		if err != nil {
			b.Fatal(err)
		}
		iln := listen(b)
		serve(b, Limits{}, Listener{Name: "ingress", Listener: iln, Handler: ingress})
		egress, err := NewEgressHandler(EgressConfig{Routes: mustTable(b,
			&Route{Name: "tool", Match: Match{Host: "tool.test"}, Upstream: mustURL(b, "http://"+iln.Addr().String()), Modes: wire.ModePassthrough}),
			Steps: signChain(nil)})
		if err != nil {
			b.Fatal(err)
		}
		eln := listen(b)
		serve(b, Limits{}, Listener{Name: "egress", Listener: eln, Handler: egress})
		run(b, keepAlive(eln.Addr().String()), "http://tool.test/x")
	})

	b.Run("sidecar-pair-mtls-wpt", func(b *testing.B) {
		p := newPair(b, tool.URL, false, Limits{})
		c := keepAlive(p.egress)
		// Drain the completion signals the test fixture sends, so they never block the handlers.
		stop := make(chan struct{})
		defer close(stop)
		for _, d := range []*done{p.egressDone, p.ingressDone} {
			go func() {
				for {
					select {
					case <-d.ch:
					case <-stop:
						return
					}
				}
			}()
		}
		run(b, c, "http://tool.test/x")
	})
}
