package oauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxSubjectTokenSize is the largest subject token accepted, in bytes.
const MaxSubjectTokenSize = 16 << 10

// maxSubLen bounds a user token's sub.
const maxSubLen = 1024

// TrustedIssuer is an issuer of user tokens (an OpenID provider or OAuth authorization server) whose tokens the
// token service accepts as subject tokens.
type TrustedIssuer struct {
	// Issuer is the exact iss value (required).
	Issuer string
	// Keys verify its tokens (required): a JWKSFile, RemoteJWKS or StaticKeys.
	Keys KeySource
	// Audiences are the aud values that make a token ours (required), e.g. the token service's URL or client id;
	// a token must name at least one, so a token minted for another service is not accepted here.
	Audiences []string
	// AllowedAlgs lists accepted JWS algorithms; empty means internal/jose.DefaultAllowedAlgs().
	AllowedAlgs []string
	// Scopes are what a token of this issuer without scope or scp may be narrowed to. The Txn-Token draft says
	// a subject token's scope that cannot be determined is never unlimited, so with Scopes empty such a token
	// gets only tokens without scope (no Txn-Token, which needs one).
	Scopes []string
	// SubjectPrefix is prepended to sub in issued tokens, to keep the users of several issuers apart (the draft
	// wants sub unique within the trust domain, not scoped by iss). Empty means sub as it is.
	SubjectPrefix string
}

// subjectInfo is the verified subject of a token request.
type subjectInfo struct {
	kind     string // "self", "user" or "txn"
	sub      string
	issuer   string // iss of the user token
	issuedAt time.Time
	expiry   time.Time // zero for self: bounded by nothing but the lifetime
	scope    []string  // the subject token's own scope when scoped; for an unscoped user, its issuer's Scopes
	scoped   bool
	claims   map[string]any
	txn      *TxnInfo // the Txn-Token being replaced or exchanged
}

// userClaims is a user token's payload as received.
type userClaims struct {
	Iss    string           `json:"iss"`
	Sub    string           `json:"sub"`
	Aud    jsontext.Value   `json:"aud"`
	Exp    *jwt.NumericDate `json:"exp"`
	Nbf    *jwt.NumericDate `json:"nbf"`
	Iat    *jwt.NumericDate `json:"iat"`
	Scope  *string          `json:"scope"`
	Scp    jsontext.Value   `json:"scp"`
	MayAct *actClaim        `json:"may_act"`
	Extra  map[string]any   `json:",embed"`
}

// trustedIssuer is a TrustedIssuer with its algorithm list checked.
type trustedIssuer struct {
	TrustedIssuer
	algs []jose.SignatureAlgorithm
}

