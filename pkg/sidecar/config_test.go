package sidecar

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/pkg/wire"
)

func TestLoadValid(t *testing.T) {
	cfg, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Egress.Routes[0].ProofLifetime; got != 60*time.Second {
		t.Errorf("default proofLifetime = %v, want 60s", got)
	}
	if got := cfg.Egress.Routes[1].ProofLifetime; got != 30*time.Second {
		t.Errorf("proofLifetime = %v, want 30s", got)
	}
	if got := cfg.Egress.Routes[0].PathPrefix; got != "/" {
		t.Errorf("default pathPrefix = %q", got)
	}
	if cfg.Ingress.MTLS.Required == nil || !*cfg.Ingress.MTLS.Required {
		t.Error("mtls.required should default to true when accept includes mtls")
	}
	if cfg.Identity.Files.ReloadInterval != 5*time.Second || cfg.Log.Level != "info" {
		t.Errorf("defaults not applied: %+v %+v", cfg.Identity.Files, cfg.Log)
	}
}

// TestMarshalRoundTrip shows a generated config (as the Kubernetes injector will render one) loads unchanged.
func TestMarshalRoundTrip(t *testing.T) {
	cfg, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse of rendered config: %v\n%s", err, out)
	}
	out2, _ := again.Marshal()
	if string(out) != string(out2) {
		t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, out2)
	}
}

// TestWITProfile: EdDSA is allowed only with identity.witProfile: wimse; a list that begins with it makes the
// controller-issued WIT key Ed25519, and without a list the profile's own list applies.
func TestWITProfile(t *testing.T) {
	valid, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, identity string
		wantAlgs       []string
		wantKey        string
	}{
		{"default", "", wire.WITAlgs, "ES256"},
		{"wimse without a list", "  witProfile: wimse\n", wire.WIMSEWITAlgs, "ES256"},
		{"wimse, EdDSA first", "  witProfile: wimse\n  witAlgorithms: [EdDSA, ES256]\n", []string{"EdDSA", "ES256"}, "EdDSA"},
		{"wimse, EdDSA second", "  witProfile: wimse\n  witAlgorithms: [ES256, EdDSA]\n", []string{"ES256", "EdDSA"}, "ES256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(strings.Replace(string(valid), "identity:\n", "identity:\n"+tt.identity, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Identity.witAlgorithms(); !slices.Equal(got, tt.wantAlgs) {
				t.Errorf("witAlgorithms %v, want %v", got, tt.wantAlgs)
			}
			if got := cfg.Identity.workloadKeyAlgorithm(); got != tt.wantKey {
				t.Errorf("workload key %s, want %s", got, tt.wantKey)
			}
		})
	}
}

