package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wimseIdentity opts a sidecar out of the SPIFFE WIT-SVID profile and makes its WIT key Ed25519.
const wimseIdentity = "  witProfile: wimse\n  witAlgorithms: [EdDSA, ES256]\n"

// TestEd25519WorkloadKeys: where the trust domain's policy (the controller's issuer.witKeyAlgorithms) and both
// sidecars (identity.witProfile: wimse) allow EdDSA, the real issuer certifies an Ed25519 workload key and the pair
// proves the agent with it in wpt and httpsig mode. Where either side's policy does not allow it, the refusal names
// the setting: the issuer's, which stops the sidecar at start, and the verifying sidecar's, in the 400 the agent
// gets.
func TestEd25519WorkloadKeys(t *testing.T) {
	policyFile := writeFile(t, t.TempDir(), "weather.cedar", weatherPolicy)
	c := startControllerIssuer(t, t.TempDir(), ", witKeyAlgorithms: [EdDSA, ES256]")
	c.ctl(t, false, "policy", "apply", policyFile)
	url := "http://" + toolHost + "/whoami"

	for _, mode := range []string{"wpt", "httpsig"} {
		t.Run(mode+" with an Ed25519 workload key", func(t *testing.T) {
			p := startManagedPairWith(t, c, managedOptions{agentIdentity: wimseIdentity, toolIdentity: wimseIdentity,
				modes: "mtls, " + mode})
			waitStatus(t, p, url, http.StatusOK)
			if alg, kty := witKeyOf(t, filepath.Join(p.managedDir, "agent-state", "wit.jwt")); alg != "EdDSA" || kty != "OKP" {
				t.Fatalf("the agent's WIT binds a %s key with alg %s, want OKP (Ed25519) and EdDSA", kty, alg)
			}
		})
		t.Run(mode+" refused by a verifier on the SPIFFE profile", func(t *testing.T) {
			p := startManagedPairWith(t, c, managedOptions{agentIdentity: wimseIdentity, modes: "mtls, " + mode})
			body := waitStatus(t, p, url, http.StatusBadRequest)
			if !strings.Contains(body, `"unsupported_algorithm"`) || !strings.Contains(body, `EdDSA`) ||
				!strings.Contains(body, "identity.witProfile: spiffe") {
				t.Fatalf("got 400 %s, want unsupported_algorithm naming EdDSA and identity.witProfile: spiffe", body)
			}
			t.Logf("the agent got 400 %s", body)
		})
	}

	t.Run("issuer policy refuses", func(t *testing.T) {
		def := startController(t, t.TempDir())
		p := startManagedPairWith(t, def, managedOptions{agentIdentity: wimseIdentity, beforeStart: func() {}})
		deadline := time.Now().Add(30 * time.Second)
		for !p.egress.Exited() {
			if time.Now().After(deadline) {
				t.Fatalf("the agent's sidecar did not stop on the issuer's refusal:\n%s", p.egress.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if out := p.egress.Output(); !strings.Contains(out, "is not allowed by the controller's issuer.witKeyAlgorithms") ||
			!strings.Contains(out, "EdDSA") {
			t.Fatalf("the sidecar's exit does not name issuer.witKeyAlgorithms:\n%s", out)
		}
		// The tool's sidecar, on the default profile, is issued its ES256 WIT as before.
		waitHTTP(t, p.ingress, "http://"+p.ingressAdmin+"/readyz", http.StatusOK)
	})
}

// witKeyOf returns the alg and kty of the cnf.jwk of the WIT in path.
func witKeyOf(t *testing.T, path string) (alg, kty string) {
	t.Helper()
	tok, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSpace(string(tok)), ".")
	if len(parts) != 3 {
		t.Fatalf("%s is not a compact JWS", path)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Cnf struct {
			JWK struct {
				Alg string `json:"alg"`
				Kty string `json:"kty"`
			} `json:"jwk"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Cnf.JWK.Alg, c.Cnf.JWK.Kty
}
