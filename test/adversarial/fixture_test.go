//go:build adversarial

package adversarial

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/internal/testproc"
)

// binDir holds the binaries TestMain builds once.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testproc.Main(m, &binDir, "./cmd/controller", "./cmd/sidecar", "./cmd/agentauthctl", "./examples/sampletool"))
}

const (
	agentID  = "spiffe://example.org/agent/planner"
	toolID   = "spiffe://example.org/tool/weather"
	toolHost = "weather.tools.local"
)

// Limits every listener of the fixture's binaries gets: low, so a test reaches them with a few thousand
// connections, and timeouts long enough that idle connections are ended by the caps, not by a timeout, while a
// test holds them.
const (
	maxConns       = 200
	maxConnsPerIP  = 20
	listenerLimits = "{maxConnections: 200, maxConnectionsPerIP: 20, readHeaderTimeout: 60s, readTimeout: 60s, idleTimeout: 60s}"
)

// fixture is a controller, a tool behind an ingress sidecar, and an agent's egress sidecar (explicit proxy and
// transparent listener), all on loopback, the sidecars with credentials and policy from the controller.
type fixture struct {
	dir string
	// Controller.
	controller                                       *testproc.Proc
	adminSocket                                      string
	issuerAddr, xdsAddr, opsAddr, tokenAddr, ssfAddr string
	// Tool and sidecars.
	tool, ingress, egress                       *testproc.Proc
	toolAddr, ingressAddr, ingressAdmin         string
	egressProxy, egressTransparent, egressAdmin string
}

// startFixture starts the whole fixture and waits until every process is ready.
func startFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	f.startController(t)
	f.startPair(t)
	return f
}

// newFixture picks the fixture's directory and addresses; nothing is started yet.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	for _, a := range []*string{&f.issuerAddr, &f.xdsAddr, &f.opsAddr, &f.tokenAddr, &f.ssfAddr, &f.toolAddr,
		&f.ingressAddr, &f.ingressAdmin, &f.egressProxy, &f.egressTransparent, &f.egressAdmin} {
		*a = testproc.FreeAddr(t)
	}
	return f
}

func (f *fixture) startController(t *testing.T) {
	t.Helper()
	f.adminSocket = filepath.Join(f.dir, "admin.sock")
	cfg := f.write(t, "controller.yaml", fmt.Sprintf(`trustDomain: example.org
dataDir: %[1]s
issuer: {listen: %[2]s, limits: %[8]s}
xds: {listen: %[3]s, limits: %[8]s}
ops: {listen: %[4]s, limits: %[8]s}
admin: {socket: %[5]s, limits: {maxConnections: 16}}
tokenService: {listen: %[6]s, limits: %[8]s}
ssf:
  listen: %[7]s
  limits: %[8]s
  rateLimit: {requestsPerSecond: 1000, burst: 1000}
  transmitters: [{issuer: https://idp.example, audience: [agentauth], jwksFile: %[9]s}]
log: {level: info}
`, filepath.Join(f.dir, "data"), f.issuerAddr, f.xdsAddr, f.opsAddr, f.adminSocket, f.tokenAddr, f.ssfAddr,
		listenerLimits, f.transmitterJWKS(t)))
	f.controller = testproc.Start(t, filepath.Join(binDir, "controller"), testproc.Args("-config", cfg))
	testproc.WaitHTTP(t, f.controller, "http://"+f.opsAddr+"/readyz", http.StatusOK)
}

// transmitterJWKS writes the public key of an SSF transmitter whose SETs no test signs: pushes are only answered.
func (f *fixture) transmitterJWKS(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return f.write(t, "ssf-jwks.json", string(raw))
}

