package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// Names of the CA's keys in its KeyStore and of its record in the Store.
const (
	KeyX509CA     = "x509-ca"
	KeyWITSigning = "wit-signing"
	caRecordName  = "x509"
)

// Defaults for Config.
const (
	DefaultCATTL  = 5 * 365 * 24 * time.Hour
	DefaultMaxTTL = 24 * time.Hour
	// backdate is how far before "now" a certificate's NotBefore is put, so peers whose clocks run a little
	// behind accept it at once.
	backdate = 30 * time.Second
)

// Config configures New.
type Config struct {
	// TrustDomain is the one trust domain this CA issues for (required).
	TrustDomain spiffeid.TrustDomain
	// Keys holds the CA key and the WIT signing key (required).
	Keys KeyStore
	// Store keeps the CA certificate, issued serials and join tokens (required).
	Store Store
	// CATTL is the validity of a newly created root certificate; 0 means DefaultCATTL.
	CATTL time.Duration
	// Rotation says when Rotate prepares and activates the root's successor.
	Rotation Rotation
	// MaxTTL bounds every SVID, WIT and join token lifetime; 0 means DefaultMaxTTL.
	MaxTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// WITKeyAlgs is the trust domain's WIT key algorithm policy: the cnf.jwk.alg values it certifies, each one of
	// wire.WIMSEWITAlgs. Empty means wire.WITAlgs, the SPIFFE WIT-SVID profile (no EdDSA). The WIT's own
	// signature stays ES256 whatever it says.
	WITKeyAlgs []string
	// WITKeyAlgsSetting names where WITKeyAlgs comes from (e.g. the controller's issuer.witKeyAlgorithms), so a
	// refused workload is told what to change; empty means "the trust domain's WIT key algorithm policy".
	WITKeyAlgsSetting string
}

// CA is the certificate authority of one trust domain: a self-signed ECDSA P-256 root that signs X.509-SVIDs,
// and an ES256 key that signs WIT-SVIDs, both rotated by Rotate (rotation.go). It is safe for concurrent use.
type CA struct {
	td       spiffeid.TrustDomain
	store    Store
	keys     KeyStore
	maxTTL   time.Duration
	caTTL    time.Duration
	rotation Rotation
	now      func() time.Time

	// set is the generations of the root (rotation.go): the active one signs, the others are only trusted.
	set atomic.Pointer[caSet]
	// rotating serialises Rotate and Reload, which read the store and replace set.
	rotating sync.Mutex
	// dropped: the generations whose expiry Rotate has reported (StepDropped).
	dropped map[int]bool
	// witKeyAlgs and witKeyAlgsSetting: Config.WITKeyAlgs (defaulted) and Config.WITKeyAlgsSetting.
	witKeyAlgs        []string
	witKeyAlgsSetting string
}

// New loads the CA of cfg.TrustDomain from cfg.Store and cfg.Keys, creating the keys and the root certificate
// on first use. It refuses a stored root that does not match the stored key, names another trust domain, or
// has expired.
func New(ctx context.Context, cfg Config) (*CA, error) {
	if cfg.TrustDomain.IsZero() || cfg.Keys == nil || cfg.Store == nil {
		return nil, errors.New("issuer: Config needs TrustDomain, Keys and Store")
	}
	ca := &CA{td: cfg.TrustDomain, store: cfg.Store, keys: cfg.Keys, maxTTL: cfg.MaxTTL, caTTL: cfg.CATTL, now: cfg.Now,
		rotation: cfg.Rotation, witKeyAlgs: slices.Clone(cfg.WITKeyAlgs), witKeyAlgsSetting: cfg.WITKeyAlgsSetting,
		dropped: map[int]bool{}}
	if len(ca.witKeyAlgs) == 0 {
		ca.witKeyAlgs = slices.Clone(wire.WITAlgs)
	}
	for _, a := range ca.witKeyAlgs {
		if !slices.Contains(wire.WIMSEWITAlgs, a) {
			return nil, fmt.Errorf("issuer: %w: WIT key alg %q cannot be certified; choose from %v", autherr.ErrUnsupportedAlg, a, wire.WIMSEWITAlgs)
		}
	}
	if ca.witKeyAlgsSetting == "" {
		ca.witKeyAlgsSetting = "the trust domain's WIT key algorithm policy"
	}
	if ca.maxTTL <= 0 {
		ca.maxTTL = DefaultMaxTTL
	}
	if ca.now == nil {
		ca.now = time.Now
	}
	if ca.caTTL <= 0 {
		ca.caTTL = DefaultCATTL
	}
	if err := ca.rotation.setDefaults(); err != nil {
		return nil, err
	}
	set, err := ca.load(ctx, true)
	if err != nil {
		return nil, err
	}
	if now := ca.now(); !now.Before(set.active.root.NotAfter) && set.prepared == nil {
		return nil, fmt.Errorf("issuer: %w: CA certificate expired at %s and no successor was prepared; remove the stored CA records (%q and %q…) to create a new root (every workload then needs the new bundle)",
			autherr.ErrExpired, set.active.root.NotAfter.Format(time.RFC3339), caRecordName, caRecordName+".")
	}
	ca.set.Store(set)
	return ca, nil
}

