package testca

import (
	"crypto"
	"crypto/x509"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/svid/witsvid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	agent = spiffeid.RequireFromString("spiffe://example.org/agent")
)

func TestX509SVIDVerifies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		caOpts  []Option
		opts    []SVIDOption
		wantErr bool
		chain   int
	}{
		{name: "root signed", chain: 1},
		{name: "intermediate", caOpts: []Option{WithIntermediate()}, chain: 2},
		{name: "expired", opts: []SVIDOption{WithNotAfter(time.Now().Add(-time.Minute))}, wantErr: true, chain: 1},
		{name: "negative ttl", opts: []SVIDOption{WithTTL(-time.Minute)}, wantErr: true, chain: 1},
		{name: "not yet valid", opts: []SVIDOption{WithNotBefore(time.Now().Add(time.Hour))}, wantErr: true, chain: 1},
		{name: "two URI SANs", opts: []SVIDOption{WithExtraURIs(&url.URL{Scheme: "https", Host: "x.example"})}, wantErr: true, chain: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := New(t, td, tc.caOpts...)
			svid := ca.CreateX509SVID(agent, append(tc.opts, WithDNSNames("agent.example.org"))...)
			if len(svid.Certificates) != tc.chain {
				t.Fatalf("chain length %d, want %d", len(svid.Certificates), tc.chain)
			}
			id, _, err := x509svid.Verify(svid.Certificates, ca.X509Bundle())
			if (err != nil) != tc.wantErr {
				t.Fatalf("Verify err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && id != agent {
				t.Fatalf("id %v, want %v", id, agent)
			}
			if got := svid.Certificates[0].DNSNames; len(got) != 1 || got[0] != "agent.example.org" {
				t.Fatalf("DNS SANs %v", got)
			}
		})
	}
}

func TestOtherCAIsUntrusted(t *testing.T) {
	a, b := New(t, td), New(t, td)
	if _, _, err := x509svid.Verify(a.CreateX509SVID(agent).Certificates, b.X509Bundle()); err == nil {
		t.Fatal("SVID of one CA verified against another CA's bundle")
	}
}

func TestJWTSVID(t *testing.T) {
	ca := New(t, td)
	token := ca.CreateJWTSVID(agent, []string{"tool"})
	svid, err := jwtsvid.ParseAndValidate(token, ca.JWTBundle(), []string{"tool"})
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != agent {
		t.Fatalf("sub %v", svid.ID)
	}
	if _, err := jwtsvid.ParseAndValidate(token, New(t, td).JWTBundle(), []string{"tool"}); err == nil {
		t.Fatal("JWT-SVID verified with another CA's key")
	}
}

func TestWITSVID(t *testing.T) {
	ca := New(t, td)
	wit := ca.CreateWITSVID(agent, WithTTL(10*time.Minute))
	svid, err := witsvid.ParseAndValidate(wit.Token, ca.WITBundle())
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != agent || !svid.Expiry.Equal(wit.Expiry) || wit.Alg != "ES256" {
		t.Fatalf("got %v %v alg %s, want %v %v", svid.ID, svid.Expiry, wit.Alg, agent, wit.Expiry)
	}
	if kid, _ := ca.WITKey(); svid.KeyID != kid {
		t.Fatalf("kid %q, want %q", svid.KeyID, kid)
	}
	pub, ok := svid.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(wit.Key.Public()) {
		t.Fatal("cnf.jwk does not match the returned key")
	}
	expired := ca.CreateWITSVID(agent, WithTTL(-time.Hour))
	if _, err := witsvid.ParseAndValidate(expired.Token, ca.WITBundle()); err == nil {
		t.Fatal("expired WIT-SVID validated")
	}
}

func TestFiles(t *testing.T) {
	ca := New(t, td, WithIntermediate())
	dir := t.TempDir()
	svid := ca.CreateX509SVID(agent)
	certPath, keyPath := ca.WriteSVIDFiles(dir, svid)
	loaded, err := x509svid.Load(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Certificates[0].Equal(svid.Certificates[0]) || len(loaded.Certificates) != 2 {
		t.Fatal("loaded SVID differs")
	}
	bundle, err := x509bundle.Load(td, ca.WriteBundleFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(loaded.Certificates, bundle); err != nil {
		t.Fatal(err)
	}
	full, err := spiffebundle.Load(td, ca.WriteJWTBundleFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if !full.Equal(ca.Bundle()) {
		t.Fatal("SPIFFE bundle file does not round-trip")
	}
	wit := ca.CreateWITSVID(agent)
	tokenPath, witKeyPath := ca.WriteWITFiles(dir, wit)
	for _, p := range []string{tokenPath, witKeyPath} {
		if p == "" {
			t.Fatal("empty path")
		}
	}
}

func TestAuthorities(t *testing.T) {
	ca := New(t, td, WithIntermediate())
	roots := ca.X509Authorities()
	if len(roots) != 1 || !roots[0].IsCA || roots[0].CheckSignatureFrom(roots[0]) != nil {
		t.Fatal("root is not a self-signed CA")
	}
	leaf := ca.CreateX509SVID(agent).Certificates[0]
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Fatal("leaf must not be a CA")
	}
	if leaf.CheckSignatureFrom(roots[0]) == nil {
		t.Fatal("leaf signed directly by root despite intermediate")
	}
}
