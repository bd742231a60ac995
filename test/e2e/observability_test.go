package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exposition is one scrape of /metrics: the families its # TYPE lines declare, and every sample.
type exposition struct {
	families map[string]bool
	samples  map[string]float64 // name{labels} as exposed → value
}

func scrape(t *testing.T, url string) exposition {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	e := exposition{families: map[string]bool{}, samples: map[string]float64{}}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			e.families[strings.Fields(f)[0]] = true
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		e.samples[line[:i]] = v
	}
	return e
}

// value sums the samples of name whose labels include every one of labels (`k="v"`).
func (e exposition) value(name string, labels ...string) float64 {
	var sum float64
	for s, v := range e.samples {
		n, rest, _ := strings.Cut(s, "{")
		if n != name {
			continue
		}
		if !slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(rest, l) }) {
			sum += v
		}
	}
	return sum
}

// readmeMetrics parses the table of README.md's "## Metrics" section: metric name → where (sidecar, controller,
// both).
func readmeMetrics(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("README.md has no ## Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `(agentauth_[a-z0-9_]+)` \\| [a-z]+ \\|[^|]*\\| (sidecar|controller|both) \\|")
	out := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		out[m[1]] = m[2]
	}
	if len(out) < 10 {
		t.Fatalf("README's metric table has %d rows; the pattern no longer matches it", len(out))
	}
	return out
}

