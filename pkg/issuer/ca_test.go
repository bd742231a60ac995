package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wpt"
)

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

func TestRootConformsToSPIFFE(t *testing.T) {
	f := newFixture(t)
	root := f.ca.Root()
	if !root.IsCA || !root.BasicConstraintsValid {
		t.Error("root is not cA=true")
	}
	if root.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("root lacks keyCertSign")
	}
	if len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://example.org" {
		t.Errorf("root URI SANs %v, want exactly the trust domain ID with no path", root.URIs)
	}
	if k, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("root key %T, want ECDSA P-256", root.PublicKey)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
}

func TestX509SVIDConformsToSPIFFE(t *testing.T) {
	f := newFixture(t)
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	key := newP256(t)
	chain, err := f.ca.IssueX509SVID(context.Background(), key.Public(), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
		t.Errorf("URI SANs %v, want exactly [%s]", leaf.URIs, id)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Error("leaf must carry cA=false")
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %v, want digitalSignature only", leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("extended key usage %v, want serverAuth and clientAuth", leaf.ExtKeyUsage)
	}
	for _, ext := range leaf.Extensions {
		switch {
		case ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 15}) && !ext.Critical:
			t.Error("key usage extension is not critical")
		case ext.Id.Equal(oidSAN) && len(leaf.RawSubject) <= 2 && !ext.Critical:
			t.Error("subject is empty but the SAN extension is not critical")
		}
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %x is not a positive number of at most 128 bits", leaf.SerialNumber)
	}
	got, _, err := x509svid.Verify(chain, f.ca.X509Bundle())
	if err != nil || got != id {
		t.Fatalf("chain does not verify against the bundle: id=%v err=%v", got, err)
	}
	if n := f.store.issuedCount(); n != 1 {
		t.Errorf("%d serials recorded, want 1", n)
	}
	if f.store.issued[0].GetSerial() != hex.EncodeToString(leaf.SerialNumber.Bytes()) {
		t.Errorf("recorded serial %s, issued %x", f.store.issued[0].GetSerial(), leaf.SerialNumber)
	}
}

