package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// controllerEnv is a running controller with its admin socket and the files a sidecar needs to trust it.
type controllerEnv struct {
	dir, socket, issuerAddr, xdsAddr, opsAddr, configPath string
	proc                                                  *proc
}

func startController(t *testing.T, dir string, extra ...string) *controllerEnv {
	t.Helper()
	return startControllerIssuer(t, dir, "", extra...)
}

// startControllerIssuer starts a controller whose issuer mapping gets issuerExtra (", key: value" pairs).
func startControllerIssuer(t *testing.T, dir, issuerExtra string, extra ...string) *controllerEnv {
	t.Helper()
	c := &controllerEnv{dir: dir, socket: filepath.Join(dir, "admin.sock"),
		issuerAddr: freeAddr(t), xdsAddr: freeAddr(t), opsAddr: freeAddr(t)}
	c.configPath = writeFile(t, dir, "controller.yaml", fmt.Sprintf(`trustDomain: example.org
dataDir: %s
issuer: {listen: %s%s}
xds: {listen: %s}
admin: {socket: %s}
ops: {listen: %s}
log: {level: debug}
%s`, filepath.Join(dir, "data"), c.issuerAddr, issuerExtra, c.xdsAddr, c.socket, c.opsAddr, strings.Join(extra, "")))
	c.start(t)
	return c
}

func (c *controllerEnv) start(t *testing.T) {
	t.Helper()
	c.proc = start(t, "controller", nil, "-config", c.configPath)
	waitHTTP(t, c.proc, "http://"+c.opsAddr+"/readyz", http.StatusOK)
}

func (c *controllerEnv) bundle() string { return filepath.Join(c.dir, "data", "bundle.pem") }

// ctl runs agentauthctl against the controller and returns its output; a failure fails the test unless wantErr.
func (c *controllerEnv) ctl(t *testing.T, wantErr bool, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "agentauthctl"), append([]string{"--socket", c.socket}, args...)...)
	out, err := cmd.CombinedOutput()
	if (err != nil) != wantErr {
		t.Fatalf("agentauthctl %v: err=%v\n%s", args, err, out)
	}
	return string(out)
}

func (c *controllerEnv) joinToken(t *testing.T, id string) string {
	t.Helper()
	var resp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(c.ctl(t, false, "join-token", "-o", "json", "--spiffe-id", id, "--ttl", "10m")), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Token
}

const weatherPolicy = `@id("planner-may-call-weather")
permit (
  principal == Agent::"spiffe://example.org/agent/planner",
  action,
  resource == Tool::"weather.tools.local"
);
`

// managedOptions add YAML to the managed pair's configs: under the egress route, under egress:, under ingress:,
// and under each side's identity: (agentIdentity, toolIdentity). modes replaces the route's modes and the
// ingress's require (default "mtls, wpt"). With agentLocalSocket, the agent's sidecar attests on that issuer socket
// instead of with a join token. With beforeStart, it runs once the join tokens are minted and before the sidecars
// start, and the sidecars are not waited for.
type managedOptions struct {
	route, egress, ingress, agentLocalSocket string
	agentIdentity, toolIdentity, modes       string
	beforeStart                              func()
}

// startManagedPair starts a tool and an agent whose sidecars get credentials and policy from the controller.
func startManagedPair(t *testing.T, c *controllerEnv) *pair {
	t.Helper()
	return startManagedPairWith(t, c, managedOptions{})
}

