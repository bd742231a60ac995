package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// IssueServingCert issues a TLS server certificate for dnsNames binding pub, valid for ttl (cut at the root's
// expiry), for a server that clients outside the trust domain reach by DNS name: the Kubernetes API server
// calling the controller's admission webhook, with the CA certificate as its caBundle. It carries no SPIFFE ID
// (no URI SAN), only the DNS names and serverAuth, so it can never pass for a workload's X.509-SVID.
func (ca *CA) IssueServingCert(_ context.Context, pub crypto.PublicKey, dnsNames []string, ttl time.Duration) ([]*x509.Certificate, error) {
	if err := checkWorkloadKey(pub); err != nil {
		return nil, err
	}
	if len(dnsNames) == 0 {
		return nil, fmt.Errorf("issuer: %w: a serving certificate needs at least one DNS name", autherr.ErrDenied)
	}
	for _, n := range dnsNames {
		if !IsDNSName(n) {
			return nil, fmt.Errorf("issuer: %w: %q is not a DNS name (lower-case letters, digits, '-' and '.')", autherr.ErrDenied, n)
		}
	}
	signer, notBefore, notAfter, err := ca.window(ttl)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		DNSNames:              dnsNames,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.root, pub, signer.key)
	if err != nil {
		return nil, fmt.Errorf("issuer: signing serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: parsing new serving certificate: %w", err)
	}
	return []*x509.Certificate{leaf}, nil
}

// IsDNSName reports whether n is a lower-case DNS name (RFC 1123 labels), as Kubernetes Service names are.
func IsDNSName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return false
			}
		}
	}
	return true
}
