package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"

	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Route tables pick the most specific route: host:port, then host, then the catch-all; the longest path prefix
// within each.
func ExampleRouteTable_Lookup() {
	tool, _ := url.Parse("https://tool-sidecar.example:8443")
	routes, err := proxy.NewRouteTable(
		&proxy.Route{Name: "tool", Match: proxy.Match{Host: "tool.example"}, Upstream: tool, Modes: wire.ModeMTLS | wire.ModeWPT},
		&proxy.Route{Name: "tool-admin", Match: proxy.Match{Host: "tool.example", PathPrefix: "/admin"}, Upstream: tool,
			Modes: wire.ModeMTLS | wire.ModeHTTPSig},
		&proxy.Route{Name: "internet", Match: proxy.Match{Host: proxy.AnyHost}, Modes: wire.ModePassthrough},
	)
	if err != nil {
		panic(err)
	}
	for _, dst := range [][2]string{{"tool.example:80", "/search"}, {"tool.example", "/admin/users"}, {"pypi.org", "/simple"}} {
		rt, _ := routes.Lookup(dst[0], dst[1])
		fmt.Println(dst[0]+dst[1], "→", rt.Name, rt.Modes)
	}
	// Output:
	// tool.example:80/search → tool wpt+mtls
	// tool.example/admin/users → tool-admin httpsig+mtls
	// pypi.org/simple → internet passthrough
}

// An ingress sidecar: the standard chain in front of a tool on loopback, served until ctx ends.
func ExampleNewIngressHandler() {
	var (
		ctx   context.Context         // the sidecar's lifetime
		authn proxy.Authenticator     // e.g. a pkg/wpt verifier adapter
		rev   proxy.RevocationChecker // e.g. the xDS revocation list
		authz proxy.Authorizer        // e.g. the pkg/policy evaluator
		ln    net.Listener            // bound by the caller
		mtls  *tls.Config             // from pkg/mtls: our SVID, peer verification, rotation per handshake
	)
	tool, _ := url.Parse("http://127.0.0.1:8080")
	routes, _ := proxy.NewRouteTable(&proxy.Route{Name: "tool", Match: proxy.Match{Host: "tool.example"}, Upstream: tool,
		Modes: wire.ModeMTLS | wire.ModeWPT})
	h, err := proxy.NewIngressHandler(proxy.IngressConfig{
		Options: proxy.Options{Self: "spiffe://example.org/tool"},
		Routes:  routes,
		Steps:   proxy.StandardChain(map[wire.Mode]proxy.Authenticator{wire.ModeWPT: authn}, rev, authz),
	})
	if err != nil {
		panic(err)
	}
	srv, _ := proxy.NewServer(proxy.Limits{}, nil, proxy.Listener{Name: "ingress", Listener: ln, Handler: h, TLSConfig: mtls})
	_ = srv.Serve(ctx)
}