func startManagedPairWith(t *testing.T, c *controllerEnv, o managedOptions) *pair {
	t.Helper()
	p := &pair{toolAddr: freeAddr(t), ingressAddr: freeAddr(t), egressProxy: freeAddr(t),
		egressAdmin: freeAddr(t), ingressAdmin: freeAddr(t)}
	dir := t.TempDir()
	p.managedDir = dir
	p.tool = start(t, "sampletool", nil, "-listen", p.toolAddr)
	waitHTTP(t, p.tool, "http://"+p.toolAddr+"/whoami", http.StatusOK)

	modes := o.modes
	if modes == "" {
		modes = "mtls, wpt"
	}
	identity := func(id, name string) string {
		attest := "joinToken: " + c.joinToken(t, id)
		if id == agentID.String() && o.agentLocalSocket != "" {
			attest = "localSocket: " + o.agentLocalSocket
		}
		extra := o.toolIdentity
		if id == agentID.String() {
			extra = o.agentIdentity
		}
		return fmt.Sprintf(`identity:
%s  controller:
    address: %s
    bundle: %s
    %s
    stateDir: %s
controller:
  address: %s
`, extra, c.issuerAddr, c.bundle(), attest, filepath.Join(dir, name+"-state"), c.xdsAddr)
	}
	ingressCfg := writeFile(t, dir, "ingress.yaml", identity(toolID.String(), "tool")+
		fmt.Sprintf(`ingress:
  listen: %s
  backend: http://%s
  mtls: {trustDomains: [example.org]}
  require: [%s]
  host: %s
  mcpPaths: [/mcp]
%sadmin: {listen: %s}
log: {level: debug}
`, p.ingressAddr, p.toolAddr, modes, toolHost, o.ingress, p.ingressAdmin))
	egressCfg := writeFile(t, dir, "egress.yaml", identity(agentID.String(), "agent")+
		fmt.Sprintf(`egress:
  proxyListen: %s
  routes:
    - name: weather
      host: %s
      upstream: "https://%s"
      modes: [%s]
      serverID: "%s"
%s%sadmin: {listen: %s}
log: {level: debug}
`, p.egressProxy, toolHost, p.ingressAddr, modes, toolID, o.route, o.egress, p.egressAdmin))
	if o.beforeStart != nil {
		o.beforeStart()
	}
	p.ingress = start(t, "sidecar", nil, "-config", ingressCfg)
	p.egress = start(t, "sidecar", nil, "-config", egressCfg)
	if o.beforeStart != nil {
		return p
	}
	waitHTTP(t, p.ingress, "http://"+p.ingressAdmin+"/readyz", http.StatusOK)
	waitHTTP(t, p.egress, "http://"+p.egressAdmin+"/readyz", http.StatusOK)
	return p
}