func TestValidationErrors(t *testing.T) {
	valid, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		edit      func(string) string
		wantField string
		wantLine  int
		wantMsg   string
	}{
		{"bad upstream scheme", repl("upstream: https://127.0.0.1:9443", "upstream: ftp://127.0.0.1:9443"),
			"egress.routes[0].upstream", 15, "not an http:// or https:// URL"},
		{"unknown mode", repl("modes: [httpsig]", "modes: [httpsig, magic]"),
			"egress.routes[1].modes[1]", 21, `unknown mode "magic"`},
		{"mtls without serverID", repl("      serverID: spiffe://example.org/tool/weather\n", ""),
			"egress.routes[0].serverID", 13, "required with mode mtls"},
		{"bad serverID", repl("spiffe://example.org/tool/weather", "https://example.org/x"),
			"egress.routes[0].serverID", 17, "not a SPIFFE ID"},
		{"duplicate route name", repl("name: search", "name: weather"),
			"egress.routes[1].name", 18, "duplicate route name"},
		{"signed responses without httpsig", repl("      serverID: spiffe://example.org/tool/weather\n",
			"      serverID: spiffe://example.org/tool/weather\n      signedResponses: true\n"),
			"egress.routes[0].signedResponses", 18, "needs mode httpsig"},
		{"EdDSA WITs", repl("identity:\n", "identity:\n  witAlgorithms: [ES256, EdDSA]\n"),
			"identity.witAlgorithms[1]", 2, "WIT-SVID profile"},
		{"EdDSA WITs name the opt-out", repl("identity:\n", "identity:\n  witAlgorithms: [EdDSA]\n"),
			"identity.witAlgorithms[0]", 2, "need identity.witProfile: wimse"},
		{"EdDSA under an explicit spiffe profile", repl("identity:\n", "identity:\n  witProfile: spiffe\n  witAlgorithms: [EdDSA]\n"),
			"identity.witAlgorithms[0]", 3, "need identity.witProfile: wimse"},
		{"unknown WIT profile", repl("identity:\n", "identity:\n  witProfile: wimse-06\n"),
			"identity.witProfile", 2, `"wimse-06" is not one of spiffe (default), wimse`},
		{"HMAC under the WIMSE profile", repl("identity:\n", "identity:\n  witProfile: wimse\n  witAlgorithms: [EdDSA, HS256]\n"),
			"identity.witAlgorithms[1]", 3, "not allowed for WITs by the WIMSE profile"},
		{"external URL with a path", repl("  host: weather.tools.local\n", "  host: weather.tools.local\n  externalURL: https://weather.tools.local/api\n"),
			"ingress.externalURL", 30, "scheme://host[:port] only"},
		{"wpt and httpsig together", repl("modes: [httpsig]", "modes: [wpt, httpsig]"),
			"egress.routes[1].modes", 21, "alternatives"},
		{"passthrough combined", repl("modes: [httpsig]", "modes: [passthrough, httpsig]"),
			"egress.routes[1].modes[0]", 21, "cannot be combined"},
		{"wpt without a WIT", func(s string) string {
			s = strings.Replace(s, "    wit: /etc/agentauth/wit.jwt\n", "", 1)
			return strings.Replace(s, "    witKey: /etc/agentauth/wit-key.pem\n", "", 1)
		}, "egress.routes[0].modes", 14, "need a WIT"},
		{"bad listen", repl("listen: 127.0.0.1:9443", "listen: nowhere"),
			"ingress.listen", 24, "not host:port"},
		{"bad trust domain", repl("trustDomains: [example.org]", "trustDomains: [Example Org]"),
			"ingress.mtls.trustDomains[0]", 27, "Example Org"},
		{"allowIDs without client certificates", func(s string) string {
			s = strings.Replace(s, "trustDomains: [example.org]", "allowIDs: [spiffe://example.org/agent/planner]", 1)
			return strings.Replace(s, "require: [mtls, wpt, httpsig]", "require: [wpt]", 1)
		}, "ingress.mtls.allowIDs", 0, "only when client certificates are required"},
		{"passthrough on ingress", repl("require: [mtls, wpt, httpsig]", "require: [passthrough]"),
			"ingress.require[0]", 28, "egress mode"},
		{"no host", repl("  host: weather.tools.local\n", ""),
			"ingress.host", 0, "set host (or audience)"},
		{"policy without host", func(s string) string {
			s = strings.Replace(s, "require: [mtls, wpt, httpsig]", "require: [mtls]", 1)
			s = strings.Replace(s, "  host: weather.tools.local\n", "", 1)
			return strings.Replace(s, "  require: [mtls]\n", "  require: [mtls]\n  policy:\n    files: [/etc/agentauth/p.cedar]\n", 1)
		}, "ingress.host", 0, "names the tool"},
		// The WIMSE drafts require TLS for a WIT and its proofs: anyone on a cleartext hop could take an unused
		// proof off one request and send it with a method and body of their own.
		{"proofs on a cleartext listener", repl("  mtls:\n    trustDomains: [example.org]\n  require: [mtls, wpt, httpsig]", "  require: [wpt]"),
			"ingress.mtls", 0, "need TLS on this listener"},
		{"proofs to an http upstream", repl("upstream: https://127.0.0.1:9444", "upstream: http://127.0.0.1:9444"),
			"egress.routes[1].upstream", 20, "need an https:// upstream"},
		{"bad token service ID", repl("egress:\n", "egress:\n  tokenService: {endpoint: https://127.0.0.1:8445/token, serverID: controller}\n"),
			"egress.tokenService.serverID", 0, "not a SPIFFE ID"},
		{"bad bundle trust domain", repl("example.org: [/etc", "Example Org: [/etc"),
			"identity.files.bundles.Example Org", 0, "not a trust domain"},
		{"body budget below the body limit", func(s string) string {
			return s + "limits:\n  maxBodyBytes: 1048576\n  maxBufferedBodies: 1024\n"
		}, "limits.maxBufferedBodies", 0, "at least limits.maxBodyBytes"},
		{"negative body rate", func(s string) string { return s + "limits:\n  bodyMinRate: -1\n" },
			"limits.bodyMinRate", 0, "must be positive"},
		{"bad log level", func(s string) string { return s + "log:\n  level: loud\n" },
			"log.level", 33, `"loud"`},
		{"no identity", func(s string) string { return s[strings.Index(s, "egress:"):] },
			"identity", 0, "set one of"},
		{"relative localSocket", func(s string) string {
			return "identity:\n  controller:\n    address: 127.0.0.1:8443\n    bundle: /etc/agentauth/bundle.pem\n" +
				"    localSocket: issuer.sock\n" + s[strings.Index(s, "egress:"):]
		}, "identity.controller.localSocket", 5, "not an absolute path"},
		{"relative kubernetesTokenFile", func(s string) string {
			return "identity:\n  controller:\n    address: 127.0.0.1:8443\n    bundle: /etc/agentauth/bundle.pem\n" +
				"    kubernetesTokenFile: token\n" + s[strings.Index(s, "egress:"):]
		}, "identity.controller.kubernetesTokenFile", 5, "not an absolute path"},
		// Unknown keys and values of the wrong kind: the YAML path, line and nearest valid key, never a Go type.
		{"serverId", repl("serverID: spiffe", "serverId: spiffe"),
			"egress.routes[0].serverId", 17, `unknown key "serverId"; did you mean "serverID"?`},
		{"misspelt key", repl("proofLifetime: 30s", "proofLifetme: 30s"),
			"egress.routes[1].proofLifetme", 22, `unknown key "proofLifetme"; did you mean "proofLifetime"?`},
		{"unknown identity key", repl("    witKey:", "    witkey:"),
			"identity.files.witkey", 8, `did you mean "witKey"?`},
		{"unknown key far from any", repl("  host: weather.tools.local\n", "  host: weather.tools.local\n  colour: blue\n"),
			"ingress.colour", 30, `unknown key "colour"; valid keys here: allowCleartextProofs, audience, backend,`},
		{"unknown top-level key", func(s string) string { return s + "controler:\n  address: x:1\n" },
			"controler", 32, `did you mean "controller"?`},
		{"duration without unit", repl("proofLifetime: 30s", "proofLifetime: 30"),
			"egress.routes[1].proofLifetime", 22, `expects a duration such as 30s or 5m, not "30"`},
		{"list where a value is", repl("modes: [httpsig]", "modes: httpsig"),
			"egress.routes[1].modes", 21, `expects a list, not "httpsig"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.edit(string(valid))))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want *ValidationError, got %v", err)
			}
			for _, fe := range ve.Errors {
				if fe.Field == tt.wantField && strings.Contains(fe.Msg, tt.wantMsg) {
					if tt.wantLine != 0 && fe.Line != tt.wantLine {
						t.Errorf("line = %d, want %d (%v)", fe.Line, tt.wantLine, fe)
					}
					return
				}
			}
			t.Fatalf("no error for %s containing %q; got:\n%v", tt.wantField, tt.wantMsg, err)
		})
		t.Run(tt.name+"/no Go names", func(t *testing.T) {
			_, err := Parse([]byte(tt.edit(string(valid))))
			for _, goName := range []string{"sidecar.", "Config", "time.Duration", "[]string", "not found in type", "unmarshal"} {
				if strings.Contains(err.Error(), goName) {
					t.Errorf("the message names Go's %q: %v", goName, err)
				}
			}
		})
	}
}

// allowCleartextProofs is the explicit opt-in for a hop protected otherwise (a mesh's TLS, loopback).
func TestCleartextProofsNeedOptIn(t *testing.T) {
	valid, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(valid), "  mtls:\n    trustDomains: [example.org]\n  require: [mtls, wpt, httpsig]",
		"  require: [wpt]\n  allowCleartextProofs: true", 1)
	s = strings.Replace(s, "upstream: https://127.0.0.1:9444", "upstream: http://127.0.0.1:9444\n      allowCleartextProofs: true", 1)
	if s == string(valid) {
		t.Fatal("the edits do not apply to testdata/valid.yaml")
	}
	if _, err := Parse([]byte(s)); err != nil {
		t.Errorf("cleartext proofs with allowCleartextProofs: %v", err)
	}
}

func TestUnknownFieldNamesLine(t *testing.T) {
	_, err := Parse([]byte("identity:\n  files:\n    cert: a\n    kee: b\n"))
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "kee") {
		t.Fatalf("want an error naming line 4 and field kee, got %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, confyaml.MaxBytes+10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized file: %v", err)
	}
}

func repl(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("test edit does not apply: " + old)
		}
		return strings.Replace(s, old, new, 1)
	}
}

// TestAdminListenDefaults: admin.listen defaults per role, so an agent's and a tool's sidecar on one host do not
// collide; a sidecar with both roles must set it, and an address in use says whose it probably is.
func TestAdminListenDefaults(t *testing.T) {
	const (
		identity = "identity: {files: {cert: c, key: k, bundles: {example.org: [b]}}}\n"
		egress   = "egress: {proxyListen: 127.0.0.1:15001, routes: [{name: r, host: h, upstream: 'http://127.0.0.1:1', modes: [passthrough]}]}\n"
		ingress  = "ingress: {listen: 127.0.0.1:9443, backend: 'http://127.0.0.1:1', require: [mtls], mtls: {trustDomains: [example.org]}}\n"
	)
	for _, tt := range []struct{ name, yaml, want string }{
		{"egress", identity + egress, DefaultEgressAdmin},
		{"ingress", identity + ingress, DefaultIngressAdmin},
		{"both, set", identity + egress + ingress + "admin: {listen: 127.0.0.1:15200}\n", "127.0.0.1:15200"},
	} {
		cfg, err := Parse([]byte(tt.yaml))
		if err != nil || cfg.Admin.Listen != tt.want {
			t.Errorf("%s: admin.listen %q, %v; want %q", tt.name, cfg.Admin.Listen, err, tt.want)
		}
	}
	if DefaultEgressAdmin == DefaultIngressAdmin {
		t.Fatal("the roles share a default admin address")
	}
	_, err := Parse([]byte(identity + egress + ingress))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "admin.listen" ||
		!strings.Contains(ve.Errors[0].Msg, "required when one sidecar has both egress and ingress") {
		t.Fatalf("both roles without admin.listen: %v", err)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = listenAdmin(taken.Addr().String())
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "admin.listen: "+taken.Addr().String()+
		" is in use, perhaps by another sidecar on this host: give each sidecar its own admin.listen") {
		t.Fatalf("address in use: %v", err)
	}
}

func TestHTTP2HeaderTableSizeConfig(t *testing.T) {
	valid, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(valid)
	if err != nil {
		t.Fatal(err)
	}
	if got := proxyLimits(cfg.Limits, 0).HTTP2HeaderTableSize; got != DefaultHTTP2HeaderTableSize {
		t.Errorf("default: %d", got)
	}
	if cfg, err = Parse(append(valid, "limits: {http2HeaderTableSize: 65536}\n"...)); err != nil || proxyLimits(cfg.Limits, 0).HTTP2HeaderTableSize != 65536 {
		t.Errorf("65536: %v", err)
	}
	wantFieldError(t, append(valid, "limits: {http2HeaderTableSize: -1}\n"...), "limits.http2HeaderTableSize", "not between 1 and 1048576")
	wantFieldError(t, append(valid, "limits: {http2HeaderTableSize: 2097152}\n"...), "limits.http2HeaderTableSize", "not between 1 and 1048576")
}