// verifyUserToken verifies a user JWT from one of the trusted issuers: size, compact form, an issuer we trust
// (chosen by iss, before anything else of the token is believed), an alg it may use, typ (absent, JWT or at+jwt:
// never one of the workload or transaction token types), the signature with its key, aud naming us, exp/nbf/iat.
func (s *TokenService) verifyUserToken(ctx context.Context, token, declared string, now time.Time) (*subjectInfo, error) {
	if err := checkCompact("subject token", token, MaxSubjectTokenSize); err != nil {
		return nil, err
	}
	jws, err := jose.ParseSignedCompact(token, supportedAlgs)
	if err != nil {
		var ua *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &ua) {
			return nil, fmt.Errorf("oauth: %w: subject token alg %q is not allowed", autherr.ErrUnsupportedAlg, ua.Got)
		}
		return nil, fmt.Errorf("oauth: %w: subject token is not a compact JWS: %v", autherr.ErrMalformed, err)
	}
	// iss is read before the signature is checked only to choose whose keys must verify it.
	var unverified struct {
		Iss string `json:"iss"`
	}
	if err := decodeClaims("subject token", jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, err
	}
	iss, ok := s.issuers[unverified.Iss]
	if !ok {
		return nil, fmt.Errorf("oauth: %w: subject token issuer %q is not trusted", autherr.ErrUntrustedIssuer, unverified.Iss)
	}
	signed, err := verifyJWS(ctx, "subject token", token, iss.algs, iss.Keys, "issuer "+iss.Issuer)
	if err != nil {
		return nil, err
	}
	if t := signed.typ; t != "" && !isTyp(t, "JWT") && !isTyp(t, TypAccessToken) {
		return nil, fmt.Errorf("oauth: %w: subject token typ %q is not a user token type (JWT, at+jwt)", autherr.ErrMalformed, t)
	}
	// RFC 9068 types access tokens at+jwt so that they are not taken for ID tokens: the declared type must agree.
	if declared == TokenTypeIDToken && isTyp(signed.typ, TypAccessToken) {
		return nil, fmt.Errorf("oauth: %w: subject_token_type is %s but the token is an at+jwt access token", autherr.ErrMalformed, declared)
	}
	var c userClaims
	if err := decodeClaims("subject token", signed.payload, &c); err != nil {
		return nil, err
	}
	switch {
	case c.Sub == "":
		return nil, fmt.Errorf("oauth: %w: subject token has no sub", autherr.ErrMalformed)
	case len(c.Sub) > maxSubLen:
		return nil, fmt.Errorf("oauth: %w: subject token sub is %d bytes, over %d", autherr.ErrMalformed, len(c.Sub), maxSubLen)
	}
	auds, err := parseAudience("subject token", c.Aud)
	if err != nil {
		return nil, err
	}
	if _, ok := firstMatch(auds, iss.Audiences); !ok {
		return nil, fmt.Errorf("oauth: %w: subject token aud %q names none of %q", autherr.ErrWrongAudience, auds, iss.Audiences)
	}
	tc := timeClaims{Exp: c.Exp, Nbf: c.Nbf, Iat: c.Iat}
	if err := tc.check("subject token", now, s.skew, 0, false); err != nil {
		return nil, err
	}
	sub := iss.SubjectPrefix + c.Sub
	if isWorkloadID(sub) {
		return nil, fmt.Errorf("oauth: %w: subject token sub %q looks like a workload identifier; set the issuer's SubjectPrefix", autherr.ErrMalformed, sub)
	}
	si := &subjectInfo{kind: "user", sub: sub, issuer: iss.Issuer, expiry: c.Exp.Time(), claims: c.all(auds)}
	if c.Iat != nil {
		si.issuedAt = c.Iat.Time()
	}
	si.scope, si.scoped, err = c.scopes()
	if err != nil {
		return nil, err
	}
	if !si.scoped {
		si.scope = iss.Scopes
	}
	if c.MayAct != nil {
		si.claims["may_act"] = c.MayAct.asMap()
	}
	return si, nil
}

// scopes returns the token's scope (the scope string, or an scp array or string), and whether it has one.
func (c *userClaims) scopes() ([]string, bool, error) {
	if c.Scope != nil {
		return scopeList(*c.Scope), true, nil
	}
	switch c.Scp.Kind() {
	case 0:
		return nil, false, nil
	case '"':
		var s string
		if err := jsonUnmarshal(c.Scp, &s); err != nil {
			return nil, false, fmt.Errorf("oauth: %w: subject token scp: %v", autherr.ErrMalformed, err)
		}
		return scopeList(s), true, nil
	case '[':
		var l []string
		if err := jsonUnmarshal(c.Scp, &l); err != nil {
			return nil, false, fmt.Errorf("oauth: %w: subject token scp: %v", autherr.ErrMalformed, err)
		}
		return l, true, nil
	default:
		return nil, false, fmt.Errorf("oauth: %w: subject token scp is neither a string nor an array", autherr.ErrMalformed)
	}
}

func (c *userClaims) all(auds []string) map[string]any {
	m := make(map[string]any, len(c.Extra)+8)
	for k, v := range c.Extra {
		m[k] = v
	}
	m["iss"], m["sub"] = c.Iss, c.Sub
	l := make([]any, len(auds))
	for i, a := range auds {
		l[i] = a
	}
	m["aud"] = l
	for name, t := range map[string]*jwt.NumericDate{"exp": c.Exp, "iat": c.Iat, "nbf": c.Nbf} {
		if t != nil {
			m[name] = float64(*t)
		}
	}
	if c.Scope != nil {
		m["scope"] = *c.Scope
	}
	return m
}

