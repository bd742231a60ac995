package issuer

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// TestServingCert: a serving certificate verifies for its DNS names against the CA certificate alone (what the
// API server does with a webhook's caBundle), and is no SPIFFE credential.
func TestServingCert(t *testing.T) {
	ca := newFixture(t).open(t)
	key := newP256(t)
	names := []string{"agentauth-webhook.agentauth.svc", "agentauth-webhook.agentauth.svc.cluster.local"}
	chain, err := ca.IssueServingCert(context.Background(), key.Public(), names, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	for _, n := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: roots}); err != nil {
			t.Errorf("verify for %s: %v", n, err)
		}
	}
	if len(leaf.URIs) != 0 || leaf.IsCA || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("serving certificate: URIs %v, CA %v, EKU %v; want no URI SAN, not a CA, serverAuth only", leaf.URIs, leaf.IsCA, leaf.ExtKeyUsage)
	}
	for _, bad := range [][]string{nil, {"Agentauth.svc"}, {"a..b"}, {"-a.svc"}, {"a_b.svc"}} {
		if _, err := ca.IssueServingCert(context.Background(), key.Public(), bad, time.Hour); !errors.Is(err, autherr.ErrDenied) {
			t.Errorf("names %q: %v, want autherr.ErrDenied", bad, err)
		}
	}
	if _, err := ca.IssueServingCert(context.Background(), key.Public(), names, 48*time.Hour); err == nil {
		t.Error("a lifetime above the CA's maximum was accepted")
	}
}
