package oauth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// supportedAlgs is what go-jose's parsers are given: every algorithm internal/jose supports.
var supportedAlgs = ijose.SupportedAlgs()

// algList checks names (empty: the defaults) and returns them as go-jose algorithms.
func algList(names []string) ([]jose.SignatureAlgorithm, error) {
	if len(names) == 0 {
		names = ijose.DefaultAllowedAlgs()
	}
	out := make([]jose.SignatureAlgorithm, 0, len(names))
	for _, n := range names {
		if !ijose.Supported(n) {
			return nil, fmt.Errorf("oauth: %w: %q cannot be allowed (asymmetric JWS algorithms only)", autherr.ErrUnsupportedAlg, n)
		}
		out = append(out, jose.SignatureAlgorithm(n))
	}
	return out, nil
}

// signedJWT is a compact JWS whose signature verified.
type signedJWT struct {
	header  jose.Header
	typ     string
	payload []byte
	key     crypto.PublicKey // the key that verified it
}

// verifyJWS parses a compact JWS, requires an allowed alg, picks the key by kid from keys and verifies the
// signature. what names the token in errors ("Txn-Token", "subject token").
func verifyJWS(ctx context.Context, what, token string, algs []jose.SignatureAlgorithm, keys KeySource, issuer string) (*signedJWT, error) {
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil {
		var ua *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &ua) {
			return nil, fmt.Errorf("oauth: %w: %s alg %q is not allowed", autherr.ErrUnsupportedAlg, what, ua.Got)
		}
		return nil, fmt.Errorf("oauth: %w: %s is not a compact JWS: %v", autherr.ErrMalformed, what, err)
	}
	hdr := jws.Signatures[0].Header
	typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string)
	cands, err := keys.Keys(ctx, hdr.KeyID)
	if err != nil {
		if autherr.Of(err) != nil {
			return nil, fmt.Errorf("oauth: keys of %s: %w", issuer, err)
		}
		return nil, fmt.Errorf("oauth: %w: keys of %s: %v", autherr.ErrUntrustedIssuer, issuer, err)
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("oauth: %w: %s names key %q, which %s does not have", autherr.ErrUntrustedIssuer, what, hdr.KeyID, issuer)
	}
	var fit []jose.JSONWebKey
	for _, k := range cands {
		if (k.Algorithm == "" || k.Algorithm == hdr.Algorithm) && ijose.AlgFits(hdr.Algorithm, k.Key) {
			fit = append(fit, k)
		}
	}
	switch {
	case len(fit) == 0:
		return nil, fmt.Errorf("oauth: %w: no key %q of %s fits %s alg %q", autherr.ErrUnsupportedAlg, hdr.KeyID, issuer, what, hdr.Algorithm)
	case hdr.KeyID == "" && len(fit) > 1:
		return nil, fmt.Errorf("oauth: %w: %s has no kid and %s has %d keys for alg %q", autherr.ErrUntrustedIssuer, what, issuer, len(fit), hdr.Algorithm)
	}
	for _, k := range fit {
		payload, err := jws.Verify(k.Key)
		if err == nil {
			return &signedJWT{header: hdr, typ: typ, payload: payload, key: k.Key}, nil
		}
		if errors.Is(err, jose.ErrUnsupportedCriticalHeader) {
			return nil, fmt.Errorf("oauth: %w: %s: %v", autherr.ErrMalformed, what, err)
		}
	}
	return nil, fmt.Errorf("oauth: %w: %s signature does not verify with key %q of %s", autherr.ErrBadSignature, what, hdr.KeyID, issuer)
}

// isTyp compares a JOSE typ value with want, accepting the "application/" media-type form, case-insensitively
// (RFC 7515 §4.1.9).
func isTyp(s, want string) bool {
	const prefix = "application/"
	if len(s) > len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		s = s[len(prefix):]
	}
	return strings.EqualFold(s, want)
}

// decodeClaims decodes a JWT payload strictly: member names are case-sensitive and a duplicated name is an
// error, so no two JSON parsers read different claims from the same signed bytes.
func decodeClaims(what string, payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("oauth: %w: %s claims: %v", autherr.ErrMalformed, what, err)
	}
	return nil
}

// parseAudience reads aud as a string or an array of strings.
func parseAudience(what string, raw jsontext.Value) ([]string, error) {
	switch raw.Kind() {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("oauth: %w: %s aud: %v", autherr.ErrMalformed, what, err)
		}
		return []string{s}, nil
	case '[':
		var l []string
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, fmt.Errorf("oauth: %w: %s aud: %v", autherr.ErrMalformed, what, err)
		}
		return l, nil
	case 0:
		return nil, nil
	default:
		return nil, fmt.Errorf("oauth: %w: %s aud is neither a string nor an array", autherr.ErrMalformed, what)
	}
}

// timeClaims are the registered time claims of a JWT.
type timeClaims struct {
	Exp *jwt.NumericDate `json:"exp"`
	Nbf *jwt.NumericDate `json:"nbf"`
	Iat *jwt.NumericDate `json:"iat"`
}

// check requires exp (and iat when requireIat) and enforces them with skew; maxLifetime > 0 also bounds exp - iat
// (or exp - now without iat).
func (c *timeClaims) check(what string, now time.Time, skew, maxLifetime time.Duration, requireIat bool) error {
	if c.Exp == nil {
		return fmt.Errorf("oauth: %w: %s has no exp", autherr.ErrMalformed, what)
	}
	if requireIat && c.Iat == nil {
		return fmt.Errorf("oauth: %w: %s has no iat", autherr.ErrMalformed, what)
	}
	exp := c.Exp.Time()
	if !now.Before(exp.Add(skew)) {
		return fmt.Errorf("oauth: %w: %s expired at %s", autherr.ErrExpired, what, exp.UTC().Format(time.RFC3339))
	}
	for _, d := range [...]struct {
		name string
		t    *jwt.NumericDate
	}{{"nbf", c.Nbf}, {"iat", c.Iat}} {
		if d.t != nil && d.t.Time().After(now.Add(skew)) {
			return fmt.Errorf("oauth: %w: %s %s %s is in the future", autherr.ErrNotYetValid, what, d.name, d.t.Time().UTC().Format(time.RFC3339))
		}
	}
	if maxLifetime > 0 {
		from := now
		if c.Iat != nil {
			from = c.Iat.Time()
		}
		if exp.Sub(from) > maxLifetime+skew {
			return fmt.Errorf("oauth: %w: %s lifetime %v is over the allowed %v", autherr.ErrExpired, what, exp.Sub(from), maxLifetime)
		}
	}
	return nil
}

// scopeList splits a space-separated scope string (RFC 6749 §3.3), dropping empty items.
func scopeList(s string) []string { return strings.Fields(s) }
