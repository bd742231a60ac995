package devcreds_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentauth/agentauth/internal/devcreds"
	"github.com/agentauth/agentauth/pkg/sidecar"
)

// TestWrittenCredentialsPassCheck: the files load in a sidecar's files source and pass the checks `sidecar -check`
// runs, for an egress (own WIT used for proofs) and an ingress (WITs verified against the bundle).
func TestWrittenCredentialsPassCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	res, err := devcreds.Write(context.Background(), devcreds.Options{Dir: dir, TrustDomain: "example.org",
		IDs: []string{"spiffe://example.org/agent/planner", "spiffe://example.org/tool/weather"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Workloads) != 2 || res.Workloads[1].Dir != filepath.Join(dir, "tool-weather") {
		t.Fatalf("workloads %+v", res.Workloads)
	}
	agent, tool := res.Workloads[0], res.Workloads[1]
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	configs := map[string]string{
		"egress": read(agent.YAML) + `egress:
  proxyListen: 127.0.0.1:15001
  routes:
    - {name: weather, host: weather.tools.local, upstream: "https://127.0.0.1:9443", modes: [mtls, httpsig],
       serverID: "spiffe://example.org/tool/weather", signedResponses: true}
admin: {listen: 127.0.0.1:15000}
`,
		"ingress": read(tool.YAML) + `ingress:
  listen: 127.0.0.1:9443
  backend: http://127.0.0.1:8080
  mtls: {trustDomains: [example.org]}
  require: [mtls, httpsig]
  host: weather.tools.local
admin: {listen: 127.0.0.1:15000}
`,
	}
	for name, yml := range configs {
		cfg, err := sidecar.Parse([]byte(yml))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := sidecar.CheckCredentials(cfg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	// What the README promises the files contain.
	block, _ := pem.Decode([]byte(read(tool.Cert)))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/tool/weather" || leaf.IsCA ||
		leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Fatalf("X.509-SVID: URIs %v, CA %t, key usage %v", leaf.URIs, leaf.IsCA, leaf.KeyUsage)
	}
	tok, err := jwt.ParseSigned(strings.TrimSpace(read(tool.WIT)), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub string `json:"sub"`
		Cnf struct {
			JWK jose.JSONWebKey `json:"jwk"`
		} `json:"cnf"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		t.Fatal(err)
	}
	h := tok.Headers[0]
	if h.ExtraHeaders["typ"] != "wit+jwt" || h.KeyID == "" || claims.Sub != "spiffe://example.org/tool/weather" ||
		claims.Cnf.JWK.Algorithm != "ES256" {
		t.Fatalf("WIT header %+v claims %+v", h, claims)
	}
	if fi, err := os.Stat(tool.WITKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("WIT key file mode: %v %v", fi.Mode(), err)
	}
}

// TestEdDSAWITs: with WITKeyAlg EdDSA the WITs bind Ed25519 keys, and the identity section printed sets the
// witProfile under which a sidecar loads them.
func TestEdDSAWITs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	res, err := devcreds.Write(context.Background(), devcreds.Options{Dir: dir, TrustDomain: "example.org",
		IDs: []string{"spiffe://example.org/agent/planner"}, TTL: time.Hour, WITKeyAlg: "EdDSA"})
	if err != nil {
		t.Fatal(err)
	}
	w := res.Workloads[0]
	section := devcreds.IdentityYAML(w.ID.TrustDomain(), w, res)
	egress := "\negress:\n  proxyListen: 127.0.0.1:15001\n  routes:\n    - {name: weather, host: weather.tools.local, upstream: \"https://127.0.0.1:9443\", modes: [wpt]}\nadmin: {listen: 127.0.0.1:15000}\n"
	cfg, err := sidecar.Parse([]byte(section + egress))
	if err != nil {
		t.Fatal(err)
	}
	if err := sidecar.CheckCredentials(cfg); err != nil {
		t.Fatalf("the written EdDSA credentials: %v", err)
	}
	// Without the profile the sidecar refuses them: the printed section is what makes them usable.
	noProfile := strings.Replace(section, "\n  witProfile: wimse", "", 1)
	if noProfile == section {
		t.Fatalf("the identity section sets no witProfile:\n%s", section)
	}
	if cfg, err := sidecar.Parse([]byte(noProfile + egress)); err == nil {
		if err := sidecar.CheckCredentials(cfg); err == nil {
			t.Fatal("an EdDSA WIT loaded under the spiffe profile")
		}
	}
	b, err := os.ReadFile(w.WIT)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(strings.TrimSpace(string(b)), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Cnf struct {
			JWK jose.JSONWebKey `json:"jwk"`
		} `json:"cnf"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Cnf.JWK.Algorithm != "EdDSA" {
		t.Fatalf("cnf.jwk.alg %q, want EdDSA", claims.Cnf.JWK.Algorithm)
	}
	if _, err := devcreds.Write(context.Background(), devcreds.Options{Dir: filepath.Join(t.TempDir(), "x"),
		TrustDomain: "example.org", IDs: []string{"spiffe://example.org/a"}, WITKeyAlg: "HS256"}); err == nil ||
		!strings.Contains(err.Error(), "HS256") {
		t.Fatalf("WITKeyAlg HS256: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "svid.pem"), []byte("real"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts devcreds.Options
		want string
	}{
		{"non-empty dir", devcreds.Options{Dir: nonEmpty, TrustDomain: "example.org", IDs: []string{"spiffe://example.org/a"}}, "not empty"},
		{"other trust domain", devcreds.Options{Dir: t.TempDir(), TrustDomain: "example.org", IDs: []string{"spiffe://other.org/a"}}, "not in trust domain"},
		{"no IDs", devcreds.Options{Dir: t.TempDir(), TrustDomain: "example.org"}, "at least one"},
		{"two IDs, one directory", devcreds.Options{Dir: t.TempDir(), TrustDomain: "example.org",
			IDs: []string{"spiffe://example.org/a/b", "spiffe://example.org/a-b"}}, "path of its own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := devcreds.Write(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}