// waitStatus retries GET url through the agent until it answers want (propagation is asynchronous).
func waitStatus(t *testing.T, p *pair, url string, want int) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var code int
	var body string
	for time.Now().Before(deadline) {
		code, _, body = getWhoami(t, p.agent(), url, nil)
		if code == want {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("GET %s: still %d %s, want %d", url, code, body, want)
	return ""
}

// TestControllerManagedSidecars: credentials from the built-in issuer (join tokens), policy and revocations over
// xDS, fail-static while the controller is down, and state intact across a controller restart.
func TestControllerManagedSidecars(t *testing.T) {
	c := startController(t, t.TempDir())
	policyFile := writeFile(t, t.TempDir(), "weather.cedar", weatherPolicy)
	p := startManagedPair(t, c)
	url := "http://" + toolHost + "/whoami"

	// Default deny until a policy arrives; then the call is allowed and the tool sees the agent.
	if code, _, body := getWhoami(t, p.agent(), url, nil); code != http.StatusForbidden || !strings.Contains(body, "policy_denied") {
		t.Fatalf("before any policy: %d %s, want 403 policy_denied", code, body)
	}
	c.ctl(t, false, "policy", "apply", policyFile)
	waitStatus(t, p, url, http.StatusOK)

	t.Run("bad policy is refused with its line and changes nothing", func(t *testing.T) {
		bad := writeFile(t, t.TempDir(), "bad.cedar", "@id(\"x\")\npermit (principal, action, resource)\nwhen { context.nope == 1 };\n")
		out := c.ctl(t, true, "policy", "apply", bad)
		if !strings.Contains(out, "bad.cedar:") {
			t.Fatalf("error does not name the file and line: %s", out)
		}
		if code, _, body := getWhoami(t, p.agent(), url, nil); code != http.StatusOK {
			t.Fatalf("after a refused policy: %d %s", code, body)
		}
	})

	t.Run("sidecars are listed SYNCED on every type", func(t *testing.T) {
		// One row per sidecar, one SYNCED per resource type (Policy, Revocation, RiskState, TrustBundle).
		synced := func(out string) bool {
			for _, id := range []string{agentID.String(), toolID.String()} {
				i := strings.Index(out, id)
				if i < 0 {
					return false
				}
				line, _, _ := strings.Cut(out[i:], "\n")
				if strings.Count(line, "SYNCED") != 4 {
					return false
				}
			}
			return true
		}
		deadline := time.Now().Add(30 * time.Second)
		out := c.ctl(t, false, "sidecars")
		for !synced(out) {
			if time.Now().After(deadline) {
				t.Fatalf("sidecars are not both SYNCED:\n%s", out)
			}
			time.Sleep(100 * time.Millisecond)
			out = c.ctl(t, false, "sidecars")
		}
		t.Logf("agentauthctl sidecars:\n%s", out)
		if js := c.ctl(t, false, "sidecars", "-o", "json"); !strings.Contains(js, `"status": "SYNCED"`) {
			t.Fatalf("-o json lacks the status:\n%s", js)
		}
	})

	t.Run("identities lists what the issuer issued and the used join tokens", func(t *testing.T) {
		out := c.ctl(t, false, "identities")
		t.Logf("agentauthctl identities:\n%s", out)
		for _, want := range []string{agentID.String(), toolID.String(), "used 20"} {
			if !strings.Contains(out, want) {
				t.Fatalf("identities output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("policy diff and policy check against the live set", func(t *testing.T) {
		if out := c.ctl(t, false, "policy", "diff", "--exit-code", policyFile); strings.TrimSpace(out) != "" {
			t.Fatalf("the applied file differs from the live set:\n%s", out)
		}
		changed := writeFile(t, t.TempDir(), "weather.cedar", weatherPolicy+"\n// reviewed\n")
		if out := c.ctl(t, true, "policy", "diff", "--exit-code", changed); !strings.Contains(out, "+// reviewed") {
			t.Fatalf("diff of a changed file:\n%s", out)
		}
		allow := []string{"policy", "check", "--live", "--agent", agentID.String(), "--host", toolHost, "--path", "/whoami"}
		if out := c.ctl(t, false, allow...); !strings.HasPrefix(out, "ALLOW") {
			t.Fatalf("live check: %s", out)
		}
		deny := []string{"policy", "check", "--live", "--agent", "spiffe://example.org/agent/intruder", "--host", toolHost}
		if out := c.ctl(t, true, deny...); !strings.HasPrefix(out, "DENY") {
			t.Fatalf("live check of an agent no policy permits: %s", out)
		}
	})

	t.Run("revocation is enforced on the next requests", func(t *testing.T) {
		out := c.ctl(t, false, "revoke", "-o", "json", "--kind", "spiffe", "--value", agentID.String(), "--reason", "agent compromised")
		var rev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(out), &rev); err != nil || rev.ID == "" {
			t.Fatalf("revoke output %q: %v", out, err)
		}
		body := waitStatus(t, p, url, http.StatusForbidden)
		if !strings.Contains(body, `"revoked"`) || !strings.Contains(body, rev.ID) {
			t.Fatalf("refusal %s does not name the revocation %s", body, rev.ID)
		}
		check := []string{"policy", "check", "--live", "--agent", agentID.String(), "--host", toolHost, "--path", "/whoami"}
		if out := c.ctl(t, true, check...); !strings.Contains(out, "DENY (revoked)") || !strings.Contains(out, rev.ID) {
			t.Fatalf("live check of a revoked agent: %s", out)
		}
		c.ctl(t, false, "unrevoke", rev.ID)
		waitStatus(t, p, url, http.StatusOK)
	})

	t.Run("fail-static while the controller is down, then reconnect after restart", func(t *testing.T) {
		c.proc.stop(t)
		// The sidecars keep enforcing their last state: the call is still allowed by the policy they hold.
		if code, _, body := getWhoami(t, p.agent(), url, nil); code != http.StatusOK {
			t.Fatalf("controller down: %d %s", code, body)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := http.Get("http://" + p.ingressAdmin + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode == http.StatusOK && strings.Contains(body, "fail-static") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz never reported fail-static: %d %s", resp.StatusCode, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.start(t)
		// State survived the restart (the policy is still served), and the sidecars reconnect.
		if out := c.ctl(t, false, "policy", "list", "-o", "json"); !strings.Contains(out, "planner-may-call-weather") {
			t.Fatalf("policy lost across restart:\n%s", out)
		}
		// Both must be back: the tool's sidecar enforces the revocation below, and each reconnects after its own
		// backoff (full jitter, growing while the controller was down).
		deadline = time.Now().Add(60 * time.Second)
		for {
			listed := c.ctl(t, false, "sidecars")
			if strings.Contains(listed, agentID.String()) && strings.Contains(listed, toolID.String()) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sidecars did not reconnect to the restarted controller:\n%s", listed)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.ctl(t, false, "revoke", "--kind", "spiffe", "--value", agentID.String(), "--reason", "after restart")
		waitStatus(t, p, url, http.StatusForbidden)
	})
}
