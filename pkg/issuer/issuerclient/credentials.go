package issuerclient

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
)

// Issued is a client's checked view of the Credentials message.
type Issued struct {
	ID         spiffeid.ID
	Chain      []*x509.Certificate // leaf first
	X509Bundle *x509bundle.Bundle
	JWTBundle  *jwtbundle.Bundle
	WIT        string    // empty when none was asked for
	WITExpiry  time.Time // zero when WIT is empty
	ExpiresAt  time.Time
}

// VerifyCredentials checks what an issuer returned before a client uses it: the SVID chain verifies against the
// returned X.509 bundle at now and names the returned SPIFFE ID in the bundle's trust domain, the leaf certifies
// x509Key (the key of the client's CSR), and, when witKey is not nil, the WIT verifies against the returned JWT
// bundle, names the same ID, binds witKey and has not expired.
func VerifyCredentials(c *agentauthv1.Credentials, x509Key, witKey crypto.PublicKey, now time.Time) (*Issued, error) {
	id, err := spiffeid.FromString(c.GetSpiffeId())
	if err != nil {
		return nil, fmt.Errorf("issuer: %w: credentials name an invalid SPIFFE ID: %v", autherr.ErrMalformed, err)
	}
	out := &Issued{ID: id}
	for i, der := range c.GetSvidChain() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("issuer: %w: SVID certificate %d: %v", autherr.ErrMalformed, i, err)
		}
		out.Chain = append(out.Chain, cert)
	}
	var roots []*x509.Certificate
	for i, der := range c.GetX509Bundle() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("issuer: %w: bundle certificate %d: %v", autherr.ErrMalformed, i, err)
		}
		roots = append(roots, cert)
	}
	out.X509Bundle = x509bundle.FromX509Authorities(id.TrustDomain(), roots)
	if len(out.Chain) == 0 {
		return nil, fmt.Errorf("issuer: %w: credentials hold no SVID", autherr.ErrMalformed)
	}
	got, _, err := x509svid.Verify(out.Chain, out.X509Bundle, x509svid.WithTime(now))
	if err != nil {
		return nil, fmt.Errorf("issuer: %w: issued SVID does not verify against the issued bundle: %v", autherr.ErrUntrustedIssuer, err)
	}
	if got != id {
		return nil, fmt.Errorf("issuer: %w: SVID is for %q, credentials say %q", autherr.ErrMalformed, got, id)
	}
	if !publicKeyEqual(out.Chain[0].PublicKey, x509Key) {
		return nil, fmt.Errorf("issuer: %w: SVID certifies another key than the one requested", autherr.ErrMalformed)
	}
	if out.JWTBundle, err = jwtbundle.Parse(id.TrustDomain(), c.GetJwtBundle()); err != nil {
		return nil, fmt.Errorf("issuer: %w: JWT bundle: %v", autherr.ErrMalformed, err)
	}
	out.ExpiresAt = out.Chain[0].NotAfter
	if witKey != nil {
		if out.WITExpiry, err = checkIssuedWIT(c.GetWit(), id, witKey, out.JWTBundle, now); err != nil {
			return nil, err
		}
		out.WIT = c.GetWit()
		if out.WITExpiry.Before(out.ExpiresAt) {
			out.ExpiresAt = out.WITExpiry
		}
	}
	return out, nil
}

// checkIssuedWIT verifies a freshly issued WIT and returns its expiry.
func checkIssuedWIT(token string, id spiffeid.ID, key crypto.PublicKey, b *jwtbundle.Bundle, now time.Time) (time.Time, error) {
	if token == "" {
		return time.Time{}, fmt.Errorf("issuer: %w: a WIT was requested but none was issued", autherr.ErrMissing)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512,
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512})
	if err != nil || len(tok.Headers) != 1 {
		return time.Time{}, fmt.Errorf("issuer: %w: issued WIT: %v", autherr.ErrMalformed, err)
	}
	issuerKey, ok := b.FindJWTAuthority(tok.Headers[0].KeyID)
	if !ok {
		return time.Time{}, fmt.Errorf("issuer: %w: issued WIT's kid %q is not in the issued bundle", autherr.ErrUntrustedIssuer, tok.Headers[0].KeyID)
	}
	var claims struct {
		jwt.Claims
		Cnf struct {
			JWK jose.JSONWebKey `json:"jwk"`
		} `json:"cnf"`
	}
	if err := tok.Claims(issuerKey, &claims); err != nil {
		return time.Time{}, fmt.Errorf("issuer: %w: issued WIT: %v", autherr.ErrBadSignature, err)
	}
	switch {
	case claims.Subject != id.String():
		return time.Time{}, fmt.Errorf("issuer: %w: issued WIT is for %q, not %q", autherr.ErrMalformed, claims.Subject, id)
	case !publicKeyEqual(claims.Cnf.JWK.Key, key):
		return time.Time{}, fmt.Errorf("issuer: %w: issued WIT binds another key than the one requested", autherr.ErrMalformed)
	case claims.Expiry == nil || !now.Before(claims.Expiry.Time()):
		return time.Time{}, fmt.Errorf("issuer: %w: issued WIT has no future exp", autherr.ErrExpired)
	}
	return claims.Expiry.Time(), nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
