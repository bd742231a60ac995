package k8s

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentauth/agentauth/internal/kubetest"
	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/signals"
)

// The binaries the replica tests run, built once by the first test that needs them; TestMain removes them.
var bins struct {
	once    sync.Once
	dir     string
	cleanup func()
	err     error
}

// binary returns the path of a binary of the replica tests (controller, sidecar, agentauthctl, sampletool).
func binary(t testing.TB, name string) string {
	t.Helper()
	bins.once.Do(func() {
		root, err := testproc.ModuleRoot()
		if err != nil {
			bins.err = err
			return
		}
		bins.dir, bins.cleanup, bins.err = testproc.Build(root, "./cmd/controller", "./cmd/sidecar", "./cmd/agentauthctl",
			"./examples/sampletool")
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return filepath.Join(bins.dir, name)
}

// Leader election of the test replicas: short, so a failover takes seconds. The Lease expires leaseDuration after
// its holder's last renewal; the others try every retryPeriod.
const (
	leaseDuration = 6 * time.Second
	renewDeadline = 4 * time.Second
	retryPeriod   = time.Second
)

const (
	replicaTrustDomain = "example.org"
	toolHost           = "weather.tools.local"
	idpIssuer          = "https://idp.example.com"
	ssfAudience        = "https://agentauth.example.org"
	// leaseName is the kubernetes backend's default Lease (its default store name, "agentauth", + "-leader").
	leaseName = "agentauth-leader"
)

// anyAgentPolicy lets every agent of the trust domain call the tool: refusals then come from revocations only.
const anyAgentPolicy = `@id("agents-may-call-weather")
permit (principal, action, resource == Tool::"weather.tools.local");
`

// replicaEnv is the state shared by controller replicas: a namespace of the test's API server, a kubeconfig for
// it, and the identity provider (an SSF transmitter every replica trusts) that pushes SETs.
type replicaEnv struct {
	srv        *kubetest.Server
	dir        string
	namespace  string
	kubeconfig string
	jwks       string
	idpKey     jose.JSONWebKey
	// ssf, when set, is the YAML of the replicas' ssf section after listen; by default they trust the identity
	// provider in ssf.transmitters.
	ssf string
	// extraConfig, when set, is appended to each replica's controller.yaml; %s in it is the replica's directory.
	extraConfig string
}

func newReplicaEnv(t testing.TB, namespace string) *replicaEnv {
	t.Helper()
	srv := kube.Server(t)
	ctx := context.Background()
	if _, err := srv.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Client.CoreV1().Namespaces().Delete(ctx, namespace, metav1.DeleteOptions{}) })
	e := &replicaEnv{srv: srv, dir: t.TempDir(), namespace: namespace}
	e.kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := srv.WriteKubeconfig(e.kubeconfig); err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.idpKey = jose.JSONWebKey{Key: priv, KeyID: "idp-1", Algorithm: string(jose.ES256), Use: "sig"}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{e.idpKey.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	e.jwks = writeTestFile(t, e.dir, "idp-jwks.json", string(jwks))
	return e
}

// replica is one controller process on the shared state.
type replica struct {
	name, dir, socket, configPath         string
	issuerAddr, xdsAddr, opsAddr, ssfAddr string
	proc                                  *testproc.Proc
}

// startReplica starts a controller named name (its identity in the Lease) on e's shared state, and waits until
// it is ready.
func (e *replicaEnv) startReplica(t testing.TB, name string) *replica {
	t.Helper()
	r := &replica{name: name, dir: filepath.Join(e.dir, name), issuerAddr: testproc.FreeAddr(t),
		xdsAddr: testproc.FreeAddr(t), opsAddr: testproc.FreeAddr(t), ssfAddr: testproc.FreeAddr(t)}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	r.socket = filepath.Join(r.dir, "admin.sock")
	r.configPath = writeTestFile(t, r.dir, "controller.yaml", fmt.Sprintf(`trustDomain: %s
dataDir: %s
issuer: {listen: %s}
xds: {listen: %s}
admin: {socket: %s}
ops: {listen: %s}
ssf:
  listen: %s
%s
state:
  backend: kubernetes
  kubernetes:
    namespace: %s
    kubeconfig: %s
    identity: %s
    leaseDuration: %s
    renewDeadline: %s
    retryPeriod: %s
log: {level: debug}
%s`, replicaTrustDomain, filepath.Join(r.dir, "data"), r.issuerAddr, r.xdsAddr, r.socket, r.opsAddr, r.ssfAddr,
		cmp.Or(e.ssf, fmt.Sprintf("  transmitters:\n    - {issuer: %q, audience: [%s], jwksFile: %s}", idpIssuer, ssfAudience, e.jwks)),
		e.namespace, e.kubeconfig, name, leaseDuration, renewDeadline, retryPeriod,
		strings.ReplaceAll(e.extraConfig, "%s", r.dir)))
	r.proc = testproc.Start(t, binary(t, "controller"), testproc.Name("controller "+name),
		testproc.Args("-config", r.configPath), testproc.Grace(30*time.Second))
	testproc.WaitHTTP(t, r.proc, "http://"+r.opsAddr+"/readyz", http.StatusOK)
	return r
}

// bundle is the controller's CA bundle file, which sidecars trust it by.
func (r *replica) bundle() string { return filepath.Join(r.dir, "data", "bundle.pem") }

// ctl runs agentauthctl against the replica's admin socket and returns its output.
func (r *replica) ctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary(t, "agentauthctl"), append([]string{"--socket", r.socket}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("agentauthctl %v on %s: %v\n%s", args, r.name, err, out)
	}
	return string(out)
}

