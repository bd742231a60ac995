package netns

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
)

var (
	trustDomain = spiffeid.RequireTrustDomainFromString("example.org")
	agentID     = spiffeid.RequireFromString("spiffe://example.org/agent/planner")
	toolID      = spiffeid.RequireFromString("spiffe://example.org/tool/weather")
)

// Ports inside the test's own namespaces, so fixed values cannot clash with anything else on the machine.
const (
	toolPort        = "8080" // where the agent believes the tool is: nothing listens there
	ingressPort     = "8443" // the tool's ingress sidecar (mTLS)
	backendAddr     = "127.0.0.1:8080"
	transparentPort = "15001" // the egress sidecar's transparent listener
	adminAddr       = "127.0.0.1:15000"
	nobody          = 65534 // the agent's uid; the sidecars run as root, which the redirect rule excludes
)

// TestTransparentInterception: an unmodified curl with no proxy settings calls the tool's address; the redirect
// rule hands the connection to the egress sidecar's transparent listener, which recovers the original
// destination, picks the route, and calls the tool's ingress sidecar over mTLS with a WIT and WPT. The tool
// sees the agent's verified SPIFFE ID. Run once with an iptables rule and once with an nftables rule.
func TestTransparentInterception(t *testing.T) {
	topo := newTopology(t)
	startWorkloads(t, topo)

	toolURL := "http://" + net.JoinHostPort(toolAddr, toolPort) + "/whoami"
	for _, r := range redirectors(transparentPort) {
		ok := t.Run(r.name, func(t *testing.T) {
			requireTools(t, r.tool)
			r.apply(t, topo.agentNS)

			t.Run("agent call is authenticated", func(t *testing.T) {
				res := curlIn(t, topo.agentNS, nobody, "-H", "X-Agentauth-Workload-Id: spiffe://example.org/admin", toolURL)
				if res.status != 200 {
					t.Fatalf("want 200 from the tool: %v", res)
				}
				var seen struct {
					Path    string              `json:"path"`
					Headers map[string][]string `json:"headers"`
				}
				if err := json.Unmarshal([]byte(res.body), &seen); err != nil {
					t.Fatalf("tool answer: %v: %q", err, res.body)
				}
				if got := seen.Headers["x-agentauth-workload-id"]; len(got) != 1 || got[0] != agentID.String() {
					t.Errorf("tool saw workload id %v, want exactly [%s] (the agent's forged copy must be stripped)", got, agentID)
				}
				if got := seen.Headers["x-agentauth-auth-method"]; len(got) != 1 || got[0] != "wit-wpt" {
					t.Errorf("tool saw auth method %v, want [wit-wpt]", got)
				}
				if xfcc := strings.Join(seen.Headers["x-forwarded-client-cert"], ","); !strings.Contains(xfcc, "URI="+agentID.String()) {
					t.Errorf("XFCC %q does not name the agent: the call did not arrive over the agent's mTLS", xfcc)
				}
				if seen.Path != "/whoami" {
					t.Errorf("tool saw path %q", seen.Path)
				}
			})

			t.Run("destination without a route is refused", func(t *testing.T) {
				dst := net.JoinHostPort(toolAddr, "9")
				res := curlIn(t, topo.agentNS, nobody, "http://"+dst+"/whoami")
				if res.status != 403 {
					t.Fatalf("want 403 from the egress sidecar: %v", res)
				}
				var refusal struct {
					Error       string `json:"error"`
					Description string `json:"error_description"`
				}
				if err := json.Unmarshal([]byte(res.body), &refusal); err != nil {
					t.Fatalf("refusal is not JSON: %v: %q", err, res.body)
				}
				if refusal.Error != "policy_denied" || !strings.Contains(refusal.Description, "no route for "+dst) {
					t.Errorf("refusal %+v, want policy_denied naming %s", refusal, dst)
				}
			})

			// With no Host header only the kernel knows where the agent was going: the refusal naming that
			// destination shows the sidecar read it with SO_ORIGINAL_DST.
			t.Run("destination comes from SO_ORIGINAL_DST", func(t *testing.T) {
				dst := net.JoinHostPort(toolAddr, "9")
				res := curlIn(t, topo.agentNS, nobody, "--http1.0", "-H", "Host:", "http://"+dst+"/whoami")
				if res.status != 403 || !strings.Contains(res.body, "no route for "+dst+"/whoami") {
					t.Fatalf("want 403 naming %s, the original destination of a request without Host: %v", dst, res)
				}
				// And a routed request without Host reaches the tool: the original destination is forwarded as Host.
				if res := curlIn(t, topo.agentNS, nobody, "--http1.0", "-H", "Host:", toolURL); res.status != 200 {
					t.Fatalf("routed request without Host: want 200: %v", res)
				}
			})

			// The sidecar's uid is excluded from the rule, which is what keeps its upstream connection from looping
			// back into itself; it also shows the 200 above came through the sidecar: nothing listens on toolPort.
			t.Run("sidecar uid is not redirected", func(t *testing.T) {
				if res := curlIn(t, topo.agentNS, 0, toolURL); res.exit != 7 {
					t.Fatalf("want connection refused (curl exit 7) for root, whose traffic is not redirected: %v", res)
				}
			})
		})
		if !ok {
			continue
		}
		// The rule is gone, so the agent's call is no longer intercepted.
		if res := curlIn(t, topo.agentNS, nobody, toolURL); res.exit != 7 {
			t.Errorf("after removing the %s rule the agent's call should be refused by the kernel (curl exit 7): %v", r.name, res)
		}
	}
}