// TestObservability runs a controller with its token service and SSF receiver and a managed sidecar pair, makes
// each event a controller metric counts happen and watches the metric move, then checks that the README's
// metric table and what both binaries expose agree, the ingress route label, /config_dump and /logging.
func TestObservability(t *testing.T) {
	_, e, key, ssfAddr, transmit := startWithTransmitter(t)
	p, c := e.p, e.c
	ctrlMetrics := "http://" + c.opsAddr + "/metrics"
	push := func(wantErr bool, iss, jti string, subject ...string) {
		t.Helper()
		transmit(wantErr, append([]string{"-key", key, "-iss", iss, "-aud", "https://agentauth.example.org",
			"-url", "http://" + ssfAddr + "/ssf/events", "-event", "session-revoked", "-jti", jti, "-reason", "test"}, subject...)...)
	}
	// moves waits until the controller's series reaches at least want (ACKs arrive asynchronously).
	moves := func(what string, want float64, name string, labels ...string) {
		t.Helper()
		var got float64
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if got = scrape(t, ctrlMetrics).value(name, labels...); got >= want {
				return
			}
		}
		t.Errorf("%s: %s%v = %v, want at least %v", what, name, labels, got, want)
	}

	before := scrape(t, ctrlMetrics)
	if v := before.value("agentauth_issuer_svids_total", `attestation="join_token"`, `result="issued"`); v < 2 {
		t.Errorf("two sidecars attested with join tokens, agentauth_issuer_svids_total says %v", v)
	}
	if v := before.value("agentauth_xds_sidecar_streams"); v != 2 {
		t.Errorf("agentauth_xds_sidecar_streams = %v, want 2", v)
	}
	now := float64(time.Now().Unix())
	if v := before.value("agentauth_ca_expiry_timestamp_seconds"); v < now {
		t.Errorf("agentauth_ca_expiry_timestamp_seconds = %v, before now", v)
	}
	if v := before.value("agentauth_trust_bundle_expiry_timestamp_seconds", `trust_domain="example.org"`); v < now {
		t.Errorf("agentauth_trust_bundle_expiry_timestamp_seconds = %v, before now", v)
	}

	if code, _, body := e.callFor(t, "/whoami", "alice@example.com"); code != http.StatusOK {
		t.Fatalf("call for alice: %d %s", code, body)
	}
	moves("a token exchange", before.value("agentauth_token_exchanges_total", `result="issued"`)+1,
		"agentauth_token_exchanges_total", `result="issued"`)
	getWhoami(t, p.agent(), "http://"+toolHost+"/whoami", map[string]string{"Authorization": "Bearer not-a-token"})
	moves("a refused token exchange", 1, "agentauth_token_exchanges_total", `result="refused"`, `reason="malformed"`)

	push(false, idpIssuer, "obs-accepted-1", "-sub-email", "nobody@example.com")
	moves("an accepted SET", 1, "agentauth_ssf_sets_total", `result="accepted"`)
	push(true, "https://evil.example.com", "obs-refused-1", "-sub-email", "nobody@example.com")
	moves("a refused SET", 1, "agentauth_ssf_sets_total", `result="refused"`, `reason="untrusted_issuer"`)
	moves("the SET's revocation", before.value("agentauth_xds_resources_served", `type="Revocation"`)+1,
		"agentauth_xds_resources_served", `type="Revocation"`)
	c.ctl(t, false, "revoke", "--kind", "spiffe", "--value", "spiffe://example.org/agent/other", "--reason", "obs test")
	moves("an operator's revocation", before.value("agentauth_xds_resources_served", `type="Revocation"`)+2,
		"agentauth_xds_resources_served", `type="Revocation"`)
	moves("both sidecars ACK both revocations", before.value("agentauth_xds_acks_total", `type="Revocation"`)+4,
		"agentauth_xds_acks_total", `type="Revocation"`)

	// The agent's session revoked: its sidecar renews its credentials.
	push(false, idpIssuer, "obs-agent-session-1", "-sub-uri", agentID.String())
	moves("a renewal", before.value("agentauth_issuer_svids_total", `attestation="renew"`, `result="issued"`)+1,
		"agentauth_issuer_svids_total", `attestation="renew"`, `result="issued"`)

	t.Run("README metric table matches /metrics", func(t *testing.T) {
		exposed := map[string]map[string]bool{
			"controller": scrape(t, ctrlMetrics).families,
			"sidecar":    scrape(t, "http://"+p.egressAdmin+"/metrics").families,
		}
		for f := range scrape(t, "http://"+p.ingressAdmin+"/metrics").families {
			exposed["sidecar"][f] = true
		}
		documented := readmeMetrics(t)
		// Series of a configuration this test does not run: a transmitter stream would reach out to the
		// transmitter's metadata, which is not on loopback; pkg/controller's ssf_test reads it.
		// The audit series exist only with audit: configured; TestAuditFullDisk reads them. The witness's
		// last-checkpoint series appear with a sidecar's first checkpoint (pkg/audit/witness tests them).
		notHere := map[string]bool{"agentauth_ssf_stream_verified": true,
			"agentauth_audit_records_total": true, "agentauth_audit_unaudited_total": true,
			"agentauth_audit_witness_last_checkpoint_timestamp_seconds": true}
		for name, where := range documented {
			for _, bin := range []string{"sidecar", "controller"} {
				if (where == bin || where == "both") && !exposed[bin][name] && !notHere[name] {
					t.Errorf("README lists %s for the %s; its /metrics has no such family", name, bin)
				}
			}
		}
		for bin, families := range exposed {
			for name := range families {
				if !strings.HasPrefix(name, "agentauth_") {
					continue
				}
				if where, ok := documented[name]; !ok || (where != bin && where != "both") {
					t.Errorf("the %s exposes %s; README's metric table does not list it for the %s", bin, name, bin)
				}
			}
		}
	})

	t.Run("dashboard and alert rules query exposed metrics", func(t *testing.T) {
		exposed := map[string]bool{}
		for _, url := range []string{ctrlMetrics, "http://" + p.egressAdmin + "/metrics", "http://" + p.ingressAdmin + "/metrics"} {
			for f := range scrape(t, url).families {
				exposed[f] = true
			}
		}
		documented := readmeMetrics(t)
		for name, where := range monitoringMetrics(t, func(f string) bool { return exposed[f] }) {
			if _, ok := documented[name]; !ok {
				t.Errorf("%s queries %s, which README's metric table does not list", where[0], name)
			}
			if !exposed[name] && !(name == "agentauth_ssf_stream_verified" || strings.HasPrefix(name, "agentauth_audit_")) {
				t.Errorf("%s queries %s, which neither binary exposes", where[0], name)
			}
		}
	})

	t.Run("ingress route label is the tool's name", func(t *testing.T) {
		m := scrape(t, "http://"+p.ingressAdmin+"/metrics")
		if v := m.value("agentauth_requests_total", `direction="ingress"`, `route="`+toolHost+`"`, `result="allowed"`); v < 1 {
			t.Errorf("no allowed ingress request under route %q: %v", toolHost, m.samples)
		}
		if v := m.value("agentauth_requests_total", `route="ingress"`); v != 0 {
			t.Errorf("requests counted under route \"ingress\": %v", v)
		}
	})

	t.Run("config_dump", func(t *testing.T) {
		cfg, err := os.ReadFile(filepath.Join(p.managedDir, "ingress.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		token := regexp.MustCompile(`joinToken: (\S+)`).FindSubmatch(cfg)
		if token == nil {
			t.Fatal("the ingress config has no joinToken")
		}
		res, err := http.Get("http://" + p.ingressAdmin + "/config_dump")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("/config_dump: %s %s", res.Status, body)
		}
		if strings.Contains(string(body), string(token[1])) {
			t.Fatalf("/config_dump shows the join token:\n%s", body)
		}
		var dump struct {
			Config struct {
				Identity struct {
					Controller map[string]any `json:"controller"`
				} `json:"identity"`
				Ingress map[string]any `json:"ingress"`
			} `json:"config"`
			XDS struct {
				Connected bool              `json:"connected"`
				Versions  map[string]string `json:"versions"`
			} `json:"xds"`
			Policy struct {
				IDs []string `json:"ids"`
			} `json:"policy"`
			Credentials struct {
				SPIFFEID   string     `json:"spiffe_id"`
				X509Expiry *time.Time `json:"x509_svid_expiry"`
			} `json:"credentials"`
		}
		if err := json.Unmarshal(body, &dump); err != nil {
			t.Fatalf("/config_dump: %v\n%s", err, body)
		}
		if got := dump.Config.Identity.Controller["joinToken"]; got != "[redacted]" {
			t.Errorf("identity.controller.joinToken = %v, want [redacted]", got)
		}
		if dump.Config.Ingress["host"] != toolHost || !dump.XDS.Connected || len(dump.XDS.Versions) == 0 {
			t.Errorf("config or xDS state missing:\n%s", body)
		}
		if !slices.Contains(dump.Policy.IDs, "planner-may-call-weather") {
			t.Errorf("policy ids %v lack planner-may-call-weather", dump.Policy.IDs)
		}
		if dump.Credentials.SPIFFEID != toolID.String() || dump.Credentials.X509Expiry == nil ||
			!dump.Credentials.X509Expiry.After(time.Now()) {
			t.Errorf("credentials %+v", dump.Credentials)
		}
	})

	t.Run("logging level at runtime", func(t *testing.T) {
		for _, url := range []string{"http://" + p.ingressAdmin + "/logging", "http://" + c.opsAddr + "/logging"} {
			req, _ := http.NewRequest(http.MethodPut, url+"?level=warn", nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			res, err = http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"level":"warn"`) {
				t.Errorf("GET %s after PUT level=warn: %s %s", url, res.Status, body)
			}
		}
	})
}
