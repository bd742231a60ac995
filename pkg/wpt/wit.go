package wpt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"
	"github.com/agentauth/agentauth/pkg/autherr"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	typWIT = "wit+jwt"
	typWPT = "wpt+jwt"
	// maxSubjectLen is the longest Workload Identifier accepted; the identifier draft and SPIFFE both require
	// accepting 2048 bytes and say not to generate longer ones.
	maxSubjectLen = 2048
)

// WIT is a verified Workload Identity Token. Values returned by a Verifier may be shared between callers (they
// come from its cache) and must not be modified.
type WIT struct {
	// Raw is the compact JWS exactly as received.
	Raw string
	// Subject is the Workload Identifier (sub), e.g. spiffe://example.org/agent or wimse://example.com/x.
	Subject string
	// TrustDomain is the authority of Subject; its bundle verified the signature.
	TrustDomain spiffeid.TrustDomain
	// Issuer (iss) and ID (jti) are informational (audit); they play no part in identity.
	Issuer, ID string
	// IssuedAt and NotBefore are zero when the claim is absent.
	IssuedAt, NotBefore, Expiry time.Time
	// Key is the workload's public key from cnf.jwk; Key.Algorithm is the algorithm its proofs must use.
	Key jose.JSONWebKey
	// Extra holds the claims this package does not interpret.
	Extra map[string]any
}

// witClaims is the WIT payload as it travels.
type witClaims struct {
	Sub   string           `json:"sub"`
	Iss   string           `json:"iss,omitempty"`
	Jti   string           `json:"jti,omitempty"`
	Exp   *jwt.NumericDate `json:"exp,omitempty"`
	Iat   *jwt.NumericDate `json:"iat,omitempty"`
	Nbf   *jwt.NumericDate `json:"nbf,omitempty"`
	Aud   jsontext.Value   `json:"aud,omitempty"`
	Cnf   *cnfClaim        `json:"cnf,omitempty"`
	Extra map[string]any   `json:",embed"` // claims not named above, at the top level
}

type cnfClaim struct {
	JWK jsontext.Value `json:"jwk,omitempty"`
}

// unmarshalClaims decodes a JWT payload strictly: member names are case-sensitive and a duplicated name is an
// error, so no two JSON parsers can read different claims out of the same signed bytes.
func unmarshalClaims(what string, payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("wpt: %w: %s claims: %v", autherr.ErrMalformed, what, err)
	}
	return nil
}

// parseSubject validates a Workload Identifier and returns its trust domain. spiffe:// IDs get the full SPIFFE
// syntax check; other schemes (wimse://) must be absolute URIs with a lowercase trust-domain authority and no
// userinfo, port, query or fragment.
func parseSubject(sub string) (spiffeid.TrustDomain, error) {
	switch {
	case sub == "":
		return spiffeid.TrustDomain{}, fmt.Errorf("wpt: %w: WIT has no sub", autherr.ErrMalformed)
	case len(sub) > maxSubjectLen:
		return spiffeid.TrustDomain{}, fmt.Errorf("wpt: %w: sub is %d bytes, over %d", autherr.ErrMalformed, len(sub), maxSubjectLen)
	}
	if strings.HasPrefix(sub, "spiffe://") {
		id, err := spiffeid.FromString(sub)
		if err != nil {
			return spiffeid.TrustDomain{}, fmt.Errorf("wpt: %w: sub %q is not a SPIFFE ID: %v", autherr.ErrMalformed, sub, err)
		}
		return id.TrustDomain(), nil
	}
	u, err := url.Parse(sub)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.Host == "" || u.User != nil || u.Port() != "" ||
		u.RawQuery != "" || u.ForceQuery || strings.ContainsRune(sub, '#') {
		return spiffeid.TrustDomain{}, fmt.Errorf("wpt: %w: sub %q is not an absolute URI with a trust-domain authority and no userinfo, port, query or fragment", autherr.ErrMalformed, sub)
	}
	td, err := spiffeid.TrustDomainFromString(u.Host)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("wpt: %w: sub %q has an invalid trust domain: %v", autherr.ErrMalformed, sub, err)
	}
	return td, nil
}