// startWorkloads starts the tool and its ingress sidecar in the tool namespace and the agent's egress sidecar
// (transparent listener only) in the agent namespace, with credentials from a test CA, and waits until all
// three answer.
func startWorkloads(t *testing.T, topo *topology) {
	t.Helper()
	ca := testca.New(t, trustDomain)
	toolDir, agentDir := t.TempDir(), t.TempDir()
	ingressAddr := net.JoinHostPort(toolAddr, ingressPort)

	tool := startIn(t, topo.toolNS, "sampletool", "-listen", backendAddr)
	ingressCfg := identityYAML(ca, toolDir, toolID) + fmt.Sprintf(`ingress:
  listen: %s
  backend: http://%s
  mtls:
    trustDomains: [%s]
  require: [mtls, wpt]
  host: %s
admin:
  listen: %s
log:
  level: debug
shutdownGrace: 2s
`, ingressAddr, backendAddr, trustDomain.Name(), net.JoinHostPort(toolAddr, toolPort), adminAddr)
	ingress := startIn(t, topo.toolNS, "sidecar", "-config", writeFile(t, toolDir, "ingress.yaml", ingressCfg))

	egressCfg := identityYAML(ca, agentDir, agentID) + fmt.Sprintf(`egress:
  transparentListen: 127.0.0.1:%s
  routes:
    - name: weather
      host: %s
      upstream: https://%s
      modes: [mtls, wpt]
      serverID: %s
admin:
  listen: %s
log:
  level: debug
shutdownGrace: 2s
`, transparentPort, net.JoinHostPort(toolAddr, toolPort), ingressAddr, toolID, adminAddr)
	egress := startIn(t, topo.agentNS, "sidecar", "-config", writeFile(t, agentDir, "egress.yaml", egressCfg))

	waitReady(t, ingress, topo.toolNS, "http://"+adminAddr+"/readyz")
	waitReady(t, egress, topo.agentNS, "http://"+adminAddr+"/readyz")
	waitReady(t, tool, topo.toolNS, "http://"+backendAddr+"/whoami")
}

// identityYAML writes id's X.509-SVID, WIT and the trust bundle into dir and returns the identity section.
func identityYAML(ca *testca.CA, dir string, id spiffeid.ID) string {
	cert, key := ca.WriteSVIDFiles(dir, ca.CreateX509SVID(id))
	wit, witKey := ca.WriteWITFiles(dir, ca.CreateWITSVID(id))
	return fmt.Sprintf(`identity:
  files:
    cert: %s
    key: %s
    bundles:
      %s: [%s, %s]
    wit: %s
    witKey: %s
`, cert, key, ca.TrustDomain().Name(), ca.WriteBundleFile(dir), ca.WriteJWTBundleFile(dir), wit, witKey)
}