// checkCAKey insists on ECDSA P-256: the root is documented as such and WITs are signed ES256.
func checkCAKey(pub crypto.PublicKey) error {
	if k, ok := pub.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return fmt.Errorf("issuer: CA keys must be ECDSA P-256, the key store holds a %T", pub)
	}
	return nil
}

// newAuthority builds generation gen from its root and the keys it names, checking that they belong together.
func (ca *CA) newAuthority(gen int, root *x509.Certificate, key crypto.Signer) (*authority, error) {
	if !publicKeyEqual(root.PublicKey, key.Public()) {
		x, _ := keyNames(gen)
		return nil, fmt.Errorf("issuer: stored CA certificate (serial %x) does not match key %q in the key store: restore the matching key, or remove both to start a new CA",
			root.SerialNumber, x)
	}
	if len(root.URIs) != 1 || root.URIs[0].String() != ca.td.IDString() {
		return nil, fmt.Errorf("issuer: stored CA certificate is for %v, not for trust domain %q", root.URIs, ca.td)
	}
	_, witName := keyNames(gen)
	witKey, err := ca.p256Key(witName)
	if err != nil {
		return nil, err
	}
	a := &authority{gen: gen, root: root, key: key, witKey: witKey.Public()}
	thumb, err := (&jose.JSONWebKey{Key: a.witKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("issuer: WIT key thumbprint: %w", err)
	}
	// The kid is the key's RFC 7638 thumbprint: stable across restarts, unique per key, nothing to store.
	a.witKID = base64.RawURLEncoding.EncodeToString(thumb)
	if a.wit, err = wpt.NewIssuer(witKey, a.witKID, "ES256"); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	return a, nil
}

// caKey returns the root key of generation gen, which must be ECDSA P-256.
func (ca *CA) caKey(gen int) (crypto.Signer, error) {
	name, _ := keyNames(gen)
	return ca.p256Key(name)
}

// p256Key returns the key store's key name (a root or a WIT signing key), which must be ECDSA P-256.
func (ca *CA) p256Key(name string) (crypto.Signer, error) {
	key, err := ca.keys.Signer(name)
	if err != nil {
		return nil, err
	}
	if err := checkCAKey(key.Public()); err != nil {
		return nil, err
	}
	return key, nil
}

// createRoot creates the self-signed root of generation gen with key and stores it as its record.
func (ca *CA) createRoot(ctx context.Context, gen int, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"agentauth"}, CommonName: ca.td.Name()},
		// A signing certificate with a SPIFFE ID must have no path: the trust domain's own ID.
		URIs:                  []*url.URL{ca.td.ID().URL()},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ca.caTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Leaves are signed directly by the root; no intermediate may exist below it.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("issuer: creating CA certificate: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: parsing new CA certificate: %w", err)
	}
	if err := ca.store.PutCAMaterial(ctx, &agentauthv1.CAMaterial{Name: rootRecord(gen), CertificatesDer: [][]byte{der}}); err != nil {
		return nil, fmt.Errorf("issuer: storing CA certificate: %w", err)
	}
	return root, nil
}

