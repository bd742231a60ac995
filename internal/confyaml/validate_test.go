package confyaml

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestChecks: each shared check adds its one problem, worded the same for every config, or none for a good value.
func TestChecks(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("Bearer s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		check func(p *Problems)
		want  string // "" for no problem
	}{
		{"required", func(p *Problems) { p.Required("f", "") }, "f: required"},
		{"required, set", func(p *Problems) { p.Required("f", "x") }, ""},
		{"positive", func(p *Problems) { p.Positive("f", 0) }, "f: must be positive"},
		{"host:port missing, optional", func(p *Problems) { p.HostPort("f", "", false) }, ""},
		{"host:port missing", func(p *Problems) { p.HostPort("f", "", true) }, "f: required (host:port)"},
		{"host:port without port", func(p *Problems) { p.HostPort("f", "h", true) }, `f: "h" is not host:port: address h: missing port in address`},
		{"host:port, bad port", func(p *Problems) { p.HostPort("f", "h:70000", true) }, `f: "h:70000" has an invalid port`},
		{"host:port", func(p *Problems) { p.HostPort("f", "127.0.0.1:1", true) }, ""},
		{"url missing", func(p *Problems) { p.URL("f", "") }, "f: required (http:// or https:// URL)"},
		{"url, other scheme", func(p *Problems) { p.URL("f", "ftp://h") }, `f: "ftp://h" is not an http:// or https:// URL`},
		{"url", func(p *Problems) { p.URL("f", "https://h/p") }, ""},
		{"spiffe id, optional", func(p *Problems) { p.SPIFFEID("f", "") }, ""},
		{"spiffe id", func(p *Problems) { p.SPIFFEID("f", "x") }, `f: "x" is not a SPIFFE ID: scheme is missing or invalid`},
		{"trust domain", func(p *Problems) { p.TrustDomain("f", "A B") }, `f: "A B": trust domain characters`},
		{"workload id, not one", func(p *Problems) { p.WorkloadID("f", "x", td) }, `f: "x": scheme is missing or invalid`},
		{"workload id, a trust domain", func(p *Problems) { p.WorkloadID("f", "spiffe://example.org", td) }, `f: "spiffe://example.org" names a trust domain, not a workload`},
		{"workload id, elsewhere", func(p *Problems) { p.WorkloadID("f", "spiffe://o.org/a", td) }, `f: "spiffe://o.org/a" is not in trust domain "example.org"`},
		{"workload id, any trust domain", func(p *Problems) { p.WorkloadID("f", "spiffe://o.org/a", spiffeid.TrustDomain{}) }, ""},
		{"relative path", func(p *Problems) { p.AbsPath("f", "a/b") }, `f: "a/b" is not an absolute path`},
		{"log level", func(p *Problems) { p.LogLevel("f", "loud") }, `f: "loud" is not one of debug, info, warn, error`},
		{"secret twice", func(p *Problems) { p.Secret("s.auth", "x", secret) }, "s.authFile: set auth or authFile, not both"},
		{"secret file missing", func(p *Problems) { p.Secret("s.auth", "", secret+".missing") }, "s.authFile: open " + secret + ".missing"},
		{"secret file", func(p *Problems) {
			if got := p.Secret("s.auth", "", secret); got != "Bearer s" {
				p.Add("s.auth", "read %q", got)
			}
		}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p Problems
			tt.check(&p)
			err := p.Err("test config")
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected problem: %v", err)
			case tt.want != "" && (err == nil || len(p.list) != 1 || !strings.HasPrefix(p.list[0].Error(), tt.want)):
				t.Fatalf("got %v, want one problem starting %q", err, tt.want)
			}
		})
	}
}
