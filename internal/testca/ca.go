package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultSVIDTTL is the lifetime of an X.509-SVID, JWT-SVID or WIT-SVID when no option overrides it.
const DefaultSVIDTTL = time.Hour

// CA is a test certificate authority for one trust domain. It is safe for concurrent use.
type CA struct {
	tb testing.TB
	td spiffeid.TrustDomain

	root      *x509.Certificate
	signer    *x509.Certificate // the certificate that signs SVIDs: root, or the intermediate
	signerKey crypto.Signer
	chain     []*x509.Certificate // intermediates sent after the leaf

	jwtKID string
	jwtKey *ecdsa.PrivateKey
	witKID string
	witKey *ecdsa.PrivateKey
}

// Option configures New.
type Option func(*caConfig)

type caConfig struct {
	intermediate bool
	notBefore    time.Time
	notAfter     time.Time
}

// WithIntermediate makes the CA sign SVIDs with an intermediate CA certificate; SVID chains then carry it.
func WithIntermediate() Option { return func(c *caConfig) { c.intermediate = true } }

// WithCAValidity sets the validity window of the CA certificates (default: one hour ago to one day ahead).
func WithCAValidity(notBefore, notAfter time.Time) Option {
	return func(c *caConfig) { c.notBefore, c.notAfter = notBefore, notAfter }
}

