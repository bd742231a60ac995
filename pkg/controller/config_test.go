package controller

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/pkg/issuer"
)

const validConfig = `trustDomain: example.org
dataDir: /var/lib/agentauth
issuer: {listen: 127.0.0.1:8443}
xds: {listen: 127.0.0.1:8444}
admin: {socket: /run/agentauth/admin.sock}
ops: {listen: 127.0.0.1:9090}
`

func TestParse(t *testing.T) {
	cfg, err := Parse([]byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer.SVIDTTL != time.Hour || cfg.Issuer.Keys != "file" || cfg.Log.Level != "info" ||
		cfg.Issuer.CATTL != issuer.DefaultCATTL || cfg.Issuer.CAPrepareAt != issuer.DefaultPrepareAt || cfg.Issuer.CAActivateAt != issuer.DefaultActivateAt {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	tests := []struct {
		name, edit, want string
	}{
		{"bad trust domain", "trustDomain: Example Org\n", "trustDomain:"},
		{"bad listen", "xds: {listen: nowhere}\n", "xds.listen"},
		{"ttl too long", "issuer: {listen: 127.0.0.1:8443, svidTTL: 48h}\n", "issuer.svidTTL"},
		{"ttl under a second", "issuer: {listen: 127.0.0.1:8443, svidTTL: 500ms}\n", "issuer.svidTTL: 500ms is outside 1s..24h"},
		{"caTTL under 2 svidTTL", "issuer: {listen: 127.0.0.1:8443, caTTL: 90m}\n", "issuer.caTTL: 1h30m0s is outside 2 × svidTTL (2h0m0s)"},
		{"caTTL over 20 years", "issuer: {listen: 127.0.0.1:8443, caTTL: 200000h}\n", "issuer.caTTL"},
		{"caPrepareAt over 1", "issuer: {listen: 127.0.0.1:8443, caPrepareAt: 1.5}\n", "issuer.caPrepareAt: 1.5 is not a fraction"},
		{"caActivateAt before caPrepareAt", "issuer: {listen: 127.0.0.1:8443, caPrepareAt: 0.6, caActivateAt: 0.5}\n", "issuer.caActivateAt: 0.5 is not strictly between caPrepareAt (0.6) and 1"},
		{"rotation window under svidTTL", "issuer: {listen: 127.0.0.1:8443, caTTL: 10h, caPrepareAt: 0.5, caActivateAt: 0.55}\n", "issuer.caActivateAt: the successor root would be published for 30m0s before it signs, less than svidTTL (1h0m0s)"},
		{"unknown key store", "issuer: {listen: 127.0.0.1:8443, keys: hsm}\n", "issuer.keys"},
		{"ssf without transmitters", "ssf: {listen: 127.0.0.1:8090}\n", "ssf.transmitters"},
		{"transmitter with two key sources", "ssf: {listen: 127.0.0.1:8090, transmitters: [{issuer: i, audience: [a], jwksFile: f, jwksURL: u}]}\n", "exactly one of jwksFile and jwksURL"},
		{"peerIDs without localSocket", "issuer: {listen: 127.0.0.1:8443, peerIDs: [{uid: 1001, spiffeID: 'spiffe://example.org/agent/planner'}]}\n", "issuer.peerIDs: needs issuer.localSocket"},
		{"localSocket without peerIDs", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/agentauth/issuer.sock}\n", "issuer.peerIDs: required with issuer.localSocket"},
		{"relative localSocket", "issuer: {listen: 127.0.0.1:8443, localSocket: issuer.sock, peerIDs: [{uid: 1001, spiffeID: 'spiffe://example.org/a'}]}\n", "issuer.localSocket: \"issuer.sock\" is not an absolute path"},
		{"localSocket too long", "issuer: {listen: 127.0.0.1:8443, localSocket: /" + strings.Repeat("d", 120) + ", peerIDs: [{uid: 1001, spiffeID: 'spiffe://example.org/a'}]}\n", "over the 107 a Unix socket path may have"},
		{"localSocket is the admin socket", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/agentauth/admin.sock, peerIDs: [{uid: 1001, spiffeID: 'spiffe://example.org/a'}]}\n", "is also admin.socket"},
		{"kubernetes without audience", "issuer: {listen: 127.0.0.1:8443, kubernetes: {kubeconfig: /etc/kube.conf}}\n", "issuer.kubernetes.audience: is required"},
		{"kubernetes ID template without the namespace", "issuer: {listen: 127.0.0.1:8443, kubernetes: {audience: agentauth, spiffeIDTemplate: '/sa/{serviceAccount}'}}\n", "issuer.kubernetes.spiffeIDTemplate: \"/sa/{serviceAccount}\" must contain {namespace} exactly once"},
		{"peerID without uid", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/i.sock, peerIDs: [{spiffeID: 'spiffe://example.org/a'}]}\n", "issuer.peerIDs[0].uid: required"},
		{"uid mapped twice", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/i.sock, peerIDs: [{uid: 7, spiffeID: 'spiffe://example.org/a'}, {uid: 7, spiffeID: 'spiffe://example.org/b'}]}\n", "issuer.peerIDs[1].uid: uid 7 is already mapped by issuer.peerIDs[0]"},
		{"negative uid", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/i.sock, peerIDs: [{uid: -1, spiffeID: 'spiffe://example.org/a'}]}\n", "issuer.peerIDs[0].uid: expects a whole number, zero or more, not \"-1\""},
		{"peerID not a SPIFFE ID", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/i.sock, peerIDs: [{uid: 7, spiffeID: 'https://example.org/a'}]}\n", "issuer.peerIDs[0].spiffeID: \"https://example.org/a\""},
		{"peerID in another trust domain", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/i.sock, peerIDs: [{uid: 7, spiffeID: 'spiffe://other.org/a'}]}\n", "is not in trust domain \"example.org\""},
		{"peerID is a trust domain", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/i.sock, peerIDs: [{uid: 7, spiffeID: 'spiffe://example.org'}]}\n", "names a trust domain, not a workload"},
		{"peerID is the controller", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/i.sock, peerIDs: [{uid: 7, spiffeID: 'spiffe://example.org/agentauth/controller'}]}\n", "reserved for the controller itself"},
		{"peerID is the issuer", "issuer: {listen: 127.0.0.1:8443, localSocket: /run/i.sock, peerIDs: [{uid: 7, spiffeID: 'spiffe://example.org/agentauth/issuer'}]}\n", "reserved for the controller itself"},
		{"access token grant without audience", "tokenService: {listen: 127.0.0.1:8445, accessTokens: [{workloads: ['spiffe://example.org/a']}]}\n", "tokenService.accessTokens[0].audience: required"},
		{"access token grant without workloads", "tokenService: {listen: 127.0.0.1:8445, accessTokens: [{audience: api}]}\n", "tokenService.accessTokens[0].workloads: required"},
		{"access token grant for another trust domain", "tokenService: {listen: 127.0.0.1:8445, accessTokens: [{audience: api, workloads: ['spiffe://other.org/a']}]}\n", "tokenService.accessTokens[0].workloads[0]: \"spiffe://other.org/a\" is not in trust domain"},
		{"access token grant for a trust domain", "tokenService: {listen: 127.0.0.1:8445, accessTokens: [{audience: api, workloads: ['spiffe://example.org']}]}\n", "tokenService.accessTokens[0].workloads[0]: \"spiffe://example.org\" names a trust domain"},
		{"access token grant with a bad scope", "tokenService: {listen: 127.0.0.1:8445, accessTokens: [{audience: api, workloads: ['spiffe://example.org/a'], scopes: ['read write']}]}\n", "tokenService.accessTokens[0].scopes[0]: \"read write\" is not a scope token"},
		{"user issuer with a bad scope", "tokenService: {listen: 127.0.0.1:8445, userIssuers: [{issuer: i, audiences: [a], jwksFile: f, scopes: ['']}]}\n", "tokenService.userIssuers[0].scopes[0]: \"\" is not a scope token"},
		{"two user issuers, one without subjectPrefix", "tokenService: {listen: 127.0.0.1:8445, userIssuers: [{issuer: i, audiences: [a], jwksFile: f, subjectPrefix: 'i:'}, {issuer: j, audiences: [a], jwksFile: f}]}\n", "tokenService.userIssuers[1].subjectPrefix: required with several userIssuers"},
		{"two user issuers, same subjectPrefix", "tokenService: {listen: 127.0.0.1:8445, userIssuers: [{issuer: i, audiences: [a], jwksFile: f, subjectPrefix: 'u:'}, {issuer: j, audiences: [a], jwksFile: f, subjectPrefix: 'u:'}]}\n", "tokenService.userIssuers[0].subjectPrefix: \"u:\" begins tokenService.userIssuers[1].subjectPrefix"},
		{"two user issuers, nested subjectPrefix", "tokenService: {listen: 127.0.0.1:8445, userIssuers: [{issuer: i, audiences: [a], jwksFile: f, subjectPrefix: 'corp'}, {issuer: j, audiences: [a], jwksFile: f, subjectPrefix: 'corp2:'}]}\n", "tokenService.userIssuers[0].subjectPrefix: \"corp\" begins"},
		{"token service on an unspecified address without endpoint", "tokenService: {listen: '0.0.0.0:8445'}\n", "tokenService.endpoint: required when listen is \"0.0.0.0:8445\""},
		{"token service on all interfaces without endpoint", "tokenService: {listen: ':8445'}\n", "tokenService.endpoint: required"},
		{"token service endpoint not https", "tokenService: {listen: '0.0.0.0:8445', endpoint: 'http://c.example.org:8445/token'}\n", "tokenService.endpoint: \"http://c.example.org:8445/token\" is not an https:// URL"},
		{"subjectPrefix posing as a workload", "tokenService: {listen: 127.0.0.1:8445, userIssuers: [{issuer: i, audiences: [a], jwksFile: f, subjectPrefix: 'spiffe://example.org/'}]}\n", "would make users look like workloads"},
		{"unknown field", "tls: true\n", "tls: unknown key \"tls\"; valid keys here: admin, audit, dataDir,"},
		{"unknown field, near a known one", "ssf: {listen: 127.0.0.1:8090, transmitters: [{issuer: i, audience: [a], jwksFile: f, pushAuthorisation: x}]}\n",
			"ssf.transmitters[0].pushAuthorisation: unknown key \"pushAuthorisation\"; did you mean \"pushAuthorization\"?"},
		{"WIT key algorithm that cannot be certified", "issuer: {listen: 127.0.0.1:8443, witKeyAlgorithms: [EdDSA, HS256]}\n", "line 6: issuer.witKeyAlgorithms[1]: \"HS256\" cannot be certified as a workload key algorithm; choose from EdDSA, ES256"},
		{"WIT key algorithm twice", "issuer: {listen: 127.0.0.1:8443, witKeyAlgorithms: [EdDSA, ES256, EdDSA]}\n", "issuer.witKeyAlgorithms[2]: \"EdDSA\" is listed twice"},
		{"audit without dir", "audit: {durability: sync}\n", "audit.dir: required"},
		{"audit durability", "audit: {dir: /var/lib/agentauth/audit, durability: never}\n", "audit.durability: \"never\" is not one of sync, batched"},
		{"unknown state backend", "state: {backend: etcd}\n", "state.backend: \"etcd\" is not bbolt or kubernetes"},
		{"kubernetes backend without its section", "state: {backend: kubernetes}\n", "state.kubernetes: required with backend kubernetes"},
		{"kubernetes section with bbolt", "state: {kubernetes: {namespace: agentauth}}\n", "state.kubernetes: only with backend kubernetes"},
		{"state namespace not a DNS label", "state: {backend: kubernetes, kubernetes: {namespace: Agent_Auth}}\n", "state.kubernetes.namespace: \"Agent_Auth\" is not a namespace name"},
		{"state without namespace", "state: {backend: kubernetes, kubernetes: {leaseName: l}}\n", "state.kubernetes.namespace: \"\" is not a namespace name"},
		{"state name too long", "state: {backend: kubernetes, kubernetes: {namespace: a, name: " + strings.Repeat("n", 41) + "}}\n", "state.kubernetes.name: \"" + strings.Repeat("n", 41) + "\" is not a DNS label of at most 40"},
		{"lease name not an object name", "state: {backend: kubernetes, kubernetes: {namespace: a, leaseName: Leader!}}\n", "state.kubernetes.leaseName: \"Leader!\" is not an object name"},
		{"lease shorter than the renew deadline", "state: {backend: kubernetes, kubernetes: {namespace: a, leaseDuration: 5s}}\n", "state.kubernetes.leaseDuration: 5s must exceed renewDeadline (10s)"},
		{"renew deadline within the retry period", "state: {backend: kubernetes, kubernetes: {namespace: a, renewDeadline: 2s}}\n", "state.kubernetes.renewDeadline: 2s must exceed 1.2 × retryPeriod (2s)"},
		{"state timeout under a second", "state: {backend: kubernetes, kubernetes: {namespace: a, timeout: 10ms}}\n", "state.kubernetes.timeout: 10ms is under 1s"},
		{"tpm keys with shared state", "issuer: {listen: 127.0.0.1:8443, keys: tpm}\nstate: {backend: kubernetes, kubernetes: {namespace: a}}\n", "issuer.keys: tpm cannot be shared by replicas"},
		{"unknown policy source", "policy: {source: git}\n", "policy.source: \"git\" is not admin or crd"},
		{"policy kubeconfig without crd", "policy: {kubeconfig: /etc/kube.conf}\n", "policy.kubeconfig: only with source crd"},
		{"validating webhook without crd", "webhook: {listen: 127.0.0.1:9443, dnsNames: [w.example.org], caBundle: {webhookConfiguration: w, validatingWebhookConfiguration: v}, injection: {image: i, controller: {address: 'c:1'}}}\n",
			"webhook.caBundle.validatingWebhookConfiguration: only with policy.source crd"},
		{"wrong case", "trustdomain: example.org\n", "line 7: trustdomain: unknown key \"trustdomain\"; did you mean \"trustDomain\"?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := strings.SplitN(tt.edit, ":", 2)[0]
			var lines []string
			for _, l := range strings.Split(validConfig, "\n") {
				if !strings.HasPrefix(l, key+":") {
					lines = append(lines, l)
				}
			}
			_, err := Parse([]byte(strings.Join(lines, "\n") + tt.edit))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestParseState: bbolt is the default; the kubernetes backend gets the defaults of kubestore and pkg/leader, and
// its problems are reported with their lines.
func TestParseState(t *testing.T) {
	cfg, err := Parse([]byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.State.Backend != BackendBbolt || cfg.State.Kubernetes != nil {
		t.Fatalf("default state %+v; want bbolt", cfg.State)
	}
	cfg, err = Parse([]byte(validConfig + "state: {backend: kubernetes, kubernetes: {namespace: agentauth-system}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := KubernetesStateConfig{Namespace: "agentauth-system", Name: "agentauth", LeaseName: "agentauth-leader",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second, Timeout: 30 * time.Second}
	if got := *cfg.State.Kubernetes; got != want {
		t.Fatalf("defaults %+v; want %+v", got, want)
	}
	_, err = Parse([]byte(validConfig + `state:
  backend: kubernetes
  kubernetes:
    namespace: agentauth
    leaseDuration: 1s
    timeout: 1ms
`))
	var ve *confyaml.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *confyaml.ValidationError, got %v", err)
	}
	lines := []string{"line 11: state.kubernetes.leaseDuration:", "line 12: state.kubernetes.timeout:"}
	if len(ve.Errors) != len(lines) {
		t.Fatalf("got %d problems, want %d: %v", len(ve.Errors), len(lines), err)
	}
	for i, w := range lines {
		if got := ve.Errors[i].Error(); !strings.HasPrefix(got, w) {
			t.Errorf("problem %d is %q, want it to start with %q", i, got, w)
		}
	}
}

// A lifetime of a few seconds is accepted (New warns about it), so tests and demos can watch rotation.
func TestParseShortSVIDTTL(t *testing.T) {
	cfg, err := Parse([]byte(strings.Replace(validConfig, "issuer: {listen: 127.0.0.1:8443}", "issuer: {listen: 127.0.0.1:8443, svidTTL: 5s}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer.SVIDTTL != 5*time.Second {
		t.Fatalf("svidTTL %v", cfg.Issuer.SVIDTTL)
	}
}

// A trust domain opts in to Ed25519 workload keys by listing EdDSA.
func TestParseWITKeyAlgorithms(t *testing.T) {
	cfg, err := Parse([]byte(strings.Replace(validConfig, "issuer: {listen: 127.0.0.1:8443}", "issuer: {listen: 127.0.0.1:8443, witKeyAlgorithms: [EdDSA, ES256]}", 1)))
	if err != nil || !slices.Equal(cfg.Issuer.WITKeyAlgorithms, []string{"EdDSA", "ES256"}) {
		t.Fatalf("witKeyAlgorithms %v, err %v", cfg.Issuer.WITKeyAlgorithms, err)
	}
}

// Every problem is reported at once, each with its field and YAML line.
func TestParseNamesLines(t *testing.T) {
	_, err := Parse([]byte(`trustDomain: example.org
dataDir: /var/lib/agentauth
issuer:
  listen: 127.0.0.1:8443
  svidTTL: 48h
xds: {listen: nowhere}
admin: {socket: /run/agentauth/admin.sock}
ops: {listen: 127.0.0.1:9090}
log:
  level: loud
`))
	var ve *confyaml.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *confyaml.ValidationError, got %v", err)
	}
	want := []string{"line 5: issuer.svidTTL:", "line 6: xds.listen:", "line 10: log.level:"}
	if len(ve.Errors) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(ve.Errors), len(want), err)
	}
	for i, w := range want {
		if got := ve.Errors[i].Error(); !strings.HasPrefix(got, w) {
			t.Errorf("problem %d is %q, want it to start with %q", i, got, w)
		}
	}
	t.Log(err)
}

func TestCheckSubject(t *testing.T) {
	for _, tt := range []struct {
		kind, value string
		ok          bool
	}{
		{"spiffe", "spiffe://example.org/agent/a", true},
		{"spiffe", "https://example.org/a", false},
		{"user_email", "alice@example.com", true},
		{"user_email", "", false},
		{"device", "d1", false},
	} {
		if err := checkSubject(tt.kind, tt.value); (err == nil) != tt.ok {
			t.Errorf("checkSubject(%q, %q) = %v", tt.kind, tt.value, err)
		}
	}
}

// TestConfigLimitsNameTheField: listener limits and rates default per listener, and a bad one is refused with
// its field named.
func TestConfigLimitsNameTheField(t *testing.T) {
	base := "trustDomain: example.org\ndataDir: /d\nissuer: {listen: 127.0.0.1:1}\nops: {listen: 127.0.0.1:2}\nadmin: {socket: /run/a.sock}\n"
	cfg, err := Parse([]byte(base + "xds: {listen: 127.0.0.1:3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.XDS.Limits != defaultXDSLimits || cfg.Issuer.RateLimit != defaultAttestRate {
		t.Fatalf("defaults not applied: %+v %+v", cfg.XDS.Limits, cfg.Issuer.RateLimit)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"xds: {listen: 127.0.0.1:3, limits: {idleTimeout: -1s}}\n", "xds.limits.idleTimeout: must be positive"},
		{"xds: {listen: 127.0.0.1:3, limits: {maxConnections: 10, maxConnectionsPerIP: 20}}\n", "xds.limits.maxConnectionsPerIP: 20 is above xds.limits.maxConnections (10)"},
		{"xds: {listen: 127.0.0.1:3}\ntokenService: {listen: 127.0.0.1:4, rateLimit: {burst: -1}}\n", "tokenService.rateLimit.burst: must be positive"},
	} {
		if _, err := Parse([]byte(base + tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// TestSecretFiles: every SSF secret can come from a file, read when the config is loaded; a missing or empty file,
// or a secret set both inline and in a file, is a config error naming the field and line.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	push, poll, mgmt := write("push", "Bearer push\n"), write("poll", "Bearer poll\r\n"), write("mgmt", "Bearer mgmt")
	empty, missing := write("empty", "\n"), filepath.Join(dir, "missing")
	ssf := func(push, poll, mgmt string) string {
		return fmt.Sprintf(`ssf:
  listen: 127.0.0.1:8090
  transmitters:
    - issuer: https://idp.example.com
      audience: [a]
      jwksFile: /j.json
      %s
      poll: {url: https://idp.example.com/poll, %s}
      stream: {delivery: push, pushEndpoint: https://a.example.org/ssf/events, %s}
`, push, poll, mgmt)
	}
	cfg, err := Parse([]byte(validConfig + ssf("pushAuthorizationFile: "+push, "authorizationFile: "+poll, "authorizationFile: "+mgmt)))
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.SSF.Transmitters[0]
	if got := []string{tr.pushAuthorization(), tr.Poll.authorization(), tr.Stream.authorization()}; !slices.Equal(got, []string{"Bearer push", "Bearer poll", "Bearer mgmt"}) {
		t.Fatalf("secrets read: %q", got)
	}
	if cfg, err := Parse([]byte(validConfig + ssf("pushAuthorization: inline", "authorization: p", "authorization: m"))); err != nil ||
		cfg.SSF.Transmitters[0].pushAuthorization() != "inline" || cfg.SSF.Transmitters[0].Poll.authorization() != "p" {
		t.Fatalf("inline secrets: %v", err)
	}
	for _, tt := range []struct {
		name, push, poll, mgmt, want string
	}{
		{"missing push file", "pushAuthorizationFile: " + missing, "", "",
			"line 13: ssf.transmitters[0].pushAuthorizationFile: open " + missing + ": no such file or directory"},
		{"empty push file", "pushAuthorizationFile: " + empty, "", "",
			"line 13: ssf.transmitters[0].pushAuthorizationFile: " + empty + ": empty"},
		{"missing poll file", "", "authorizationFile: " + missing, "",
			"line 14: ssf.transmitters[0].poll.authorizationFile: open " + missing},
		{"empty stream file", "", "", "authorizationFile: " + empty,
			"line 15: ssf.transmitters[0].stream.authorizationFile: " + empty + ": empty"},
		{"both", "pushAuthorization: x\n      pushAuthorizationFile: " + push, "", "",
			"ssf.transmitters[0].pushAuthorizationFile: set pushAuthorization or pushAuthorizationFile, not both"},
		{"both, stream", "", "", "authorization: x, authorizationFile: " + mgmt,
			"line 15: ssf.transmitters[0].stream.authorizationFile: set authorization or authorizationFile, not both"},
	} {
		_, err := Parse([]byte(validConfig + ssf(tt.push, tt.poll, tt.mgmt)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
}
