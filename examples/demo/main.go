// Command demo runs agentauth end to end on loopback, with no Kubernetes: a controller, a sample tool behind an
// ingress sidecar and a sample agent behind an egress sidecar. It shows an allowed call and the identity the tool
// was handed, a forged identity header stripped, a call that skips the sidecar refused, a replayed call refused,
// MCP tool calls decided per tool name, and the agent's access cut off live by a Shared Signals (RISC) event.
//
//	make demo                    (builds the binaries, then: go run ./examples/demo -bin bin)
//	make demo DEMOFLAGS=-keep    (then keeps everything running until Ctrl-C, and prints commands to try on it)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	trustDomain = "example.org"
	agentID     = "spiffe://example.org/agent/planner"
	toolID      = "spiffe://example.org/tool/weather"
	toolHost    = "weather.tools.local"
)

const policy = `// The planner agent may call the weather tool, and of its MCP tools only "forecast".
@id("planner-http-weather")
permit (principal == Agent::"spiffe://example.org/agent/planner", action in Action::"http",
        resource == Tool::"weather.tools.local");

@id("planner-mcp-forecast")
permit (principal == Agent::"spiffe://example.org/agent/planner", action == Action::"tools/call",
        resource == McpTool::"weather.tools.local/forecast");
`

func main() {
	bin := flag.String("bin", "bin", "directory with the controller, sidecar, agentauthctl, sampletool and sampleagent binaries")
	keep := flag.Bool("keep", false, "keep the controller, sidecars and tool running until Ctrl-C, and the work directory (configs, logs) afterwards")
	flag.Parse()
	d := &demo{bin: *bin, keep: *keep}
	// Ctrl-C reaches the children too (one process group); the demo waits for them to stop rather than dying first.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := d.run()
	if err == nil && *keep {
		<-ctx.Done()
		fmt.Println("\nstopping")
	}
	stop()
	d.stopAll()
	if *keep || err != nil {
		fmt.Printf("\nwork directory with configs and logs: %s\n", d.dir)
	} else if d.dir != "" {
		os.RemoveAll(d.dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

type demo struct {
	bin, dir string
	keep     bool
	procs    []*exec.Cmd
	tap      *tap

	socket, issuer, xds, ops, ssf               string
	tool, ingress, ingressAdmin, egress, eAdmin string
}

func (d *demo) run() error {
	var err error
	if d.dir, err = os.MkdirTemp("", "agentauth-demo-"); err != nil {
		return err
	}
	for _, b := range []string{"controller", "sidecar", "agentauthctl", "ssf-transmit", "sampletool", "sampleagent"} {
		if _, err := os.Stat(filepath.Join(d.bin, b)); err != nil {
			return fmt.Errorf("binary %s missing in %s: run `make build` first (make demo does)", b, d.bin)
		}
	}
	d.socket = filepath.Join(d.dir, "admin.sock")
	d.issuer, d.xds, d.ops, d.ssf = freeAddr(), freeAddr(), freeAddr(), freeAddr()
	d.tool, d.ingress, d.ingressAdmin, d.egress, d.eAdmin = freeAddr(), freeAddr(), freeAddr(), freeAddr(), freeAddr()

	title("agentauth demo: an unmodified agent calls an unmodified tool; every call authenticated and authorized")
	if err := d.startController(); err != nil {
		return err
	}
	step("controller up: built-in CA for %s, issuer %s, xDS %s, SSF receiver %s", trustDomain, d.issuer, d.xds, d.ssf)

	pol := d.write("weather.cedar", policy)
	if _, err := d.ctl("policy", "apply", pol); err != nil {
		return err
	}
	step("policy applied: planner may call weather, and of its MCP tools only \"forecast\"")

	if err := d.startTool(); err != nil {
		return err
	}
	// A network tap between the two sidecars stands for anyone who can read the wire; the demo uses it to replay.
	d.tap = newTap("http://" + d.ingress)
	if err := d.startAgentSidecar(); err != nil {
		return err
	}
	step("sidecars attested with one-time join tokens and got SVIDs and WITs from the controller")
	fmt.Printf("   agent:  HTTP_PROXY=http://%s sampleagent http://%s/...\n", d.egress, toolHost)

	title("1. an allowed call")
	out, err := d.agent(nil, "http://"+toolHost+"/whoami")
	if err != nil {
		return err
	}
	seen := toolSaw(out)
	step("GET /whoami → %s", statusOf(out))
	step("the tool was told: workload %s, auth %s", seen["x-agentauth-workload-id"], seen["x-agentauth-auth-method"])

	title("2. a forged identity header is stripped")
	out, err = d.agent([]string{"-H", "X-Agentauth-Workload-Id: spiffe://example.org/admin"}, "http://"+toolHost+"/whoami")
	if err != nil {
		return err
	}
	step("agent sent X-Agentauth-Workload-Id: spiffe://example.org/admin → tool saw %s", toolSaw(out)["x-agentauth-workload-id"])

	title("3. a call that skips the egress sidecar is refused")
	code, body := directCall("http://"+d.ingress+"/whoami", nil)
	step("GET the tool's sidecar directly → %d %s", code, body)

	title("4. a captured request replayed is refused")
	hdr := d.tap.last()
	code, body = directCall("http://"+d.ingress+"/whoami", hdr)
	step("the same WIT + WPT sent again → %d %s", code, body)

	title("5. MCP tool calls are decided per tool name")
	for _, tool := range []string{"forecast", "delete_all_data"} {
		rpc := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q}}`, tool)
		out, err := d.agent([]string{"-X", "POST", "-d", rpc}, "http://"+toolHost+"/mcp")
		if err != nil {
			return err
		}
		step("tools/call %-16s → %s", tool, oneLine(out))
	}

	title("6. a security event from the identity provider cuts the agent off on its next call")
	set, err := d.transmit("-event", "account-disabled", "-sub-uri", agentID, "-jti", "demo-risc-1",
		"-reason", "prompt injection detected")
	if err != nil {
		return err
	}
	step("IdP pushes a signed RISC account-disabled SET for the agent → controller answers %s", set)
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err = d.agent(nil, "http://"+toolHost+"/whoami")
		if err != nil {
			return err
		}
		if strings.HasPrefix(out, "403") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	step("next call: %s", oneLine(out))

	if !d.keep {
		title("done (make demo DEMOFLAGS=-keep keeps it running to try agentauthctl on it)")
		return nil
	}
	return d.printTryIt()
}

// printTryIt prints commands that work against the running demo, from another shell.
func (d *demo) printTryIt() error {
	out, err := d.ctl("revocations", "-o", "json")
	if err != nil {
		return err
	}
	var revs struct {
		Revocations []struct {
			ID string `json:"id"`
		} `json:"revocations"`
	}
	if err := json.Unmarshal([]byte(out), &revs); err != nil || len(revs.Revocations) == 0 {
		return fmt.Errorf("agentauthctl revocations: %q: want the agent's revocation", out)
	}
	bin, err := filepath.Abs(d.bin)
	if err != nil {
		return err
	}
	ctl := fmt.Sprintf("%s --socket %s", filepath.Join(bin, "agentauthctl"), d.socket)
	title("running until Ctrl-C; try, from another shell:")
	fmt.Printf("   %s sidecars\n", ctl)
	fmt.Printf("   %s revocations\n", ctl)
	fmt.Printf("   %s unrevoke %s\n", ctl, revs.Revocations[0].ID)
	fmt.Printf("   HTTP_PROXY=http://%s %s http://%s/whoami\n", d.egress, filepath.Join(bin, "sampleagent"), toolHost)
	fmt.Printf("   %s policy check --live --agent %s --host %s --path /whoami\n", ctl, agentID, toolHost)
	fmt.Printf("   configs and logs: %s\n", d.dir)
	return nil
}

// The demo's identity provider: an SSF transmitter with its own signing key.
const idpIssuer = "https://idp.example.com"

func (d *demo) transmit(args ...string) (string, error) {
	base := []string{"-key", filepath.Join(d.dir, "idp.pem"), "-iss", idpIssuer, "-aud", "https://agentauth.example.org",
		"-url", "http://" + d.ssf + "/ssf/events"}
	out, err := exec.Command(filepath.Join(d.bin, "ssf-transmit"), append(base, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ssf-transmit: %v: %s", err, out)
	}
	return strings.TrimSpace(strings.TrimPrefix(string(out), "HTTP/1.1 ")), nil
}

func (d *demo) startController() error {
	tx := filepath.Join(d.bin, "ssf-transmit")
	if out, err := exec.Command(tx, "-gen-key", filepath.Join(d.dir, "idp.pem")).CombinedOutput(); err != nil {
		return fmt.Errorf("ssf-transmit -gen-key: %v: %s", err, out)
	}
	jwks, err := exec.Command(tx, "-key", filepath.Join(d.dir, "idp.pem"), "-print-jwks").Output()
	if err != nil {
		return fmt.Errorf("ssf-transmit -print-jwks: %v", err)
	}
	cfg := d.write("controller.yaml", fmt.Sprintf(`trustDomain: %s
dataDir: %s
issuer: {listen: %s}
xds: {listen: %s}
admin: {socket: %s}
ops: {listen: %s}
ssf:
  listen: %s
  transmitters:
    - {issuer: %q, audience: [https://agentauth.example.org], jwksFile: %s}
`, trustDomain, filepath.Join(d.dir, "data"), d.issuer, d.xds, d.socket, d.ops, d.ssf, idpIssuer,
		d.write("idp-jwks.json", string(jwks))))
	if err := d.start("controller", "-config", cfg); err != nil {
		return err
	}
	return waitOK("http://" + d.ops + "/readyz")
}

func (d *demo) sidecarIdentity(id, name string) (string, error) {
	out, err := d.ctl("join-token", "-o", "json", "--spiffe-id", id, "--ttl", "5m")
	if err != nil {
		return "", err
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		return "", err
	}
	return fmt.Sprintf(`identity:
  controller:
    address: %s
    bundle: %s
    joinToken: %s
    stateDir: %s
controller:
  address: %s
log: {level: warn}
`, d.issuer, filepath.Join(d.dir, "data", "bundle.pem"), tok.Token, filepath.Join(d.dir, name+"-state"), d.xds), nil
}

func (d *demo) startTool() error {
	if err := d.start("sampletool", "-listen", d.tool); err != nil {
		return err
	}
	id, err := d.sidecarIdentity(toolID, "tool")
	if err != nil {
		return err
	}
	cfg := d.write("ingress.yaml", id+fmt.Sprintf(`ingress:
  listen: %s
  backend: http://%s
  require: [wpt]
  allowCleartextProofs: true   # loopback only, so the demo's tap can capture a request to replay
  host: %s
  mcpPaths: [/mcp]
admin: {listen: %s}
`, d.ingress, d.tool, toolHost, d.ingressAdmin))
	if err := d.start("sidecar", "-config", cfg); err != nil {
		return err
	}
	return waitOK("http://" + d.ingressAdmin + "/readyz")
}

func (d *demo) startAgentSidecar() error {
	id, err := d.sidecarIdentity(agentID, "agent")
	if err != nil {
		return err
	}
	cfg := d.write("egress.yaml", id+fmt.Sprintf(`egress:
  proxyListen: %s
  routes:
    - {name: weather, host: %s, upstream: "%s", modes: [wpt], allowCleartextProofs: true}
admin: {listen: %s}
`, d.egress, toolHost, d.tap.url, d.eAdmin))
	if err := d.start("sidecar", "-config", cfg); err != nil {
		return err
	}
	return waitOK("http://" + d.eAdmin + "/readyz")
}

func (d *demo) start(name string, args ...string) error {
	logf, err := os.Create(filepath.Join(d.dir, fmt.Sprintf("%s-%d.log", name, len(d.procs))))
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(d.bin, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	d.procs = append(d.procs, cmd)
	return nil
}

func (d *demo) stopAll() {
	if d.tap != nil {
		d.tap.srv.Close()
	}
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
		}
	}
}

func (d *demo) ctl(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(d.bin, "agentauthctl"), append([]string{"--socket", d.socket}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("agentauthctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// agent runs the sample agent, which only knows HTTP_PROXY.
func (d *demo) agent(flags []string, url string) (string, error) {
	cmd := exec.Command(filepath.Join(d.bin, "sampleagent"), append(flags, url)...)
	cmd.Env = append(os.Environ(), "HTTP_PROXY=http://"+d.egress, "NO_PROXY=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("sampleagent %s: %v: %s", url, err, out)
	}
	return string(out), nil
}

func (d *demo) write(name, content string) string {
	p := filepath.Join(d.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		panic(err)
	}
	return p
}

// tap forwards to the ingress sidecar and keeps the last request's headers, as an eavesdropper would.
type tap struct {
	url string
	srv *http.Server
	mu  sync.Mutex
	hdr http.Header
}

func newTap(target string) *tap {
	u, _ := url.Parse(target)
	t := &tap{}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	t.url = "http://" + ln.Addr().String()
	t.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		t.hdr = r.Header.Clone()
		t.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = t.srv.Serve(ln) }()
	return t
}

func (t *tap) last() http.Header {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hdr.Clone()
}

func directCall(url string, hdr http.Header) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if hdr != nil {
		req.Header = hdr
	}
	req.Host = toolHost
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func waitOK(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last string
	for ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New(url + " not ready: " + last)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// toolSaw extracts the identity headers from the sample tool's /whoami answer.
func toolSaw(out string) map[string]string {
	_, body, _ := strings.Cut(out, "\n")
	var w struct {
		Headers map[string][]string `json:"headers"`
	}
	_ = json.Unmarshal([]byte(body), &w)
	m := map[string]string{}
	for k, v := range w.Headers {
		m[k] = strings.Join(v, ", ")
	}
	return m
}

func statusOf(out string) string {
	line, _, _ := strings.Cut(out, "\n")
	return line
}

func oneLine(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		b.WriteString(strings.TrimSpace(l))
		b.WriteByte(' ')
	}
	s := strings.TrimSpace(b.String())
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func title(s string) { fmt.Printf("\n== %s\n", s) }

func step(format string, args ...any) { fmt.Printf("   "+format+"\n", args...) }
