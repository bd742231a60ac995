package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testca"
)

// signal sends sig to the process.
func (p *proc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(p.Pid(), sig); err != nil {
		t.Fatalf("kill -%v: %v", sig, err)
	}
}

// waitOutput polls the process's output until it holds want (or 30s pass, or the process dies).
func waitOutput(t testing.TB, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.out.String(), want) {
		if p.Exited() {
			t.Fatalf("process exited while waiting for %q:\n%s", want, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output within 30s:\n%s", want, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// getStatus returns the status and body of GET url, or -1 and the error when nothing answers.
func getStatus(c *http.Client, url string) (int, string) {
	resp, err := c.Get(url)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// passthroughSidecar is an egress sidecar with file credentials whose routes (YAML under routes:) go to plain
// HTTP upstreams; it returns the process, its config path, the proxy client and the admin address.
type passthroughSidecar struct {
	proc              *proc
	config, adminAddr string
	client            *http.Client
	files             workloadFiles
	proxyAddr         string
}

func startPassthrough(t *testing.T, routes, extra string) *passthroughSidecar {
	t.Helper()
	ca := testca.New(t, trustDomain)
	s := &passthroughSidecar{files: issue(t, ca, agentID), adminAddr: freeAddr(t), proxyAddr: freeAddr(t)}
	s.config = filepath.Join(s.files.dir, "egress.yaml")
	s.write(t, routes, extra)
	s.proc = start(t, "sidecar", nil, "-config", s.config)
	waitHTTP(t, s.proc, "http://"+s.adminAddr+"/readyz", http.StatusOK)
	proxyURL, _ := url.Parse("http://" + s.proxyAddr)
	s.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	return s
}

// write (re)writes the config with routes and extra top-level YAML.
func (s *passthroughSidecar) write(t *testing.T, routes, extra string) {
	t.Helper()
	writeFile(t, s.files.dir, "egress.yaml", s.files.identityYAML("example.org", "", nil)+fmt.Sprintf(`egress:
  proxyListen: %s
  routes:
%sadmin: {listen: %s}
%s`, s.proxyAddr, routes, s.adminAddr, extra))
}

func passthroughRoute(name, host, upstream string) string {
	return fmt.Sprintf("    - {name: %s, host: %s, upstream: %q, modes: [passthrough]}\n", name, host, upstream)
}

// TestSidecarSIGHUP: a changed route applies on SIGHUP with the new log level; a broken config is refused with
// the reason in the log and the old routes keep working; sections that need a restart are named; the process
// never stops.
func TestSidecarSIGHUP(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "a") }))
	t.Cleanup(a.Close)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "b") }))
	t.Cleanup(b.Close)
	routeA := passthroughRoute("a", "a.local", a.URL)
	s := startPassthrough(t, routeA, "log: {level: info}\n")

	if code, body := getStatus(s.client, "http://b.local/"); code != http.StatusForbidden {
		t.Fatalf("b.local before the reload: %d %s, want 403 (no route)", code, body)
	}
	s.write(t, routeA+passthroughRoute("b", "b.local", b.URL), "log: {level: debug}\nlimits: {maxConnections: 500, maxHeaderBytes: 4096, readHeaderTimeout: 7s}\n")
	s.proc.signal(t, syscall.SIGHUP)
	waitOutput(t, s.proc, `"msg":"SIGHUP: config reloaded"`)
	mustContain(t, s.proc.out.String(), `"log_level":"debug"`)
	// The lower maxHeaderBytes applies at once; only the http.Server's timeout waits for a restart.
	waitOutput(t, s.proc, `"sections":["limits.readHeaderTimeout"]`)
	if code, body := getStatus(s.client, "http://b.local/"); code != http.StatusOK || body != "b" {
		t.Fatalf("b.local after the reload: %d %s", code, body)
	}
	big, err := http.NewRequest(http.MethodGet, "http://b.local/", nil)
	if err != nil {
		t.Fatal(err)
	}
	big.Header.Set("X-Pad", strings.Repeat("p", 5000))
	res, err := s.client.Do(big)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("5000 bytes of headers after maxHeaderBytes was reloaded to 4096: %d, want 431", res.StatusCode)
	}

	t.Run("a broken config keeps the running one", func(t *testing.T) {
		for i, broken := range []string{
			"egress: [not, a, mapping\n",
			"", // replaced below: a route whose mode does not exist
		} {
			if i == 1 {
				s.write(t, passthroughRoute("a", "a.local", a.URL)+"    - {name: c, host: c.local, upstream: \"http://127.0.0.1:1\", modes: [nope]}\n", "")
			} else {
				writeFile(t, s.files.dir, "egress.yaml", broken)
			}
			before := strings.Count(s.proc.out.String(), "config not reloaded")
			s.proc.signal(t, syscall.SIGHUP)
			deadline := time.Now().Add(30 * time.Second)
			for strings.Count(s.proc.out.String(), "config not reloaded") == before {
				if time.Now().After(deadline) || s.proc.Exited() {
					t.Fatalf("broken config %d: no refusal in the log:\n%s", i, s.proc.out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			for host, want := range map[string]string{"a.local": "a", "b.local": "b"} {
				if code, body := getStatus(s.client, "http://"+host+"/"); code != http.StatusOK || body != want {
					t.Fatalf("broken config %d: %s now answers %d %s", i, host, code, body)
				}
			}
		}
		mustContain(t, s.proc.out.String(), "egress.routes[1].modes")
		waitHTTP(t, s.proc, "http://"+s.adminAddr+"/readyz", http.StatusOK)
	})
}

// TestSidecarSIGTERMNotReadyBeforeDrain: after SIGTERM /readyz answers 503 while an in-flight request is still
// being drained, before the process stops serving; the request then completes.
func TestSidecarSIGTERMNotReadyBeforeDrain(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(arrived)
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	t.Cleanup(slow.Close)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before slow.Close, which waits for the handler
	s := startPassthrough(t, passthroughRoute("slow", "slow.local", slow.URL), "shutdownGrace: 60s\n")

	type result struct {
		code int
		body string
	}
	inflight := make(chan result, 1)
	go func() {
		code, body := getStatus(s.client, "http://slow.local/")
		inflight <- result{code, body}
	}()
	<-arrived
	admin := &http.Client{Timeout: 10 * time.Second}
	s.proc.signal(t, syscall.SIGTERM)
	// The signal is handled asynchronously: wait for the first answer that is not 200. It must be a 503 from a
	// process that still serves (the request is held), never a refused connection.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := getStatus(admin, "http://"+s.adminAddr+"/readyz")
		if code == http.StatusServiceUnavailable {
			mustContain(t, body, "stopping")
			break
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("after SIGTERM /readyz answered %d %s, want 503 while draining", code, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case r := <-inflight:
		t.Fatalf("the in-flight request ended (%d %s) before /readyz turned 503", r.code, r.body)
	default:
	}
	unblock()
	if r := <-inflight; r.code != http.StatusOK || r.body != "done" {
		t.Fatalf("in-flight request after SIGTERM: %d %s, want it drained to 200", r.code, r.body)
	}
	waitOutput(t, s.proc, `"msg":"sidecar stopped"`)
}

// TestControllerSignals: SIGHUP reloads the log level, names what needs a restart, keeps running on a broken
// config; SIGTERM turns /readyz away from 200 before the ops endpoint goes.
func TestControllerSignals(t *testing.T) {
	c := startController(t, t.TempDir())
	cfg := readFileT(t, c.configPath)
	cfg = strings.Replace(cfg, "log: {level: debug}", "log: {level: warn}", 1)
	cfg = strings.Replace(cfg, "issuer: {listen: ", "issuer: {svidTTL: 2h, listen: ", 1)
	writeFile(t, c.dir, "controller.yaml", cfg)
	c.proc.signal(t, syscall.SIGHUP)
	waitOutput(t, c.proc, `"msg":"SIGHUP: log level reloaded"`)
	waitOutput(t, c.proc, `"sections":["issuer"]`)
	mustContain(t, c.proc.out.String(), `"log_level":"warn"`)

	writeFile(t, c.dir, "controller.yaml", "trustDomain: [broken\n")
	c.proc.signal(t, syscall.SIGHUP)
	waitOutput(t, c.proc, "config not reloaded")
	waitHTTP(t, c.proc, "http://"+c.opsAddr+"/readyz", http.StatusOK)

	c.proc.signal(t, syscall.SIGTERM)
	ops := &http.Client{Timeout: 10 * time.Second}
	saw503 := false
	for !c.proc.Exited() {
		code, body := getStatus(ops, "http://"+c.opsAddr+"/readyz")
		if code == -1 {
			break
		}
		if code == http.StatusServiceUnavailable {
			saw503 = true
			mustContain(t, body, "stopping")
		}
		if code == http.StatusOK && saw503 {
			t.Fatalf("/readyz went back to 200 after 503")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("observed 503 before the ops endpoint closed: %v", saw503)
}

// TestSidecarWaitsForController: sidecars started while their controller is down wait (/readyz says why) and
// serve as soon as it is up.
func TestSidecarWaitsForController(t *testing.T) {
	c := startController(t, t.TempDir())
	p := startManagedPairWith(t, c, managedOptions{beforeStart: func() { c.proc.stop(t) }})
	waitHTTP(t, p.egress, "http://"+p.egressAdmin+"/readyz", http.StatusServiceUnavailable)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := getStatus(http.DefaultClient, "http://"+p.egressAdmin+"/readyz")
		if strings.Contains(body, "waiting for controller") {
			break
		}
		if time.Now().After(deadline) || p.egress.Exited() {
			t.Fatalf("/readyz never said it waits for the controller: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.start(t)
	waitHTTP(t, p.ingress, "http://"+p.ingressAdmin+"/readyz", http.StatusOK)
	waitHTTP(t, p.egress, "http://"+p.egressAdmin+"/readyz", http.StatusOK)
	c.ctl(t, false, "policy", "apply", writeFile(t, t.TempDir(), "weather.cedar", weatherPolicy))
	waitStatus(t, p, "http://"+toolHost+"/whoami", http.StatusOK)
}

// TestSidecarRestartDuringControllerOutage: sidecars restarted while the controller is down serve the state they
// saved (policy, revocations, credentials), fail-static, instead of refusing everything.
func TestSidecarRestartDuringControllerOutage(t *testing.T) {
	c := startController(t, t.TempDir())
	p := startManagedPair(t, c)
	url := "http://" + toolHost + "/whoami"
	c.ctl(t, false, "policy", "apply", writeFile(t, t.TempDir(), "weather.cedar", weatherPolicy))
	waitStatus(t, p, url, http.StatusOK)

	restart := func(t *testing.T, sc **proc, name, admin string) {
		t.Helper()
		(*sc).stop(t)
		*sc = start(t, "sidecar", nil, "-config", filepath.Join(p.managedDir, name+".yaml"))
		waitHTTP(t, *sc, "http://"+admin+"/readyz", http.StatusOK)
		_, body := getStatus(http.DefaultClient, "http://"+admin+"/readyz")
		mustContain(t, body, "restored at start")
	}

	c.proc.stop(t)
	restart(t, &p.ingress, "ingress", p.ingressAdmin)
	restart(t, &p.egress, "egress", p.egressAdmin)
	if code, _, body := getWhoami(t, p.agent(), url, nil); code != http.StatusOK {
		t.Fatalf("both sidecars restarted during the outage: %d %s, want the saved policy to allow", code, body)
	}

	c.start(t)
	// The tool's sidecar enforces the revocation: wait until it is back (its backoff grew during the outage).
	deadline := time.Now().Add(60 * time.Second)
	for listed := c.ctl(t, false, "sidecars"); !strings.Contains(listed, toolID.String()); listed = c.ctl(t, false, "sidecars") {
		if time.Now().After(deadline) {
			t.Fatalf("the tool's sidecar did not reconnect:\n%s", listed)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// --no-renew: a session revocation alone lets the agent renew and resume, which a loaded machine may do
	// before the first refused call is seen.
	c.ctl(t, false, "revoke", "--kind", "spiffe", "--value", agentID.String(), "--reason", "compromised", "--no-renew")
	body := waitStatus(t, p, url, http.StatusForbidden)
	mustContain(t, body, `"revoked"`)
	c.proc.stop(t)
	restart(t, &p.ingress, "ingress", p.ingressAdmin)
	if code, _, body := getWhoami(t, p.agent(), url, nil); code != http.StatusForbidden || !strings.Contains(body, `"revoked"`) {
		t.Fatalf("ingress restarted during the outage: %d %s, want the saved revocation enforced", code, body)
	}
}
