package controller_test

import (
	"fmt"

	"github.com/agentauth/agentauth/pkg/controller"
)

// Parse reads the controller's YAML; every problem is reported with its field.
func ExampleParse() {
	_, err := controller.Parse([]byte(`trustDomain: example.org
dataDir: /var/lib/agentauth
issuer: {listen: 127.0.0.1:8443, svidTTL: 72h}
xds: {listen: 127.0.0.1:8444}
admin: {socket: /run/agentauth/admin.sock}
ops: {listen: 127.0.0.1:9090}
`))
	fmt.Println(err)
	// Output:
	// invalid controller config:
	//   line 3: issuer.svidTTL: 72h0m0s is outside 1s..24h (credentials are meant to be short-lived)
}