func (f *fixture) startPair(t *testing.T) {
	t.Helper()
	f.tool = testproc.Start(t, filepath.Join(binDir, "sampletool"), testproc.Args("-listen", f.toolAddr))
	testproc.WaitHTTP(t, f.tool, "http://"+f.toolAddr+"/whoami", http.StatusOK)
	identity := func(id, name string) string {
		return fmt.Sprintf(`identity:
  controller: {address: %s, bundle: %s, joinToken: %s, stateDir: %s}
controller: {address: %s}
limits: {maxConnections: %d, maxConnectionsPerIP: %d, readHeaderTimeout: 60s, idleTimeout: 60s}
log: {level: info}
`, f.issuerAddr, filepath.Join(f.dir, "data", "bundle.pem"), f.joinToken(t, id), filepath.Join(f.dir, name+"-state"),
			f.xdsAddr, maxConns, maxConnsPerIP)
	}
	f.ingress = testproc.Start(t, filepath.Join(binDir, "sidecar"), testproc.Name("ingress"), testproc.Args("-config",
		f.write(t, "ingress.yaml", identity(toolID, "tool")+fmt.Sprintf(`ingress:
  listen: %s
  backend: http://%s
  mtls: {trustDomains: [example.org]}
  require: [mtls, wpt]
  host: %s
admin: {listen: %s, limits: %s}
`, f.ingressAddr, f.toolAddr, toolHost, f.ingressAdmin, listenerLimits))))
	f.egress = testproc.Start(t, filepath.Join(binDir, "sidecar"), testproc.Name("egress"), testproc.Args("-config",
		f.write(t, "egress.yaml", identity(agentID, "agent")+fmt.Sprintf(`egress:
  proxyListen: %s
  transparentListen: %s
  routes:
    - {name: weather, host: %s, upstream: "https://%s", modes: [mtls, wpt], serverID: "%s"}
admin: {listen: %s, limits: %s}
`, f.egressProxy, f.egressTransparent, toolHost, f.ingressAddr, toolID, f.egressAdmin, listenerLimits))))
	testproc.WaitHTTP(t, f.ingress, "http://"+f.ingressAdmin+"/readyz", http.StatusOK)
	testproc.WaitHTTP(t, f.egress, "http://"+f.egressAdmin+"/readyz", http.StatusOK)
}

func (f *fixture) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ctl runs agentauthctl against the controller's admin socket.
func (f *fixture) ctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "agentauthctl"), append([]string{"-socket", f.adminSocket}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("agentauthctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (f *fixture) joinToken(t *testing.T, id string) string {
	t.Helper()
	var resp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(f.ctl(t, "join-token", "-o", "json", "--spiffe-id", id, "--ttl", "10m")), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Token
}

// adminClient talks HTTP to the controller's admin socket.
func (f *fixture) adminClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", f.adminSocket)
		}}}
}

// controlPlaneChecks are the control plane's own intake, which must answer while a public listener is flooded:
// the admin API, readiness and SSF push (a SET that does not verify is answered 400, after being read).
func (f *fixture) controlPlaneChecks() map[string]func(timeout time.Duration) error {
	expect := func(c *http.Client, req *http.Request, want int) error {
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("%s %s: %d, want %d", req.Method, req.URL, resp.StatusCode, want)
		}
		return nil
	}
	plain := func(timeout time.Duration) *http.Client {
		return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	}
	return map[string]func(time.Duration) error{
		"admin socket": func(d time.Duration) error {
			req, _ := http.NewRequest(http.MethodGet, "http://admin/v1/policies", nil)
			return expect(f.adminClient(d), req, http.StatusOK)
		},
		"controller /readyz": func(d time.Duration) error {
			req, _ := http.NewRequest(http.MethodGet, "http://"+f.opsAddr+"/readyz", nil)
			return expect(plain(d), req, http.StatusOK)
		},
		"SSF push": func(d time.Duration) error {
			req, _ := http.NewRequest(http.MethodPost, "http://"+f.ssfAddr+"/ssf/events", bytes.NewReader([]byte("e30.e30.")))
			req.Header.Set("Content-Type", "application/secevent+jwt")
			return expect(plain(d), req, http.StatusBadRequest)
		},
	}
}

// procStatus reads a process's resident memory (bytes) and open descriptors from /proc.
func procStatus(t *testing.T, pid int) (rss int64, fds int) {
	t.Helper()
	rss, err := residentBytes(pid)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return rss, len(entries)
}

// residentBytes reads a process's resident memory (VmRSS) from /proc/PID/status.
func residentBytes(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