// TrustDomain returns the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Root returns the active root certificate: the one that signs.
func (ca *CA) Root() *x509.Certificate { return ca.set.Load().active.root }

// Roots returns the root certificates of the trust bundle: the active root, then the prepared successor if any,
// then the retired roots that have not expired, newest first.
func (ca *CA) Roots() []*x509.Certificate {
	var roots []*x509.Certificate
	for _, a := range ca.set.Load().trusted(ca.now()) {
		roots = append(roots, a.root)
	}
	return roots
}

// X509Bundle returns the trust domain's X.509 bundle: Roots.
func (ca *CA) X509Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, ca.Roots())
}

// witKeys returns the WIT signing keys of the roots in the bundle, by kid.
func (ca *CA) witKeys() map[string]crypto.PublicKey {
	keys := map[string]crypto.PublicKey{}
	for _, a := range ca.set.Load().trusted(ca.now()) {
		keys[a.witKID] = a.witKey
	}
	return keys
}

// JWTBundle returns the WIT signing keys (of the active, prepared and unexpired retired generations) as a JWT
// bundle, which is what pkg/wpt's Verifier takes its WIT issuer keys from. This CA issues no JWT-SVIDs, so the
// keys play no other role.
func (ca *CA) JWTBundle() *jwtbundle.Bundle {
	return jwtbundle.FromJWTAuthorities(ca.td, ca.witKeys())
}

// WITBundle returns the WIT signing keys as a WIT-SVID bundle.
func (ca *CA) WITBundle() *witbundle.Bundle {
	return witbundle.FromWITAuthorities(ca.td, ca.witKeys())
}

// checkReserved refuses id if it is one of wire.ReservedIDs or one of also (the issuer service's configured ServerID):
// a workload holding one could impersonate the issuer or the controller to every other workload.
func (ca *CA) checkReserved(id spiffeid.ID, also ...spiffeid.ID) error {
	if slices.Contains(wire.ReservedIDs(ca.td), id) || slices.Contains(also, id) {
		return fmt.Errorf("issuer: %w: %q is reserved for the control plane (issuer and controller)", autherr.ErrDenied, id)
	}
	return nil
}

// checkIssue validates the identity and lifetime of a credential to issue and returns the generation to sign
// it with (the active one) and its validity window.
func (ca *CA) checkIssue(id spiffeid.ID, ttl time.Duration) (signer *authority, notBefore, notAfter time.Time, err error) {
	if !id.MemberOf(ca.td) {
		return nil, notBefore, notAfter, fmt.Errorf("issuer: %w: %q is not in trust domain %q", autherr.ErrDenied, id, ca.td)
	}
	if id.Path() == "" {
		return nil, notBefore, notAfter, fmt.Errorf("issuer: %w: %q has no path; workload SVIDs need one", autherr.ErrDenied, id)
	}
	return ca.window(ttl)
}

// window returns the active generation and the validity window of a credential it issues now for ttl: from
// shortly before now to now+ttl, cut at the root's expiry, so no credential outlives the root that vouches for it.
func (ca *CA) window(ttl time.Duration) (signer *authority, notBefore, notAfter time.Time, err error) {
	if ttl <= 0 || ttl > ca.maxTTL {
		return nil, notBefore, notAfter, fmt.Errorf("issuer: lifetime %v is not within (0, %v]", ttl, ca.maxTTL)
	}
	a := ca.set.Load().active
	now := ca.now()
	notAfter = now.Add(ttl)
	if notAfter.After(a.root.NotAfter) {
		notAfter = a.root.NotAfter
	}
	if !notAfter.After(now) {
		return nil, notBefore, notAfter, fmt.Errorf("issuer: %w: CA certificate expired at %s", autherr.ErrExpired, a.root.NotAfter.Format(time.RFC3339))
	}
	return a, now.Add(-backdate), notAfter, nil
}

