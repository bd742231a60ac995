package netns

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/internal/testca"
)

// Ports of the injected-pod layout (pkg/inject's defaults).
const (
	podToolPort    = "8080"  // the tool's own port, on all addresses: callers believe they talk to it directly
	podIngressPort = "15006" // the tool's sidecar (mTLS), where the inbound rule sends callers of podToolPort
	podOutbound    = "15001" // the agent's sidecar's transparent listener
	podExcluded    = "8081"  // an outbound port the agent's rules leave alone
)

// TestInjectedRedirectRules runs the injector's init step, `sidecar redirect install`, in both namespaces: in the
// agent's, outbound TCP goes to the egress sidecar (not the sidecar's own uid, not loopback, not the excluded
// port); in the tool's, inbound TCP to the tool's port goes to its ingress sidecar. The tool listens on every
// address, so only the rules stand between a caller and the tool. `sidecar redirect remove` takes them out.
func TestInjectedRedirectRules(t *testing.T) {
	topo := newTopology(t)
	requireTools(t, "nft")
	startInjectedWorkloads(t, topo)
	toolURL := "http://" + net.JoinHostPort(toolAddr, podToolPort) + "/whoami"

	install := func(ns string, args ...string) {
		t.Helper()
		// Twice: installing again replaces the rules rather than adding a second copy.
		for range 2 {
			sh(t, "ip", append([]string{"netns", "exec", ns, filepath.Join(binDir, "sidecar"), "redirect", "install"}, args...)...)
		}
	}
	install(topo.agentNS, "-sidecar-uid=0", "-outbound-port="+podOutbound, "-exclude-outbound-ports="+podExcluded)
	install(topo.toolNS, "-sidecar-uid=0", "-inbound-ports="+podToolPort, "-inbound-port="+podIngressPort)
	if n := strings.Count(nftRuleset(t, topo.agentNS), "redirect to :"+podOutbound); n != 1 {
		t.Fatalf("%d outbound redirect rules after installing twice, want 1:\n%s", n, nftRuleset(t, topo.agentNS))
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			for _, ns := range []string{topo.agentNS, topo.toolNS} {
				_ = exec.Command("ip", "netns", "exec", ns, filepath.Join(binDir, "sidecar"), "redirect", "remove").Run()
			}
		}
	})

	t.Run("unmodified client reaches the tool through both sidecars", func(t *testing.T) {
		res := curlIn(t, topo.agentNS, nobody, toolURL)
		if res.status != 200 {
			t.Fatalf("want 200 from the tool: %v", res)
		}
		if id := seenHeader(t, res.body, "x-agentauth-workload-id"); id != agentID.String() {
			t.Errorf("tool saw workload id %q, want %s: the call did not come through the ingress sidecar", id, agentID)
		}
	})

	// The sidecar's uid (root here) is not redirected to the egress sidecar, which would have answered 200 as the
	// agent; its plain HTTP reaches the tool's port, whose inbound rule hands it to the ingress sidecar's TLS
	// listener, which refuses it: nobody reaches the tool around its sidecar.
	t.Run("sidecar uid is not looped, and the tool is reached only through its sidecar", func(t *testing.T) {
		res := curlIn(t, topo.agentNS, 0, toolURL)
		if res.status != 400 || !strings.Contains(res.body, "HTTPS server") {
			t.Fatalf("want the ingress sidecar's 400 to plain HTTP on its TLS listener: %v", res)
		}
	})

	t.Run("a port without a route is refused by the egress sidecar", func(t *testing.T) {
		res := curlIn(t, topo.agentNS, nobody, "http://"+net.JoinHostPort(toolAddr, "9")+"/")
		if res.status != 403 {
			t.Fatalf("want the egress sidecar's 403 (no route): %v", res)
		}
	})

	t.Run("excluded port is not redirected", func(t *testing.T) {
		res := curlIn(t, topo.agentNS, nobody, "http://"+net.JoinHostPort(toolAddr, podExcluded)+"/")
		if res.exit != 7 {
			t.Fatalf("want connection refused (curl exit 7) from the tool's namespace, where nothing listens on %s: %v", podExcluded, res)
		}
	})

	t.Run("loopback is not redirected", func(t *testing.T) {
		// The egress sidecar's admin listener answers on loopback: redirected, it would be the transparent
		// listener answering 403 instead.
		res := curlIn(t, topo.agentNS, nobody, "http://"+adminAddr+"/healthz")
		if res.status != 200 {
			t.Fatalf("want the admin listener's 200: %v", res)
		}
	})

	for _, ns := range []string{topo.agentNS, topo.toolNS} {
		sh(t, "ip", "netns", "exec", ns, filepath.Join(binDir, "sidecar"), "redirect", "remove")
		if rs := nftRuleset(t, ns); strings.Contains(rs, "agentauth") {
			t.Errorf("rules left in %s after remove:\n%s", ns, rs)
		}
	}
	removed = true
	// Without the rules the agent's call goes straight to the tool: answered, but by no sidecar.
	res := curlIn(t, topo.agentNS, nobody, toolURL)
	if res.status != 200 || seenHeader(t, res.body, "x-agentauth-workload-id") != "" {
		t.Errorf("after remove: want the tool's own 200 without a verified identity: %v", res)
	}
}

func nftRuleset(t *testing.T, ns string) string {
	t.Helper()
	return sh(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset")
}

// seenHeader is the first value of header h in the sample tool's echo, "" if absent.
func seenHeader(t *testing.T, body, h string) string {
	t.Helper()
	var seen struct {
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatalf("tool answer: %v: %q", err, body)
	}
	if v := seen.Headers[h]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// startInjectedWorkloads lays the namespaces out as the injector lays out pods: the tool on its port on every
// address with its ingress sidecar on podIngressPort, and the agent's sidecar with a transparent listener only.
func startInjectedWorkloads(t *testing.T, topo *topology) {
	t.Helper()
	ca := testca.New(t, trustDomain)
	toolDir, agentDir := t.TempDir(), t.TempDir()
	toolHost := net.JoinHostPort(toolAddr, podToolPort)

	tool := startIn(t, topo.toolNS, "sampletool", "-listen", ":"+podToolPort)
	ingress := startIn(t, topo.toolNS, "sidecar", "-config", writeFile(t, toolDir, "ingress.yaml", identityYAML(ca, toolDir, toolID)+fmt.Sprintf(`ingress:
  listen: :%s
  backend: http://127.0.0.1:%s
  mtls:
    trustDomains: [%s]
  require: [mtls, wpt]
  host: %s
admin:
  listen: %s
shutdownGrace: 2s
`, podIngressPort, podToolPort, trustDomain.Name(), toolHost, adminAddr)))
	egress := startIn(t, topo.agentNS, "sidecar", "-config", writeFile(t, agentDir, "egress.yaml", identityYAML(ca, agentDir, agentID)+fmt.Sprintf(`egress:
  transparentListen: 127.0.0.1:%s
  routes:
    - name: weather
      host: %s
      upstream: https://%s
      modes: [mtls, wpt]
      serverID: %s
admin:
  listen: %s
shutdownGrace: 2s
`, podOutbound, toolHost, toolHost, toolID, adminAddr)))

	waitReady(t, ingress, topo.toolNS, "http://"+adminAddr+"/readyz")
	waitReady(t, egress, topo.agentNS, "http://"+adminAddr+"/readyz")
	waitReady(t, tool, topo.toolNS, "http://127.0.0.1:"+podToolPort+"/whoami")
}