// isTyp compares a JOSE typ value with want, accepting the "application/" media-type form, case-insensitively.
func isTyp(s, want string) bool {
	if len(s) > len("application/") && strings.EqualFold(s[:len("application/")], "application/") {
		s = s[len("application/"):]
	}
	return strings.EqualFold(s, want)
}

// WITClaims is what an Issuer puts in a WIT.
type WITClaims struct {
	// Subject is the Workload Identifier (required).
	Subject string
	// Issuer (iss) and ID (jti) are optional.
	Issuer, ID string
	// IssuedAt defaults to now; Expiry is required and must be after IssuedAt.
	IssuedAt, Expiry time.Time
	// Key is the workload's public key (required); KeyAlg the algorithm its proofs must use (required).
	Key    crypto.PublicKey
	KeyAlg string
	// Extra claims; they may not replace a registered claim.
	Extra map[string]any
}

// Issuer signs WITs with one key.
type Issuer struct {
	signer jose.Signer
}

// NewIssuer returns an Issuer signing with key under alg, announcing kid (which the verifiers' bundle must list
// for that trust domain). Keys that are not *ecdsa.PrivateKey, ed25519.PrivateKey or *rsa.PrivateKey (for example
// TPM-held keys) are used through their crypto.Signer interface.
func NewIssuer(key crypto.Signer, kid, alg string) (*Issuer, error) {
	if key == nil {
		return nil, errors.New("wpt: issuer key is nil")
	}
	if !ijose.Supported(alg) {
		return nil, fmt.Errorf("wpt: %w: issuer alg %q", autherr.ErrUnsupportedAlg, alg)
	}
	if err := ijose.CheckAlgKey(alg, key.Public()); err != nil {
		return nil, fmt.Errorf("wpt: issuer: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithType(typWIT)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg),
		Key: jose.JSONWebKey{Key: signingKey(key), KeyID: kid}}, opts)
	if err != nil {
		return nil, fmt.Errorf("wpt: issuer: %w", err)
	}
	return &Issuer{signer: s}, nil
}

// signingKey passes the key types go-jose handles natively straight through and wraps others as opaque signers.
func signingKey(key crypto.Signer) any {
	switch key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
		return key
	default:
		return cryptosigner.Opaque(key)
	}
}

var registeredWITClaims = []string{"sub", "iss", "jti", "exp", "iat", "nbf", "cnf", "aud"}

// Mint signs a WIT for c.
func (i *Issuer) Mint(c WITClaims) (string, error) {
	if _, err := parseSubject(c.Subject); err != nil {
		return "", err
	}
	if c.Key == nil {
		return "", errors.New("wpt: WIT needs the workload's public key")
	}
	if !ijose.Supported(c.KeyAlg) {
		return "", fmt.Errorf("wpt: %w: workload key alg %q", autherr.ErrUnsupportedAlg, c.KeyAlg)
	}
	if err := ijose.CheckAlgKey(c.KeyAlg, c.Key); err != nil {
		return "", fmt.Errorf("wpt: workload key: %w", err)
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if !c.Expiry.After(c.IssuedAt) {
		return "", fmt.Errorf("wpt: WIT expiry %v is not after its issue time %v", c.Expiry, c.IssuedAt)
	}
	jwk, err := json.Marshal(jose.JSONWebKey{Key: c.Key, Algorithm: c.KeyAlg})
	if err != nil {
		return "", fmt.Errorf("wpt: encoding cnf.jwk: %w", err)
	}
	claims := witClaims{
		Sub: c.Subject, Iss: c.Issuer, Jti: c.ID,
		Exp: jwt.NewNumericDate(c.Expiry), Iat: jwt.NewNumericDate(c.IssuedAt),
		Cnf: &cnfClaim{JWK: jwk},
	}
	for _, name := range registeredWITClaims {
		if _, ok := c.Extra[name]; ok {
			return "", fmt.Errorf("wpt: extra claim %q would replace a registered claim", name)
		}
	}
	claims.Extra = c.Extra
	payload, err := json.Marshal(claims, json.Deterministic(true))
	if err != nil {
		return "", fmt.Errorf("wpt: encoding WIT claims: %w", err)
	}
	jws, err := i.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("wpt: signing WIT: %w", err)
	}
	return jws.CompactSerialize()
}
