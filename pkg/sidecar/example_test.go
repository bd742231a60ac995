package sidecar_test

import (
	"fmt"

	"github.com/agentauth/agentauth/pkg/sidecar"
)

// A config rendered by a program (the Kubernetes injector, say) is validated like a hand-written one, and errors
// name the field.
func ExampleConfig_Validate() {
	cfg := &sidecar.Config{
		Identity: sidecar.IdentityConfig{Controller: &sidecar.ControllerIdentityConfig{
			Address: "127.0.0.1:8443", Bundle: "/etc/agentauth/bundle.pem"}},
		Egress: &sidecar.EgressConfig{ProxyListen: "127.0.0.1:15001", Routes: []sidecar.RouteConfig{{
			Name: "weather", Host: "weather.tools.local", Upstream: "ftp://10.0.0.7", Modes: []string{"wpt"}}}},
	}
	cfg.SetDefaults()
	fmt.Println(cfg.Validate())
	// Output:
	// invalid sidecar config:
	//   egress.routes[0].upstream: "ftp://10.0.0.7" is not an http:// or https:// URL
}