func (r *replica) joinToken(t testing.TB, id string) string {
	t.Helper()
	var resp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(r.ctl(t, "join-token", "-o", "json", "--spiffe-id", id, "--ttl", "10m")), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Token
}

// xdsVersions is the version of each resource type the replica serves (agentauthctl sidecars).
func (r *replica) xdsVersions(t testing.TB) map[string]string {
	t.Helper()
	var resp struct {
		Versions map[string]string `json:"versions"`
	}
	if err := json.Unmarshal([]byte(r.ctl(t, "sidecars", "-o", "json")), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Versions
}

// leader returns the holder of the replicas' Lease ("" if none) and the Lease.
func (e *replicaEnv) leader(t testing.TB) (string, *coordinationv1.Lease) {
	t.Helper()
	l, err := e.srv.Client.CoordinationV1().Leases(e.namespace).Get(context.Background(), leaseName, metav1.GetOptions{})
	if err != nil {
		return "", nil
	}
	if l.Spec.HolderIdentity == nil {
		return "", l
	}
	return *l.Spec.HolderIdentity, l
}

// waitLeader waits until name holds the Lease and returns it.
func (e *replicaEnv) waitLeader(t testing.TB, name string) *coordinationv1.Lease {
	t.Helper()
	var lease *coordinationv1.Lease
	testproc.WaitFor(t, nil, name+" to lead", 50*time.Millisecond, func() (bool, string) {
		var holder string
		holder, lease = e.leader(t)
		return holder == name, "held by " + holder
	})
	return lease
}

// push signs a SET from the identity provider and pushes it to r's SSF receiver; it returns the receiver's status.
func (e *replicaEnv) push(t testing.TB, r *replica, jti, event string, subject signals.SubjectID, members map[string]any) int {
	t.Helper()
	if members == nil {
		members = map[string]any{}
	}
	members["event_timestamp"] = time.Now().Unix()
	members["initiating_entity"] = "admin"
	members["reason_admin"] = map[string]string{"en": "replica test " + jti}
	set, err := signals.Sign(e.idpKey, signals.SETClaims{Issuer: idpIssuer, Audience: []string{ssfAudience}, JTI: jti,
		Subject: subject, Events: map[string]map[string]any{event: members}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+r.ssfAddr+"/ssf/events", strings.NewReader(set))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", signals.MediaTypeSET)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("push to %s: %v", r.name, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Logf("push %s to %s: %d %s", jti, r.name, resp.StatusCode, body)
	}
	return resp.StatusCode
}

// compromise is a RISC credential-compromise event for an agent: its credentials are refused from now on and it
// may not renew them, so the refusal stays.
func compromise(agent string) (string, signals.SubjectID, map[string]any) {
	return signals.EventCredentialCompromise, signals.SubjectID{Format: signals.FormatURI, URI: agent},
		map[string]any{"credential_type": "x509"}
}

// disable is a RISC account-disabled event for an agent: its credentials are withheld (refused whenever they were
// issued, and not renewed) until the revocation is lifted; lifted, the agent's current credentials work again.
func disable(agent string) (string, signals.SubjectID, map[string]any) {
	return signals.EventAccountDisabled, signals.SubjectID{Format: signals.FormatURI, URI: agent}, nil
}

// mesh is a tool behind an ingress sidecar and one egress sidecar per agent, every sidecar attested to and
// configured by one replica.
type mesh struct {
	agents map[string]*http.Client // by SPIFFE ID: the agent's client, through its sidecar
	procs  []*testproc.Proc
	// ingressAdmin is the ingress sidecar's admin address (/metrics, /readyz).
	ingressAdmin string
}

// startMesh starts the tool and the sidecars against r; join tokens come from tokens, which may be another
// replica (they are in the shared state).
func startMesh(t testing.TB, r, tokens *replica, agents ...string) *mesh {
	t.Helper()
	dir := t.TempDir()
	m := &mesh{agents: map[string]*http.Client{}}
	toolAddr, ingressAddr := testproc.FreeAddr(t), testproc.FreeAddr(t)
	tool := testproc.Start(t, binary(t, "sampletool"), testproc.Args("-listen", toolAddr))
	testproc.WaitHTTP(t, tool, "http://"+toolAddr+"/whoami", http.StatusOK)

	identity := func(id, name string) string {
		return fmt.Sprintf(`identity:
  controller:
    address: %s
    bundle: %s
    joinToken: %s
    stateDir: %s
controller:
  address: %s
`, r.issuerAddr, r.bundle(), tokens.joinToken(t, id), filepath.Join(dir, name+"-state"), r.xdsAddr)
	}
	toolID := "spiffe://" + replicaTrustDomain + "/tool/weather"
	m.ingressAdmin = testproc.FreeAddr(t)
	ingress := testproc.Start(t, binary(t, "sidecar"), testproc.Name("ingress sidecar"), testproc.Args("-config",
		writeTestFile(t, dir, "ingress.yaml", identity(toolID, "tool")+fmt.Sprintf(`ingress:
  listen: %s
  backend: http://%s
  mtls: {trustDomains: [%s]}
  require: [mtls, wpt]
  host: %s
admin: {listen: %s}
`, ingressAddr, toolAddr, replicaTrustDomain, toolHost, m.ingressAdmin))))
	m.procs = append(m.procs, tool, ingress)
	for i, agent := range agents {
		proxyAddr, adminAddr := testproc.FreeAddr(t), testproc.FreeAddr(t)
		name := fmt.Sprintf("agent%d", i)
		egress := testproc.Start(t, binary(t, "sidecar"), testproc.Name("egress sidecar of "+agent), testproc.Args("-config",
			writeTestFile(t, dir, name+".yaml", identity(agent, name)+fmt.Sprintf(`egress:
  proxyListen: %s
  routes:
    - name: weather
      host: %s
      upstream: "https://%s"
      modes: [mtls, wpt]
      serverID: "%s"
admin: {listen: %s}
`, proxyAddr, toolHost, ingressAddr, toolID, adminAddr))))
		testproc.WaitHTTP(t, egress, "http://"+adminAddr+"/readyz", http.StatusOK)
		proxyURL, _ := url.Parse("http://" + proxyAddr)
		m.agents[agent] = &http.Client{Timeout: 20 * time.Second,
			Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableCompression: true}}
		m.procs = append(m.procs, egress)
	}
	testproc.WaitHTTP(t, ingress, "http://"+m.ingressAdmin+"/readyz", http.StatusOK)
	return m
}

// call makes the agent's request to the tool and returns the status and body.
func (m *mesh) call(t testing.TB, agent string) (int, string) {
	t.Helper()
	resp, err := m.agents[agent].Get("http://" + toolHost + "/whoami")
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitCall polls the agent's request until cond holds for its answer.
func (m *mesh) waitCall(t testing.TB, agent, what string, cond func(code int, body string) bool) (int, string) {
	t.Helper()
	var code int
	var body string
	testproc.WaitFor(t, nil, what, 20*time.Millisecond, func() (bool, string) {
		code, body = m.call(t, agent)
		return cond(code, body), fmt.Sprintf("%d %s", code, body)
	})
	return code, body
}

func writeTestFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