// jwtBundleKeys serves one trust domain's JWT-SVID authorities as a KeySource.
type jwtBundleKeys struct {
	src jwtbundle.Source
	td  spiffeid.TrustDomain
}

func (k jwtBundleKeys) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	b, err := k.src.GetJWTBundleForTrustDomain(k.td)
	if err != nil {
		return nil, fmt.Errorf("%w: no JWT bundle for trust domain %q: %v", autherr.ErrUntrustedIssuer, k.td, err)
	}
	if kid == "" {
		return nil, nil // JWT-SVIDs must name their key
	}
	key, ok := b.FindJWTAuthority(kid)
	if !ok {
		return nil, nil
	}
	return []jose.JSONWebKey{{Key: key, KeyID: kid}}, nil
}

// jwtSVIDClaims is a JWT-SVID payload.
type jwtSVIDClaims struct {
	Sub string           `json:"sub"`
	Aud jsontext.Value   `json:"aud"`
	Exp *jwt.NumericDate `json:"exp"`
	Nbf *jwt.NumericDate `json:"nbf"`
	Iat *jwt.NumericDate `json:"iat"`
}

// verifyJWTSVID verifies a JWT-SVID (SPIFFE JWT-SVID spec §3–4): typ absent, JWT or JOSE; kid naming a key of
// the trust domain of sub; the signature; aud containing audience; exp/nbf/iat.
func (s *TokenService) verifyJWTSVID(ctx context.Context, token, audience string, now time.Time) (spiffeid.ID, time.Time, error) {
	if err := checkCompact("JWT-SVID", token, MaxSubjectTokenSize); err != nil {
		return spiffeid.ID{}, time.Time{}, err
	}
	jws, err := jose.ParseSignedCompact(token, s.algs)
	if err != nil {
		return spiffeid.ID{}, time.Time{}, fmt.Errorf("oauth: %w: JWT-SVID: %v", autherr.ErrMalformed, err)
	}
	var unverified jwtSVIDClaims
	if err := decodeClaims("JWT-SVID", jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return spiffeid.ID{}, time.Time{}, err
	}
	id, err := spiffeid.FromString(unverified.Sub)
	if err != nil {
		return spiffeid.ID{}, time.Time{}, fmt.Errorf("oauth: %w: JWT-SVID sub %q is not a SPIFFE ID", autherr.ErrMalformed, unverified.Sub)
	}
	signed, err := verifyJWS(ctx, "JWT-SVID", token, s.algs, jwtBundleKeys{s.cfg.JWTBundles, id.TrustDomain()}, "trust domain "+id.TrustDomain().Name())
	if err != nil {
		return spiffeid.ID{}, time.Time{}, err
	}
	if t := signed.typ; t != "" && t != "JWT" && t != "JOSE" {
		return spiffeid.ID{}, time.Time{}, fmt.Errorf("oauth: %w: JWT-SVID typ %q", autherr.ErrMalformed, t)
	}
	var c jwtSVIDClaims
	if err := decodeClaims("JWT-SVID", signed.payload, &c); err != nil {
		return spiffeid.ID{}, time.Time{}, err
	}
	auds, err := parseAudience("JWT-SVID", c.Aud)
	if err != nil {
		return spiffeid.ID{}, time.Time{}, err
	}
	if _, ok := firstMatch(auds, []string{audience}); !ok {
		return spiffeid.ID{}, time.Time{}, fmt.Errorf("oauth: %w: JWT-SVID aud %q does not name %q", autherr.ErrWrongAudience, auds, audience)
	}
	tc := timeClaims{Exp: c.Exp, Nbf: c.Nbf, Iat: c.Iat}
	if err := tc.check("JWT-SVID", now, s.skew, 0, false); err != nil {
		return spiffeid.ID{}, time.Time{}, err
	}
	return id, c.Iat.Time(), nil
}
