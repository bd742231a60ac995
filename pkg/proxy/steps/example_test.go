package steps_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"

	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/proxy/steps"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// An ingress sidecar, as pkg/sidecar builds it: the one chain in front of a tool on loopback, served until ctx
// ends.
func ExampleIngress() {
	var (
		ctx    context.Context         // the sidecar's lifetime
		src    identity.Source         // our SVID and WIT
		wits   *wpt.Verifier           // WIT+WPT verification against our WIT bundles
		sigs   *httpsig.Verifier       // WIT+HTTP signature verification
		txns   *oauth.TxnVerifier      // Txn-Tokens from the token service
		revs   proxy.RevocationChecker // the controller's revocations
		policy *steps.Policy           // Cedar policy (steps.NewPolicy)
		ln     net.Listener            // bound by the caller
		mtls   *tls.Config             // from pkg/mtls: our SVID, peer verification, rotation per handshake
	)
	tool, _ := url.Parse("http://127.0.0.1:8080")
	routes, _ := proxy.NewRouteTable(&proxy.Route{Name: "tool", Match: proxy.Match{Host: "tool.example"}, Upstream: tool,
		Modes: wire.ModeMTLS | wire.ModeWPT})
	h, err := proxy.NewIngressHandler(proxy.IngressConfig{
		Options: proxy.Options{Self: "spiffe://example.org/tool"},
		Routes:  routes,
		Steps: steps.Ingress(steps.IngressChain{
			Authenticators: map[wire.Mode]proxy.Authenticator{
				wire.ModeWPT:     steps.NewWPTAuthenticator(wits),
				wire.ModeHTTPSig: steps.NewHTTPSigAuthenticator(sigs),
			},
			TxnToken:      &steps.TxnToken{Verifier: txns},
			Revocations:   revs,
			Authorizer:    policy,
			SignResponses: steps.NewSignResponses(src, 1<<20),
		}),
	})
	if err != nil {
		panic(err)
	}
	srv, _ := proxy.NewServer(proxy.Limits{}, nil, proxy.Listener{Name: "ingress", Listener: ln, Handler: h, TLSConfig: mtls})
	_ = srv.Serve(ctx)
}
