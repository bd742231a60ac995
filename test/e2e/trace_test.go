package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/audit"
)

var relayID = spiffeid.RequireFromString("spiffe://example.org/tool/relay")

const relayHost = "relay.tools.local"

// threeHopPolicy: the planner may call the relay, the relay may call the weather tool, except its /admin.
const threeHopPolicy = `@id("planner-may-call-relay")
permit (principal == Agent::"spiffe://example.org/agent/planner", action, resource == Tool::"relay.tools.local");

@id("relay-may-call-weather")
permit (principal == Agent::"spiffe://example.org/tool/relay", action, resource == Tool::"weather.tools.local");

@id("weather-admin-forbidden")
forbid (principal, action, resource == Tool::"weather.tools.local")
when { context.path == "/admin" };
`

// startRelayApp serves a tool that is itself an agent: each request to /relay/PATH becomes a call to the weather
// tool's PATH through its own egress sidecar (proxy), forwarding the Txn-Token and the trace context it was given,
// as an instrumented application does. It answers with the weather tool's status and body.
func startRelayApp(t *testing.T, proxy string) string {
	t.Helper()
	proxyURL, _ := url.Parse("http://" + proxy)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 20 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, ok := strings.CutPrefix(r.URL.Path, "/relay")
		if !ok {
			http.NotFound(w, r)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+toolHost+path, nil)
		for _, h := range []string{"Txn-Token", "Traceparent", "Tracestate"} {
			if v := r.Header.Get(h); v != "" {
				req.Header.Set(h, v)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// controllerMetric reads one series of the controller's /metrics (-1 when absent).
func controllerMetric(t *testing.T, c *controllerEnv, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + c.opsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// TestThreeHopTrace: an agent calls, for a user, a tool that is itself an agent (one sidecar with ingress and
// egress), which calls a second tool. One call is denied by the second tool's sidecar; a SET revokes the user midway, and
// the next call is refused. Every sidecar and the controller keep an audit log; the controller witnesses the
// sidecars' checkpoints; `agentauthctl audit trace` merges the four logs, verifies each, and gives the task's
// chain in order, from the agent's traceparent.
func TestThreeHopTrace(t *testing.T) {
	dir := t.TempDir()
	transmit := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(binDir, "ssf-transmit"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ssf-transmit %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	setKey := filepath.Join(dir, "idp.pem")
	transmit("-gen-key", setKey)
	setJWKS := writeFile(t, dir, "idp-jwks.json", transmit("-key", setKey, "-print-jwks"))
	idp := newTestIdP(t, dir, idpIssuer, "")
	tokenAddr, ssfAddr := freeAddr(t), freeAddr(t)
	audits := map[string]string{}
	for _, n := range []string{"planner", "relay", "weather", "controller"} {
		audits[n] = filepath.Join(dir, "audit-"+n)
	}
	c := startController(t, dir, fmt.Sprintf(`tokenService:
  listen: %s
  userIssuers:
    - {issuer: %q, audiences: [agentauth], jwksFile: %s, scopes: [weather.read]}
ssf:
  listen: %s
  transmitters:
    - {issuer: %q, audience: [https://agentauth.example.org], jwksFile: %s}
audit: {dir: %s, checkpointInterval: 1s}
`, tokenAddr, idp.issuer, idp.jwksFile, ssfAddr, idpIssuer, setJWKS, audits["controller"]))
	c.ctl(t, false, "policy", "apply", writeFile(t, dir, "three-hop.cedar", threeHopPolicy))

	identity := func(id spiffeid.ID, name string) string {
		return fmt.Sprintf(`identity:
  controller:
    address: %s
    bundle: %s
    joinToken: %s
    stateDir: %s
controller:
  address: %s
audit: {dir: %s, checkpointInterval: 1s}
log: {level: debug}
`, c.issuerAddr, c.bundle(), c.joinToken(t, id.String()), filepath.Join(dir, name+"-state"), c.xdsAddr, audits[name])
	}
	txnIngress := fmt.Sprintf("  txnToken: {issuer: %q, jwksURL: %q}\n", "https://"+tokenAddr+"/token", "https://"+tokenAddr+"/jwks")
	route := func(name, host, upstream string, server spiffeid.ID) string {
		return fmt.Sprintf(`    - name: %s
      host: %s
      upstream: "https://%s"
      modes: [mtls, wpt]
      serverID: "%s"
      txnToken: {scope: weather.read}
`, name, host, upstream, server)
	}
	egress := func(proxy, routes string) string {
		return fmt.Sprintf("egress:\n  proxyListen: %s\n  tokenService: {endpoint: %q}\n  routes:\n%s", proxy,
			"https://"+tokenAddr+"/token", routes)
	}
	ingress := func(listen, backend, host string) string {
		return fmt.Sprintf(`ingress:
  listen: %s
  backend: http://%s
  mtls: {trustDomains: [example.org]}
  require: [mtls, wpt]
  host: %s
%s`, listen, backend, host, txnIngress)
	}

	// The second tool: the sample tool behind its ingress sidecar.
	weatherApp, weatherIngress, weatherAdmin := freeAddr(t), freeAddr(t), freeAddr(t)
	wt := start(t, "sampletool", nil, "-listen", weatherApp)
	waitHTTP(t, wt, "http://"+weatherApp+"/whoami", http.StatusOK)
	weather := start(t, "sidecar", nil, "-config", writeFile(t, dir, "weather.yaml", identity(toolID, "weather")+
		ingress(weatherIngress, weatherApp, toolHost)+fmt.Sprintf("admin: {listen: %s}\n", weatherAdmin)))
	// The relay: a tool that is itself an agent, one sidecar with ingress and egress.
	relayIngress, relayProxy, relayAdmin := freeAddr(t), freeAddr(t), freeAddr(t)
	relayApp := startRelayApp(t, relayProxy)
	relay := start(t, "sidecar", nil, "-config", writeFile(t, dir, "relay.yaml", identity(relayID, "relay")+
		ingress(relayIngress, relayApp, relayHost)+egress(relayProxy, route("weather", toolHost, weatherIngress, toolID))+
		fmt.Sprintf("admin: {listen: %s}\n", relayAdmin)))
	// The agent's egress sidecar.
	plannerProxy, plannerAdmin := freeAddr(t), freeAddr(t)
	planner := start(t, "sidecar", nil, "-config", writeFile(t, dir, "planner.yaml", identity(agentID, "planner")+
		egress(plannerProxy, route("relay", relayHost, relayIngress, relayID))+fmt.Sprintf("admin: {listen: %s}\n", plannerAdmin)))
	for _, s := range []struct {
		p     *proc
		admin string
	}{{weather, weatherAdmin}, {relay, relayAdmin}, {planner, plannerAdmin}} {
		waitHTTP(t, s.p, "http://"+s.admin+"/readyz", http.StatusOK)
	}

	// The task: one traceparent, calls for alice.
	const taskTP = "00-5a1e0c9d2b7f4e3a8c6d1f0b9e2a4c7d-1f2e3d4c5b6a7980-01"
	agentClient := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: plannerProxy})},
		Timeout: 30 * time.Second}
	call := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+relayHost+"/relay"+path, nil)
		req.Header.Set("Authorization", "Bearer "+idp.token(t, "alice@example.com", time.Now().Add(-time.Second)))
		req.Header.Set("Traceparent", taskTP)
		resp, err := agentClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	if code, body := call("/whoami"); code != http.StatusOK || !strings.Contains(body, taskTP) || !strings.Contains(body, relayID.String()) {
		t.Fatalf("three hops for alice: %d %s (the weather tool must see the relay as caller and the task's trace)", code, body)
	}
	if code, body := call("/admin"); code != http.StatusForbidden || !strings.Contains(body, "policy_denied") {
		t.Fatalf("the relay calling the weather tool's /admin: %d %s, want 403 policy_denied", code, body)
	}
	const jti = "e2e-three-hop-session-revoked"
	if out := transmit("-key", setKey, "-iss", idpIssuer, "-aud", "https://agentauth.example.org", "-url",
		"http://"+ssfAddr+"/ssf/events", "-event", "session-revoked", "-jti", jti, "-reason", "phished",
		"-sub-email", "alice@example.com"); !strings.Contains(out, "202") {
		t.Fatalf("SET push: %s", out)
	}
	waitRefused(t, func() (int, string) { return call("/whoami") }, "revoked")

	// The controller has witnessed each sidecar's checkpoints (sent every second).
	witnessed := func() (n int) {
		for _, id := range []string{agentID.String(), relayID.String(), toolID.String()} {
			if controllerMetric(t, c, `agentauth_audit_witness_last_checkpoint_timestamp_seconds{sidecar="`+id+`"}`) > 0 {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); witnessed() < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("the controller witnessed checkpoints of %d sidecars, want all 3", witnessed())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := controllerMetric(t, c, `agentauth_audit_witness_alarms_total{kind="fork"}`); n != 0 {
		t.Fatalf("%v fork alarms on honest logs", n)
	}
	// Clean stops sign a last checkpoint over every record. The controller's log may end in records after its last
	// checkpoint, which verify accepts as not yet witnessed.
	planner.stop(t)
	relay.stop(t)
	weather.stop(t)

	args := []string{"audit", "trace", taskTP, audits["planner"], audits["relay"], audits["weather"],
		"--log", audits["controller"], "--bundle", c.bundle()}
	table, err := exec.Command(filepath.Join(binDir, "agentauthctl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("audit trace: %v\n%s", err, table)
	}
	t.Logf("agentauthctl %s:\n%s", strings.Join(args, " "), table)
	out, err := exec.Command(filepath.Join(binDir, "agentauthctl"), append(args, "-o", "json")...).Output()
	if err != nil {
		t.Fatalf("audit trace -o json: %v\n%s", err, out)
	}
	var res struct {
		Logs []struct {
			Origin   string `json:"origin"`
			Verified bool   `json:"verified"`
		} `json:"logs"`
		Chain audit.Chain `json:"chain"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	for _, l := range res.Logs {
		if !l.Verified {
			t.Errorf("log %s does not verify", l.Origin)
		}
	}
	ch := res.Chain
	if ch.Agent != agentID.String() || len(ch.Subjects) != 1 || ch.Subjects[0] != "alice@example.com" || len(ch.Txns) < 1 {
		t.Fatalf("chain of agent %q for %v, txns %v", ch.Agent, ch.Subjects, ch.Txns)
	}
	// The expected chain, in order; each entry matches the next step that fits, others may come between (the
	// retries while the revocation spread).
	type want struct {
		what  string
		match func(log string, r *audit.Record) bool
	}
	dec := func(log, direction, agent, path, decision string) want {
		return want{fmt.Sprintf("%s %s by %s %s: %s", log, direction, agent, path, decision), func(l string, r *audit.Record) bool {
			return strings.HasSuffix(l, log) && r.Kind == audit.KindDecision && r.Direction == direction &&
				r.Agent == agent && r.Path == path && r.Decision == decision
		}}
	}
	plannerA, relayA, weatherA := agentID.String(), relayID.String(), "example.org/tool/weather"
	wants := []want{
		dec("agent/planner", "egress", plannerA, "/relay/whoami", audit.Allow),
		dec("tool/relay", "ingress", plannerA, "/relay/whoami", audit.Allow),
		dec("tool/relay", "egress", relayA, "/whoami", audit.Allow),
		dec(weatherA, "ingress", relayA, "/whoami", audit.Allow),
		dec("agent/planner", "egress", plannerA, "/relay/admin", audit.Allow),
		dec("tool/relay", "ingress", plannerA, "/relay/admin", audit.Allow),
		dec("tool/relay", "egress", relayA, "/admin", audit.Allow),
		{"the weather tool's sidecar denies /admin by weather-admin-forbidden", func(l string, r *audit.Record) bool {
			return strings.HasSuffix(l, weatherA) && r.Direction == "ingress" && r.Agent == relayA && r.Path == "/admin" &&
				r.Decision == audit.Deny && r.Reason == "policy_denied" && strings.Join(r.PolicyIDs, ",") == "weather-admin-forbidden"
		}},
		// The controller records the SET once it is applied, and the sidecars as they take the revocation up:
		// these two in either order.
		{"the controller applies the SET", func(l string, r *audit.Record) bool {
			return strings.HasSuffix(l, "agentauth/controller") && r.Action == "set-revoke" && r.SETJti == jti &&
				r.Subject == "alice@example.com"
		}},
		{"a sidecar revokes alice for the SET", func(_ string, r *audit.Record) bool {
			return r.Kind == audit.KindRemediation && r.Action == "revoke" && r.SETJti == jti && r.Subject == "alice@example.com"
		}},
		{"a call for alice refused as revoked", func(_ string, r *audit.Record) bool {
			return r.Kind == audit.KindDecision && r.Decision == audit.Deny && r.Reason == "revoked"
		}},
	}
	i := 0
	for _, s := range ch.Steps {
		if i >= len(wants) {
			break
		}
		switch {
		case wants[i].match(s.Log, s.Record):
			i++
		case strings.HasPrefix(wants[i].what, "the controller applies") && wants[i+1].match(s.Log, s.Record):
			wants[i], wants[i+1] = wants[i+1], wants[i]
			i++
		}
	}
	if i < len(wants) {
		t.Fatalf("the chain lacks, in order, %q (found the %d before it); chain:\n%s", wants[i].what, i, table)
	}
	// Nothing of the chain is from before the task or about another trace.
	for _, s := range ch.Steps {
		if r := s.Record; r.Kind == audit.KindDecision && audit.TraceID(r.Traceparent) != audit.TraceID(taskTP) {
			t.Errorf("a step of another trace: %+v", r)
		}
	}

	// Whoever controls the planner's host throws its log away and starts afresh (same key): the controller,
	// which witnessed the old log, catches it at the next checkpoint.
	ents, err := os.ReadDir(audits["planner"])
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "audit.key" && e.Name() != audit.KeyCertFile {
			if err := os.Remove(filepath.Join(audits["planner"], e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	planner = start(t, "sidecar", nil, "-config", filepath.Join(dir, "planner.yaml"))
	waitHTTP(t, planner, "http://"+plannerAdmin+"/readyz", http.StatusOK)
	call("/whoami") // a record in the new log
	alarms := func() float64 {
		return controllerMetric(t, c, `agentauth_audit_witness_alarms_total{kind="fork"}`) +
			controllerMetric(t, c, `agentauth_audit_witness_alarms_total{kind="shrink"}`)
	}
	for deadline := time.Now().Add(30 * time.Second); alarms() < 1; {
		if time.Now().After(deadline) {
			t.Fatalf("no witness alarm for the planner's rewritten log:\n%s", planner.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(c.proc.out.String(), "AUDIT LOG TAMPERED") {
		t.Error("the controller's log has no alarm line")
	}
	planner.stop(t)
	c.proc.stop(t)
	var alarmed []audit.Record
	for _, r := range readAudit(t, audits["controller"]) {
		if strings.HasPrefix(r.Action, "witness-alarm-") {
			alarmed = append(alarmed, r)
		}
	}
	if len(alarmed) != 1 || alarmed[0].Agent != agentID.String() {
		t.Fatalf("witness alarm records in the controller's log: %+v", alarmed)
	}
}
