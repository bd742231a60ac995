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
