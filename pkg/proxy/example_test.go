package proxy_test

import (
	"fmt"
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