// IssueX509SVID issues an X.509-SVID for id binding pub, valid for ttl (cut at the root's expiry), records its
// serial in the Store and returns the chain to send: the leaf alone, as the root signs it directly. The leaf has
// exactly one URI SAN (id), a critical key usage of digitalSignature only, extended key usages serverAuth and
// clientAuth, cA=false, and a random 128-bit serial. The caller must have proven possession of pub (a CSR).
func (ca *CA) IssueX509SVID(ctx context.Context, pub crypto.PublicKey, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	if err := checkWorkloadKey(pub); err != nil {
		return nil, err
	}
	signer, notBefore, notAfter, err := ca.checkIssue(id, ttl)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// An empty subject makes crypto/x509 mark the SAN extension critical, as the X.509-SVID spec requires.
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.root, pub, signer.key)
	if err != nil {
		return nil, fmt.Errorf("issuer: signing X.509-SVID: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: parsing new X.509-SVID: %w", err)
	}
	err = ca.store.RecordIssued(ctx, &agentauthv1.IssuedCert{
		Serial:    hex.EncodeToString(serial.Bytes()),
		SpiffeId:  id.String(),
		NotBefore: timestamppb.New(leaf.NotBefore),
		NotAfter:  timestamppb.New(leaf.NotAfter),
	})
	if err != nil {
		return nil, fmt.Errorf("issuer: recording serial: %w", err)
	}
	return []*x509.Certificate{leaf}, nil
}

// IssueWIT issues a WIT-SVID (typ wit+jwt, kid set, no aud) for id that binds pub, whose proofs must use alg,
// valid for ttl (cut at the root's expiry).
func (ca *CA) IssueWIT(ctx context.Context, id spiffeid.ID, pub crypto.PublicKey, alg string, ttl time.Duration) (string, error) {
	token, _, err := ca.issueWIT(ctx, id, pub, alg, ttl)
	return token, err
}

func (ca *CA) issueWIT(_ context.Context, id spiffeid.ID, pub crypto.PublicKey, alg string, ttl time.Duration) (string, time.Time, error) {
	if err := checkWITAlg(alg, pub); err != nil {
		return "", time.Time{}, err
	}
	if err := ca.checkWITPolicy(alg); err != nil {
		return "", time.Time{}, err
	}
	signer, _, exp, err := ca.checkIssue(id, ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", time.Time{}, fmt.Errorf("issuer: %w", err)
	}
	token, err := signer.wit.Mint(wpt.WITClaims{
		Subject:  id.String(),
		ID:       base64.RawURLEncoding.EncodeToString(jti),
		IssuedAt: ca.now(),
		Expiry:   exp,
		Key:      pub,
		KeyAlg:   alg,
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issuer: minting WIT: %w", err)
	}
	return token, exp, nil
}

// WITKeyAlgs returns the cnf.jwk.alg values this CA certifies.
func (ca *CA) WITKeyAlgs() []string { return slices.Clone(ca.witKeyAlgs) }

// checkWITPolicy refuses a WIT key algorithm the trust domain does not certify, naming the setting to change.
func (ca *CA) checkWITPolicy(alg string) error {
	if slices.Contains(ca.witKeyAlgs, alg) {
		return nil
	}
	why := ""
	if alg == "EdDSA" {
		why = "; EdDSA is a WIMSE workload key algorithm that the SPIFFE WIT-SVID profile does not allow, so a trust domain must opt in"
	}
	return fmt.Errorf("issuer: %w: WIT key alg %q is not allowed by %s (%s)%s", autherr.ErrUnsupportedAlg, alg,
		ca.witKeyAlgsSetting, strings.Join(ca.witKeyAlgs, ", "), why)
}

// randomSerial returns a positive random serial number of up to 128 bits.
func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("issuer: serial: %w", err)
		}
		if s := new(big.Int).SetBytes(b); s.Sign() > 0 {
			return s, nil
		}
	}
}

// hashJoinToken is the store id of a join token: the hex SHA-256 of the secret, so the store never holds a
// usable token.
func hashJoinToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
