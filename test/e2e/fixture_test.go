package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
)

var (
	trustDomain = spiffeid.RequireTrustDomainFromString("example.org")
	agentID     = spiffeid.RequireFromString("spiffe://example.org/agent/planner")
	toolID      = spiffeid.RequireFromString("spiffe://example.org/tool/weather")
)

const toolHost = "weather.tools.local"

// workloadFiles are one workload's credential files, as an operator (or the issuer) would lay them out.
type workloadFiles struct {
	dir, cert, key, bundlePEM, bundleJSON, wit, witKey string
}

// issue writes an X.509-SVID, a WIT and the trust bundle for id into a fresh directory.
func issue(t testing.TB, ca *testca.CA, id spiffeid.ID, opts ...testca.SVIDOption) workloadFiles {
	t.Helper()
	dir := t.TempDir()
	w := workloadFiles{dir: dir}
	w.cert, w.key = ca.WriteSVIDFiles(dir, ca.CreateX509SVID(id, opts...))
	w.bundlePEM = ca.WriteBundleFile(dir)
	w.bundleJSON = ca.WriteJWTBundleFile(dir)
	w.wit, w.witKey = ca.WriteWITFiles(dir, ca.CreateWITSVID(id, opts...))
	return w
}

// identityYAML is the identity section for w, trusting w's own trust domain td and, if set, the other
// workload's (whose files are in other).
func (w workloadFiles) identityYAML(td string, otherTD string, other *workloadFiles) string {
	extra := ""
	if other != nil && otherTD != td {
		extra = fmt.Sprintf("      %s: [%s, %s]\n", otherTD, other.bundlePEM, other.bundleJSON)
	}
	return fmt.Sprintf(`identity:
  files:
    cert: %s
    key: %s
    bundles:
      %s: [%s, %s]
%s    wit: %s
    witKey: %s
    reloadInterval: 200ms
`, w.cert, w.key, td, w.bundlePEM, w.bundleJSON, extra, w.wit, w.witKey)
}

// pair is a tool behind an ingress sidecar and an egress sidecar for the agent, on loopback.
type pair struct {
	toolAddr, grpcAddr, ingressAddr, egressProxy, egressAdmin, ingressAdmin string
	egress, ingress, tool                                                   *proc
	agentFiles, toolFiles                                                   workloadFiles
	// managedDir holds a controller-managed pair's configs and state directories (<name>-state).
	managedDir string
}

type pairOptions struct {
	egressModes  string // YAML list, e.g. "[mtls, wpt]"
	ingressReq   string // YAML list
	tls          bool   // ingress terminates TLS
	ingressExtra string // appended under ingress:
	toolArgs     []string
	agentCA      *testca.CA // defaults to the tool's CA
	agentOpts    []testca.SVIDOption
	routeExtra   string // appended to the egress route
	// mitm, when set, sits between the egress and the ingress sidecar (plain HTTP): it gets the ingress base URL
	// and returns the handler that forwards to it, so a test can capture or tamper with what crosses the network.
	mitm func(ingress string) http.Handler
	// backendH2C serves the tool's gRPC port (sampletool -grpc) through the ingress, with h2c to the backend.
	grpc bool
}

func startPair(t *testing.T, ca *testca.CA, o pairOptions) *pair {
	t.Helper()
	p := &pair{
		toolAddr: freeAddr(t), ingressAddr: freeAddr(t), egressProxy: freeAddr(t),
		egressAdmin: freeAddr(t), ingressAdmin: freeAddr(t),
	}
	agentCA := o.agentCA
	if agentCA == nil {
		agentCA = ca
	}
	p.toolFiles = issue(t, ca, toolID)
	p.agentFiles = issue(t, agentCA, o.agentID(agentCA), o.agentOpts...)

	toolArgs := append([]string{"-listen", p.toolAddr}, o.toolArgs...)
	backend := "http://" + p.toolAddr
	backendH2C := ""
	if o.grpc {
		p.grpcAddr = freeAddr(t)
		toolArgs = append(toolArgs, "-grpc", p.grpcAddr)
		backend, backendH2C = "http://"+p.grpcAddr, "  backendH2C: true\n"
	}
	p.tool = start(t, "sampletool", nil, toolArgs...)
	waitHTTP(t, p.tool, "http://"+p.toolAddr+"/whoami", http.StatusOK)

	// Without TLS the proofs travel in cleartext, which the sidecars accept only when told to (here: loopback,
	// and the tests that tamper with requests on the way need to read them).
	scheme, mtlsBlock, routeCleartext := "http", "  allowCleartextProofs: true\n", "      allowCleartextProofs: true\n"
	if o.tls {
		scheme = "https"
		mtlsBlock, routeCleartext = "  mtls:\n    trustDomains: [example.org]\n", ""
	}
	agentTD := agentCA.TrustDomain().Name()
	ingressCfg := p.toolFiles.identityYAML("example.org", "", nil) + fmt.Sprintf(`ingress:
  listen: %s
  backend: %s
%s%s  require: %s
  host: %s
%sadmin:
  listen: %s
log:
  level: debug
`, p.ingressAddr, backend, backendH2C, mtlsBlock, o.ingressReq, toolHost, o.ingressExtra, p.ingressAdmin)
	p.ingress = start(t, "sidecar", nil, "-config", writeFile(t, p.toolFiles.dir, "ingress.yaml", ingressCfg))

	upstream := scheme + "://" + p.ingressAddr
	if o.mitm != nil {
		m := httptest.NewServer(o.mitm(upstream))
		t.Cleanup(m.Close)
		upstream = m.URL
	}
	egressCfg := p.agentFiles.identityYAML(agentTD, "example.org", &p.toolFiles) + fmt.Sprintf(`egress:
  proxyListen: %s
  routes:
    - name: weather
      host: %s
      upstream: %s
      modes: %s
      serverID: %s
%sadmin:
  listen: %s
log:
  level: debug
`, p.egressProxy, toolHost, upstream, o.egressModes, toolID, routeCleartext+o.routeExtra, p.egressAdmin)
	p.egress = start(t, "sidecar", nil, "-config", writeFile(t, p.agentFiles.dir, "egress.yaml", egressCfg))

	waitHTTP(t, p.ingress, "http://"+p.ingressAdmin+"/readyz", http.StatusOK)
	waitHTTP(t, p.egress, "http://"+p.egressAdmin+"/readyz", http.StatusOK)
	return p
}

// agent is the unmodified agent's HTTP client: it only knows the proxy address (HTTP_PROXY).
func (p *pair) agent() *http.Client {
	proxyURL, _ := url.Parse("http://" + p.egressProxy)
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableCompression: true},
		Timeout:   20 * time.Second,
	}
}

// direct is a client that skips the egress sidecar and talks to the ingress sidecar itself.
func (p *pair) direct(tlsOn bool) (*http.Client, string) {
	if !tlsOn {
		return &http.Client{Timeout: 10 * time.Second}, "http://" + p.ingressAddr
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the attacker does not care who the server is
	}}, "https://" + p.ingressAddr
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

func (o pairOptions) agentID(ca *testca.CA) spiffeid.ID {
	return spiffeid.RequireFromPath(ca.TrustDomain(), agentID.Path())
}