func TestIssueRefusals(t *testing.T) {
	f := newFixture(t)
	key := newP256(t)
	weak, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		id   string
		key  any
		ttl  time.Duration
		want error
	}{
		{"other trust domain", "spiffe://other.org/a", key.Public(), time.Hour, autherr.ErrDenied},
		{"no path", "spiffe://example.org", key.Public(), time.Hour, autherr.ErrDenied},
		{"weak key", "spiffe://example.org/a", weak.Public(), time.Hour, autherr.ErrUnsupportedAlg},
		{"ttl too long", "spiffe://example.org/a", key.Public(), 48 * time.Hour, nil},
		{"zero ttl", "spiffe://example.org/a", key.Public(), 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.ca.IssueX509SVID(context.Background(), tt.key, spiffeid.RequireFromString(tt.id), tt.ttl)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if n := f.store.issuedCount(); n != 0 {
		t.Errorf("%d serials recorded for refused requests", n)
	}
}

func TestWITVerifiesWithBundle(t *testing.T) {
	f := newFixture(t)
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	key := newP256(t)
	tok, err := f.ca.IssueWIT(context.Background(), id, key.Public(), "ES256", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := wpt.NewVerifier(wpt.VerifierConfig{Bundles: wpt.FromWITBundles(f.ca.WITBundle()), Replay: replay.New(replay.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	wit, err := v.VerifyWIT(context.Background(), tok)
	if err != nil {
		t.Fatalf("WIT does not verify against JWTBundle: %v", err)
	}
	if wit.Subject != id.String() || !key.PublicKey.Equal(wit.Key.Key) || wit.Key.Algorithm != "ES256" {
		t.Errorf("WIT sub=%q alg=%q key=%v", wit.Subject, wit.Key.Algorithm, wit.Key.Key)
	}
	// EdDSA is a WIMSE algorithm but not a WIT-SVID one.
	if _, err := f.ca.IssueWIT(context.Background(), id, key.Public(), "EdDSA", time.Hour); !errors.Is(err, autherr.ErrUnsupportedAlg) {
		t.Errorf("EdDSA WIT: err = %v, want autherr.ErrUnsupportedAlg", err)
	}
	// The WIT bundle carries the same authority.
	if _, ok := f.ca.WITBundle().FindWITAuthority(wit.Key.KeyID); ok {
		t.Error("cnf key must not be a WIT authority") // sanity: cnf.jwk has no kid
	}
	if len(f.ca.WITBundle().WITAuthorities()) != 1 {
		t.Error("WIT bundle should hold one authority")
	}
	// A WIT from another CA's key does not verify.
	other := testca.New(t, td)
	foreign := other.CreateWITSVID(id)
	if _, err := v.VerifyWIT(context.Background(), foreign.Token); err == nil {
		t.Error("a WIT signed by another CA verified")
	}
}

func TestCAReloadsAndRefusesMismatch(t *testing.T) {
	f := newFixture(t)
	again := f.open(t)
	if !again.Root().Equal(f.ca.Root()) {
		t.Fatal("reopening the CA created a new root")
	}
	if again.set.Load().active.witKID != f.ca.set.Load().active.witKID {
		t.Error("reopening the CA changed the WIT kid")
	}
	// Another key directory with the same store: the stored root does not match the key.
	keys, err := NewFileKeyStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), Config{TrustDomain: td, Keys: keys, Store: f.store})
	if err == nil || !strings.Contains(err.Error(), "does not match key") {
		t.Fatalf("mismatched key: err = %v", err)
	}
	// Past the root's expiry with no successor prepared: refused, saying what to do.
	f.clock.Add(DefaultCATTL + time.Hour)
	keys, _ = NewFileKeyStore(f.dir)
	_, err = New(context.Background(), Config{TrustDomain: td, Keys: keys, Store: f.store, Now: f.clock.Now})
	if !errors.Is(err, autherr.ErrExpired) || !strings.Contains(err.Error(), "no successor was prepared") {
		t.Fatalf("expired root: err = %v", err)
	}
}

func TestSVIDCutAtRootExpiry(t *testing.T) {
	store, dir := newMemStore(), t.TempDir()
	keys, _ := NewFileKeyStore(dir)
	ca, err := New(context.Background(), Config{TrustDomain: td, Keys: keys, Store: store, CATTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.IssueX509SVID(context.Background(), newP256(t).Public(), spiffeid.RequireFromString("spiffe://example.org/a"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if chain[0].NotAfter.After(ca.Root().NotAfter) {
		t.Errorf("SVID NotAfter %v is after the root's %v", chain[0].NotAfter, ca.Root().NotAfter)
	}
}

func TestJoinTokenSingleUse(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	tok, err := f.ca.CreateJoinToken(ctx, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != joinTokenLen {
		t.Fatalf("token length %d", len(tok))
	}
	for _, rec := range f.store.tokens {
		if strings.Contains(rec.GetId(), tok) {
			t.Fatal("the store holds the token itself, not a hash")
		}
	}
	got, err := f.ca.Attest(ctx, tok)
	if err != nil || got != id {
		t.Fatalf("first Attest = %v, %v", got, err)
	}
	if _, err := f.ca.Attest(ctx, tok); !errors.Is(err, autherr.ErrReplay) {
		t.Fatalf("second Attest: err = %v, want autherr.ErrReplay", err)
	}

	expiring, err := f.ca.CreateJoinToken(ctx, id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(2 * time.Minute)
	if _, err := f.ca.Attest(ctx, expiring); !errors.Is(err, autherr.ErrExpired) {
		t.Fatalf("expired token: err = %v, want autherr.ErrExpired", err)
	}

	bad := []struct {
		tok  string
		want error
	}{
		{"", autherr.ErrMissing},
		{"short", autherr.ErrMalformed},
		{strings.Repeat("!", joinTokenLen), autherr.ErrMalformed},
		{strings.Repeat("A", joinTokenLen), autherr.ErrDenied},
	}
	for _, b := range bad {
		if _, err := f.ca.Attest(ctx, b.tok); !errors.Is(err, b.want) {
			t.Errorf("Attest(%q): err = %v, want %v", b.tok, err, b.want)
		}
	}
	if _, err := f.ca.CreateJoinToken(ctx, spiffeid.RequireFromString("spiffe://other.org/x"), time.Hour); err == nil {
		t.Error("join token for another trust domain was created")
	}
}

// TestWITKeyAlgorithmPolicy: the CA certifies an Ed25519 workload key only when the trust domain's policy lists
// EdDSA, refuses it by default naming the setting, and the WIT it issues verifies under a verifier that allows
// EdDSA and is refused by one on the WIT-SVID profile.
func TestWITKeyAlgorithmPolicy(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	open := func(t *testing.T, algs []string) (*CA, error) {
		keys, err := NewFileKeyStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return New(context.Background(), Config{TrustDomain: td, Keys: keys, Store: newMemStore(),
			WITKeyAlgs: algs, WITKeyAlgsSetting: "issuer.witKeyAlgorithms"})
	}
	tests := []struct {
		name    string
		algs    []string
		alg     string
		wantErr string // "" for issued
	}{
		{"default refuses EdDSA, naming the setting", nil, "EdDSA", "issuer.witKeyAlgorithms (ES256"},
		{"ES256-only refuses EdDSA", []string{"ES256"}, "EdDSA", "SPIFFE WIT-SVID profile does not allow"},
		{"opted in", []string{"EdDSA", "ES256"}, "EdDSA", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := open(t, tt.algs)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := ca.IssueWIT(context.Background(), id, edKey.Public(), tt.alg, time.Hour)
			if tt.wantErr != "" {
				if !errors.Is(err, autherr.ErrUnsupportedAlg) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want unsupported_alg naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			verify := func(algs []string) error {
				v, err := wpt.NewVerifier(wpt.VerifierConfig{Bundles: wpt.FromWITBundles(ca.WITBundle()),
					Replay: replay.New(replay.Options{}), AllowedAlgs: algs})
				if err != nil {
					t.Fatal(err)
				}
				_, err = v.VerifyWIT(context.Background(), tok)
				return err
			}
			if err := verify([]string{"ES256", "EdDSA"}); err != nil {
				t.Fatalf("EdDSA WIT under a WIMSE verifier: %v", err)
			}
			if err := verify([]string{"ES256"}); !errors.Is(err, autherr.ErrUnsupportedAlg) {
				t.Fatalf("EdDSA WIT under a WIT-SVID profile verifier: err = %v, want unsupported_alg", err)
			}
		})
	}
	if _, err := open(t, []string{"HS256"}); !errors.Is(err, autherr.ErrUnsupportedAlg) {
		t.Fatalf("policy listing HS256: err = %v, want unsupported_alg", err)
	}
}
