package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// Regressions from an independent WIMSE client configuring the sidecars (issue 14).

// soloIngress is one ingress sidecar in front of a sampletool, configured by the test.
type soloIngress struct {
	addr, admin, cfgPath string
	tool                 workloadFiles
}

// newSoloIngress writes an ingress config (plain HTTP, proofs allowed in cleartext) with the given bundles line,
// extra identity.files lines and extra ingress lines; it starts nothing.
func newSoloIngress(t *testing.T, tool workloadFiles, bundles, filesExtra, ingressExtra string) *soloIngress {
	t.Helper()
	toolAddr := freeAddr(t)
	st := start(t, "sampletool", nil, "-listen", toolAddr)
	waitHTTP(t, st, "http://"+toolAddr+"/whoami", http.StatusOK)
	s := &soloIngress{addr: freeAddr(t), admin: freeAddr(t), tool: tool}
	cfg := fmt.Sprintf(`identity:
  files:
    cert: %s
    key: %s
    bundles:
      example.org: %s
%s    wit: %s
    witKey: %s
ingress:
  listen: %s
  backend: http://%s
  allowCleartextProofs: true
  require: [wpt]
  host: %s
%sadmin:
  listen: %s
`, tool.cert, tool.key, bundles, filesExtra, tool.wit, tool.witKey, s.addr, toolAddr, toolHost, ingressExtra, s.admin)
	s.cfgPath = writeFile(t, t.TempDir(), "ingress.yaml", cfg)
	return s
}

// check runs `sidecar -check` on the config.
func (s *soloIngress) check(t *testing.T) (string, error) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "sidecar"), "-check", "-config", s.cfgPath).CombinedOutput()
	return string(out), err
}

func (s *soloIngress) start(t *testing.T) {
	t.Helper()
	p := start(t, "sidecar", nil, "-config", s.cfgPath)
	waitHTTP(t, p, "http://"+s.admin+"/readyz", http.StatusOK)
}

// call sends GET /whoami as the holder of wit, with a WPT for aud.
func (s *soloIngress) call(t *testing.T, wit *testca.WITSVID, aud string) (int, string) {
	t.Helper()
	prover, err := wpt.NewProver(wit.Token, wit.Key)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := prover.Mint(wpt.ProofParams{Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := getWhoami(t, http.DefaultClient, "http://"+s.addr+"/whoami", map[string]string{
		"Host": toolHost, wire.HeaderWIT: wit.Token, wire.HeaderWPT: proof})
	return code, body
}

// TestWITIssuerFromPlainJWKS: the JWK Set a WIMSE deployment publishes for its trust domain (keys without
// "use": "wit-svid") is trusted for WITs under identity.files.witIssuers; listed under bundles, where it would be
// read as JWT-SVID authorities and every WIT refused, -check refuses the config and says what to write.
func TestWITIssuerFromPlainJWKS(t *testing.T) {
	ca := testca.New(t, trustDomain)
	tool := issue(t, ca, toolID)
	kid, key := ca.WITKey()
	doc, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: key.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	jwks := writeFile(t, tool.dir, "wimse-jwks.json", string(doc))

	t.Run("under bundles", func(t *testing.T) {
		s := newSoloIngress(t, tool, fmt.Sprintf("[%s, %s]", tool.bundlePEM, jwks), "", "")
		out, err := s.check(t)
		if err == nil || !strings.Contains(out, "identity.files.witIssuers.example.org") {
			t.Fatalf("-check: %v\n%s\nwant a refusal that names identity.files.witIssuers.example.org", err, out)
		}
	})
	t.Run("under witIssuers", func(t *testing.T) {
		s := newSoloIngress(t, tool, fmt.Sprintf("[%s]", tool.bundlePEM),
			fmt.Sprintf("    witIssuers:\n      example.org: [%s]\n", jwks), "")
		if out, err := s.check(t); err != nil {
			t.Fatalf("-check: %v\n%s", err, out)
		}
		s.start(t)
		if code, body := s.call(t, ca.CreateWITSVID(agentID), "http://"+toolHost+"/whoami"); code != http.StatusOK {
			t.Fatalf("got %d %s, want 200", code, body)
		}
	})
}

// TestWITAlgorithmRule: one algorithm allow-list (default: the WIT-SVID profile's, no EdDSA) applies to our own
// WIT, at -check as at start, and to callers' WITs.
func TestWITAlgorithmRule(t *testing.T) {
	ca := testca.New(t, trustDomain)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bundles := func(w workloadFiles) string { return fmt.Sprintf("[%s, %s]", w.bundlePEM, w.bundleJSON) }

	t.Run("our own EdDSA WIT fails -check", func(t *testing.T) {
		tool := issue(t, ca, toolID)
		ca.WriteWITFiles(tool.dir, ca.CreateWITSVID(toolID, testca.WithKey(edKey)))
		s := newSoloIngress(t, tool, bundles(tool), "", "")
		if out, err := s.check(t); err == nil {
			t.Fatalf("-check accepted an EdDSA WIT the sidecar cannot start with:\n%s", out)
		}
	})
	t.Run("EdDSA cannot be allowed", func(t *testing.T) {
		tool := issue(t, ca, toolID)
		s := newSoloIngress(t, tool, bundles(tool), "", "")
		cfg := strings.Replace(readFileT(t, s.cfgPath), "identity:\n", "identity:\n  witAlgorithms: [ES256, EdDSA]\n", 1)
		s.cfgPath = writeFile(t, t.TempDir(), "ingress.yaml", cfg)
		if out, err := s.check(t); err == nil || !strings.Contains(out, "identity.witAlgorithms[1]") {
			t.Fatalf("-check: %v\n%s\nwant identity.witAlgorithms[1] refused", err, out)
		}
	})
	t.Run("callers under the same rule", func(t *testing.T) {
		tool := issue(t, ca, toolID)
		s := newSoloIngress(t, tool, bundles(tool), "", "")
		s.start(t)
		aud := "http://" + toolHost + "/whoami"
		if code, body := s.call(t, ca.CreateWITSVID(agentID, testca.WithKey(edKey)), aud); code != http.StatusBadRequest ||
			!strings.Contains(body, `"unsupported_algorithm"`) {
			t.Fatalf("EdDSA caller got %d %s, want 400 unsupported_algorithm", code, body)
		}
		if code, body := s.call(t, ca.CreateWITSVID(agentID), aud); code != http.StatusOK {
			t.Fatalf("ES256 caller got %d %s, want 200", code, body)
		}
	})
}

// TestExternalURLAudience: behind a TLS terminator the listener is plain HTTP, but callers address
// https://host/...; with ingress.externalURL the expected audience follows each request's path under that URL.
func TestExternalURLAudience(t *testing.T) {
	ca := testca.New(t, trustDomain)
	tool := issue(t, ca, toolID)
	s := newSoloIngress(t, tool, fmt.Sprintf("[%s, %s]", tool.bundlePEM, tool.bundleJSON), "",
		"  externalURL: https://"+toolHost+"\n")
	s.start(t)
	if code, body := s.call(t, ca.CreateWITSVID(agentID), "https://"+toolHost+"/whoami"); code != http.StatusOK {
		t.Fatalf("https audience got %d %s, want 200", code, body)
	}
	for _, aud := range []string{"http://" + toolHost + "/whoami", "https://" + toolHost + "/other"} {
		if code, body := s.call(t, ca.CreateWITSVID(agentID), aud); code != http.StatusBadRequest ||
			!strings.Contains(body, `"wrong_audience"`) {
			t.Fatalf("audience %s got %d %s, want 400 wrong_audience", aud, code, body)
		}
	}
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
