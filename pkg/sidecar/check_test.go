package sidecar

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

// writeJWKS writes a JWK Set with one ES256 public key into dir.
func writeJWKS(t *testing.T, dir string) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckOpensEveryFile: `sidecar -check` (CheckCredentials) opens and parses every file the config names, and a
// missing or unparseable one fails it naming the field and the path, before anything starts.
func TestCheckOpensEveryFile(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td)
	dir := t.TempDir()
	cert, key := ca.WriteSVIDFiles(dir, ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/tool/weather")))
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := map[string]string{
		"cert": cert, "key": key, "bundle": ca.WriteBundleFile(dir), "jwks": writeJWKS(t, dir),
		"policy": write("p.cedar", `@id("all") permit (principal, action, resource);`),
		"token":  write("join-token", "tok-123\n"),
	}
	missing, garbage, empty := filepath.Join(dir, "missing"), write("garbage", "garbage"), write("empty", "\n")
	tool := func(f map[string]string) string {
		return fmt.Sprintf(`identity:
  files: {cert: %s, key: %s, bundles: {example.org: [%s]}}
ingress:
  listen: 127.0.0.1:9443
  backend: http://127.0.0.1:8080
  mtls: {trustDomains: [example.org]}
  require: [mtls]
  host: weather.tools.local
  policy: {files: [%s]}
  txnToken: {issuer: https://127.0.0.1:8445/token, jwksFile: %s}
`, f["cert"], f["key"], f["bundle"], f["policy"], f["jwks"])
	}
	agent := func(f map[string]string) string {
		return fmt.Sprintf(`identity:
  controller: {address: 127.0.0.1:8443, bundle: %s, joinTokenFile: %s}
egress:
  proxyListen: 127.0.0.1:15001
  routes: [{name: weather, host: weather.tools.local, upstream: "https://127.0.0.1:9443", modes: [mtls], serverID: "spiffe://example.org/tool/weather"}]
`, f["bundle"], f["token"])
	}
	check := func(yml string) error {
		cfg, err := Parse([]byte(yml))
		if err != nil {
			t.Fatalf("config: %v", err)
		}
		return CheckCredentials(cfg)
	}
	for name, config := range map[string]func(map[string]string) string{"tool": tool, "agent": agent} {
		if err := check(config(files)); err != nil {
			t.Fatalf("%s: the valid files fail the check: %v", name, err)
		}
	}
	for _, tt := range []struct {
		name, file, path, field string
		config                  func(map[string]string) string
	}{
		{"missing certificate", "cert", missing, "identity.files.cert", tool},
		{"garbage certificate", "cert", garbage, "identity.files.cert", tool},
		{"missing key", "key", missing, "identity.files.key", tool},
		{"missing bundle", "bundle", missing, "identity.files.bundles.example.org", tool},
		{"garbage bundle", "bundle", garbage, "identity.files.bundles.example.org", tool},
		{"missing policy", "policy", missing, "ingress.policy.files", tool},
		{"bad policy", "policy", garbage, "ingress.policy.files", tool},
		{"missing JWKS", "jwks", missing, "ingress.txnToken.jwksFile", tool},
		{"garbage JWKS", "jwks", garbage, "ingress.txnToken.jwksFile", tool},
		{"missing controller bundle", "bundle", missing, "identity.controller.bundle", agent},
		{"garbage controller bundle", "bundle", garbage, "identity.controller.bundle", agent},
		{"missing join token", "token", missing, "identity.controller.joinTokenFile", agent},
		{"empty join token", "token", empty, "identity.controller.joinTokenFile", agent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := map[string]string{}
			for k, v := range files {
				f[k] = v
			}
			f[tt.file] = tt.path
			err := check(tt.config(f))
			if err == nil || !strings.Contains(err.Error(), tt.field+": ") || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("got %v, want an error naming %s and %s", err, tt.field, tt.path)
			}
		})
	}
	// Every problem at once.
	f := map[string]string{}
	for k, v := range files {
		f[k] = v
	}
	f["policy"], f["jwks"] = missing, garbage
	if err := check(tool(f)); err == nil || !strings.Contains(err.Error(), "ingress.policy.files") || !strings.Contains(err.Error(), "ingress.txnToken.jwksFile") {
		t.Fatalf("both problems: %v", err)
	}
}

// TestJoinTokenFileIsTrimmed: the join token file's trailing newline is not part of the token.
func TestJoinTokenFileIsTrimmed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte("tok-123\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := joinToken(&ControllerIdentityConfig{JoinTokenFile: p}); err != nil || got != "tok-123" {
		t.Fatalf("%q, %v", got, err)
	}
}
