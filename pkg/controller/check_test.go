package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
)

// TestCheckFiles: `controller -check` (Load, then CheckFiles) opens and parses every file the config names, and a
// missing or unparseable one fails it naming the field and the path.
func TestCheckFiles(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td)
	dir := t.TempDir()
	cert, key := ca.WriteSVIDFiles(dir, ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/ssf"), testca.WithDNSNames("ssf.test")))
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"idp": write("idp.json", string(jwks)), "siem": write("siem.json", string(jwks)),
		"cert": cert, "key": key, "push": write("push", "Bearer p\n")}
	missing, garbage, empty := filepath.Join(dir, "missing"), write("garbage", "garbage"), write("empty", "")
	config := func(f map[string]string) string {
		return validConfig + fmt.Sprintf(`tokenService:
  listen: 127.0.0.1:8445
  userIssuers: [{issuer: https://idp.example.com, audiences: [agentauth], jwksFile: %s}]
ssf:
  listen: 127.0.0.1:8090
  tls: {cert: %s, key: %s}
  transmitters:
    - {issuer: https://siem.example.com, audience: [a], jwksFile: %s, pushAuthorizationFile: %s}
`, f["idp"], f["cert"], f["key"], f["siem"], f["push"])
	}
	check := func(f map[string]string) error {
		p := write("controller.yaml", config(f))
		cfg, err := Load(p)
		if err != nil {
			return err
		}
		return CheckFiles(cfg)
	}
	if err := check(files); err != nil {
		t.Fatalf("the valid files fail the check: %v", err)
	}
	for _, tt := range []struct{ name, file, path, field string }{
		{"missing user issuer JWKS", "idp", missing, "tokenService.userIssuers[0].jwksFile"},
		{"garbage user issuer JWKS", "idp", garbage, "tokenService.userIssuers[0].jwksFile"},
		{"missing transmitter JWKS", "siem", missing, "ssf.transmitters[0].jwksFile"},
		{"garbage transmitter JWKS", "siem", garbage, "ssf.transmitters[0].jwksFile"},
		{"missing TLS certificate", "cert", missing, "ssf.tls"},
		{"garbage TLS certificate", "cert", garbage, "ssf.tls"},
		{"missing TLS key", "key", missing, "ssf.tls"},
		{"missing push secret", "push", missing, "ssf.transmitters[0].pushAuthorizationFile"},
		{"empty push secret", "push", empty, "ssf.transmitters[0].pushAuthorizationFile"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := map[string]string{}
			for k, v := range files {
				f[k] = v
			}
			f[tt.file] = tt.path
			err := check(f)
			if err == nil || !strings.Contains(err.Error(), tt.field+": ") || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("got %v, want an error naming %s and %s", err, tt.field, tt.path)
			}
		})
	}
}