// New creates a CA for td with a fresh ECDSA P-256 root key, JWT-SVID key and WIT-SVID key. Failures end the test.
func New(tb testing.TB, td spiffeid.TrustDomain, opts ...Option) *CA {
	tb.Helper()
	now := time.Now()
	cfg := caConfig{notBefore: now.Add(-time.Hour), notAfter: now.Add(24 * time.Hour)}
	for _, o := range opts {
		o(&cfg)
	}

	rootKey := newKey(tb)
	rootTmpl := &x509.Certificate{
		SerialNumber:          newSerial(tb),
		Subject:               pkix.Name{Organization: []string{"agentauth testca"}, CommonName: td.Name() + " root"},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             cfg.notBefore,
		NotAfter:              cfg.notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	root := createCert(tb, rootTmpl, rootTmpl, rootKey.Public(), rootKey)

	ca := &CA{
		tb:        tb,
		td:        td,
		root:      root,
		signer:    root,
		signerKey: rootKey,
		jwtKID:    "jwt-" + randomID(tb),
		jwtKey:    newKey(tb),
		witKID:    "wit-" + randomID(tb),
		witKey:    newKey(tb),
	}
	if cfg.intermediate {
		intKey := newKey(tb)
		intTmpl := &x509.Certificate{
			SerialNumber:          newSerial(tb),
			Subject:               pkix.Name{Organization: []string{"agentauth testca"}, CommonName: td.Name() + " intermediate"},
			URIs:                  []*url.URL{td.ID().URL()},
			NotBefore:             cfg.notBefore,
			NotAfter:              cfg.notAfter,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		ca.signer = createCert(tb, intTmpl, root, intKey.Public(), rootKey)
		ca.signerKey = intKey
		ca.chain = []*x509.Certificate{ca.signer}
	}
	return ca
}

// TrustDomain returns the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// SVIDOption configures CreateX509SVID (and, where it applies, CreateJWTSVID and CreateWITSVID).
type SVIDOption func(*svidConfig)

type svidConfig struct {
	ttl       time.Duration
	notBefore time.Time
	notAfter  time.Time
	dnsNames  []string
	extraURIs []*url.URL
	key       crypto.Signer
}

// WithTTL sets the lifetime from now (default DefaultSVIDTTL). A negative TTL yields an expired credential.
func WithTTL(d time.Duration) SVIDOption { return func(c *svidConfig) { c.ttl = d } }

// WithNotBefore sets the start of validity (default: one minute ago, to tolerate clock skew).
func WithNotBefore(t time.Time) SVIDOption { return func(c *svidConfig) { c.notBefore = t } }

// WithNotAfter sets the end of validity, overriding WithTTL. Use a past time to make an expired credential.
func WithNotAfter(t time.Time) SVIDOption { return func(c *svidConfig) { c.notAfter = t } }

// WithDNSNames adds DNS SANs to an X.509-SVID.
func WithDNSNames(names ...string) SVIDOption {
	return func(c *svidConfig) { c.dnsNames = append(c.dnsNames, names...) }
}

// WithExtraURIs adds URI SANs besides the SPIFFE ID, producing a certificate that SPIFFE validators must refuse.
// The returned SVID is assembled directly, since go-spiffe's parser would reject it.
func WithExtraURIs(uris ...*url.URL) SVIDOption {
	return func(c *svidConfig) { c.extraURIs = append(c.extraURIs, uris...) }
}

// WithKey makes the credential bind this key instead of a fresh ECDSA P-256 key (X.509-SVID subject key,
// WIT-SVID cnf key).
func WithKey(key crypto.Signer) SVIDOption { return func(c *svidConfig) { c.key = key } }

func (ca *CA) svidConfig(opts []SVIDOption) svidConfig {
	cfg := svidConfig{ttl: DefaultSVIDTTL}
	for _, o := range opts {
		o(&cfg)
	}
	now := time.Now()
	if cfg.notBefore.IsZero() {
		cfg.notBefore = now.Add(-time.Minute)
	}
	if cfg.notAfter.IsZero() {
		cfg.notAfter = now.Add(cfg.ttl)
	}
	return cfg
}

// CreateX509SVID issues an X.509-SVID for id following the SPIFFE X.509-SVID profile (one URI SAN, cA=false,
// critical digitalSignature key usage, serverAuth+clientAuth EKU). The chain carries the intermediate if any.
func (ca *CA) CreateX509SVID(id spiffeid.ID, opts ...SVIDOption) *x509svid.SVID {
	ca.tb.Helper()
	cfg := ca.svidConfig(opts)
	key := cfg.key
	if key == nil {
		key = newKey(ca.tb)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(ca.tb),
		Subject:               pkix.Name{Organization: []string{"agentauth testca"}},
		URIs:                  append([]*url.URL{id.URL()}, cfg.extraURIs...),
		DNSNames:              cfg.dnsNames,
		NotBefore:             cfg.notBefore,
		NotAfter:              cfg.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	leaf := createCert(ca.tb, tmpl, ca.signer, key.Public(), ca.signerKey)
	return &x509svid.SVID{
		ID:           id,
		Certificates: append([]*x509.Certificate{leaf}, ca.chain...),
		PrivateKey:   key,
	}
}

// X509Authorities returns the root certificate(s) that X.509-SVIDs of this CA chain to.
func (ca *CA) X509Authorities() []*x509.Certificate { return []*x509.Certificate{ca.root} }

// X509Bundle returns the X.509 bundle of the trust domain. It is also an x509bundle.Source.
func (ca *CA) X509Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, ca.X509Authorities())
}

// JWTKey returns the ES256 key that signs this trust domain's JWT-SVIDs, and its key id.
func (ca *CA) JWTKey() (kid string, key crypto.Signer) { return ca.jwtKID, ca.jwtKey }

// JWTBundle returns the JWT bundle of the trust domain (the JWTKey public key under its kid).
func (ca *CA) JWTBundle() *jwtbundle.Bundle {
	return jwtbundle.FromJWTAuthorities(ca.td, map[string]crypto.PublicKey{ca.jwtKID: ca.jwtKey.Public()})
}

// WITKey returns the ES256 key that signs this trust domain's WIT-SVIDs, and its key id. It is distinct from
// JWTKey because the SPIFFE bundle requires wit-svid kids to be unique across the bundle.
func (ca *CA) WITKey() (kid string, key crypto.Signer) { return ca.witKID, ca.witKey }

// WITBundle returns the WIT bundle of the trust domain (the WITKey public key under its kid).
func (ca *CA) WITBundle() *witbundle.Bundle {
	return witbundle.FromWITAuthorities(ca.td, map[string]crypto.PublicKey{ca.witKID: ca.witKey.Public()})
}

// Bundle returns the full SPIFFE bundle: X.509 authorities, the JWT-SVID key and the WIT-SVID key.
func (ca *CA) Bundle() *spiffebundle.Bundle {
	b := spiffebundle.FromX509Authorities(ca.td, ca.X509Authorities())
	b.SetJWTAuthorities(map[string]crypto.PublicKey{ca.jwtKID: ca.jwtKey.Public()})
	b.SetWITAuthorities(map[string]crypto.PublicKey{ca.witKID: ca.witKey.Public()})
	return b
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("testca: generate key: %v", err)
	}
	return key
}

func newSerial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatalf("testca: serial: %v", err)
	}
	return n.Add(n, big.NewInt(1)) // never zero
}

func randomID(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("testca: random id: %v", err)
	}
	return fmt.Sprintf("%x", b)
}

func createCert(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		tb.Fatalf("testca: create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testca: parse certificate: %v", err)
	}
	return cert
}
