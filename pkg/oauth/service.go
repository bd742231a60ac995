package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// Defaults for TokenServiceConfig.
const (
	// DefaultTxnTokenLifetime: the draft wants Txn-Tokens short-lived ("minutes or less").
	DefaultTxnTokenLifetime = 5 * time.Minute
	// DefaultAccessTokenLifetime is the lifetime of access tokens for legacy APIs.
	DefaultAccessTokenLifetime = 5 * time.Minute
)

// TokenServiceConfig configures a TokenService.
type TokenServiceConfig struct {
	// TrustDomain is the trust domain the service mints Txn-Tokens for: their aud (required).
	TrustDomain spiffeid.TrustDomain
	// Endpoint is the absolute URL clients reach this endpoint at, without query or fragment (required). A WPT
	// over a token request must have it as aud, and a JWT-SVID actor token must name it.
	Endpoint string
	// Issuer is the iss of issued tokens; empty means Endpoint.
	Issuer string
	// SigningKey signs issued tokens under Alg (e.g. "ES256") with KeyID as kid (all required). Keys other than
	// *ecdsa.PrivateKey, ed25519.PrivateKey and *rsa.PrivateKey (e.g. TPM-held) are used as crypto.Signers.
	SigningKey crypto.Signer
	KeyID      string
	Alg        string
	// PublishKeys are further public keys served by JWKS, e.g. the previous signing key during a rotation, and
	// accepted on Txn-Tokens presented for replacement.
	PublishKeys []jose.JSONWebKey
	// WITVerifier verifies actor WITs and the WPTs proving them (with its jti replay cache). Without it, WIT
	// actors are refused.
	WITVerifier *wpt.Verifier
	// X509Bundles enables mTLS client authentication: the peer's certificate chain is verified against them
	// (go-spiffe x509svid.Verify) whatever the listener's tls.Config did. Without it, client certificates count
	// for nothing.
	X509Bundles x509bundle.Source
	// JWTBundles enables JWT-SVID actor tokens (which also need mTLS from the same SPIFFE ID).
	JWTBundles jwtbundle.Source
	// SubjectIssuers are the issuers whose user tokens are accepted as subject tokens.
	SubjectIssuers []TrustedIssuer
	// Policy decides who gets which token; nil means SameTrustDomain(TrustDomain): Txn-Tokens for the trust
	// domain's workloads, no access tokens.
	Policy Policy
	// Revocations, when set, refuses revoked agents, users and transactions with invalid_grant.
	Revocations Revocations
	// TxnTokenLifetime and AccessTokenLifetime bound issued tokens (never beyond the subject token's exp);
	// 0 means the defaults.
	TxnTokenLifetime, AccessTokenLifetime time.Duration
	// AllowedAlgs are the JWS algorithms accepted on incoming Txn-Tokens and JWT-SVIDs; empty means
	// internal/jose.DefaultAllowedAlgs().
	AllowedAlgs []string
	// ClockSkew is the leeway for incoming tokens' times; 0 means DefaultClockSkew.
	ClockSkew time.Duration
	// Logger records issuances and refusals (never tokens, only TokenFingerprint); nil means no logging.
	Logger *zap.Logger
	// Observe, when set, is told the outcome of every token request, for metrics: result is ResultIssued,
	// ResultRefused or ResultError (server_error), reason the autherr code of a refusal ("" when issued).
	Observe func(result, reason string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Outcomes of a token request, as TokenServiceConfig.Observe is told them.
const (
	ResultIssued  = "issued"
	ResultRefused = "refused"
	ResultError   = "error"
)

// TokenService is the RFC 8693 token endpoint of the trust domain's Transaction Token Service: it authenticates
// the requesting workload, verifies the subject token, asks the Policy, and mints a Txn-Token or an access
// token. It is an http.Handler for the token endpoint; JWKSHandler serves its public keys.
type TokenService struct {
	cfg         TokenServiceConfig
	endpoint    string
	issuer      string
	txnSigner   jose.Signer
	atSigner    jose.Signer
	jwks        jose.JSONWebKeySet
	algs        []jose.SignatureAlgorithm
	issuers     map[string]*trustedIssuer
	ownVerifier *TxnVerifier
	policy      Policy
	skew        time.Duration
	txnLife     time.Duration
	atLife      time.Duration
	log         *zap.Logger
	now         func() time.Time
}

// NewTokenService checks cfg and returns a TokenService.
func NewTokenService(cfg TokenServiceConfig) (*TokenService, error) {
	if err := checkServiceConfig(cfg); err != nil {
		return nil, err
	}
	s := newTokenServiceDefaults(cfg)
	var err error
	if s.algs, err = algList(cfg.AllowedAlgs); err != nil {
		return nil, err
	}
	if s.txnSigner, s.atSigner, err = newSigners(cfg); err != nil {
		return nil, err
	}
	keys := append([]jose.JSONWebKey{{Key: cfg.SigningKey.Public(), KeyID: cfg.KeyID, Algorithm: cfg.Alg, Use: "sig"}}, cfg.PublishKeys...)
	if s.jwks, err = publicSet(jose.JSONWebKeySet{Keys: keys}); err != nil {
		return nil, fmt.Errorf("oauth: published keys: %w", err)
	}
	own := &StaticKeys{set: s.jwks}
	if s.ownVerifier, err = NewTxnVerifier(TxnVerifierConfig{Keys: own, TrustDomain: cfg.TrustDomain, Issuer: s.issuer,
		AllowedAlgs: cfg.AllowedAlgs, ClockSkew: s.skew, CacheSize: -1, Now: s.now}); err != nil {
		return nil, err
	}
	if s.issuers, err = subjectIssuers(cfg.SubjectIssuers); err != nil {
		return nil, err
	}
	return s, nil
}

// checkServiceConfig checks the fields of cfg NewTokenService requires.
func checkServiceConfig(cfg TokenServiceConfig) error {
	if cfg.TrustDomain.IsZero() {
		return errors.New("oauth: TokenServiceConfig.TrustDomain is required")
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || !u.IsAbs() || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("oauth: TokenServiceConfig.Endpoint %q must be an absolute URL without query or fragment", cfg.Endpoint)
	}
	if cfg.SigningKey == nil || cfg.KeyID == "" || cfg.Alg == "" {
		return errors.New("oauth: TokenServiceConfig needs SigningKey, KeyID and Alg")
	}
	if _, err := algList([]string{cfg.Alg}); err != nil {
		return err
	}
	if !ijose.AlgFits(cfg.Alg, cfg.SigningKey.Public()) {
		return fmt.Errorf("oauth: %w: signing alg %q does not fit a %s", autherr.ErrUnsupportedAlg, cfg.Alg, ijose.KeyDescription(cfg.SigningKey.Public()))
	}
	if cfg.TxnTokenLifetime < 0 || cfg.AccessTokenLifetime < 0 || cfg.ClockSkew < 0 {
		return errors.New("oauth: lifetimes and ClockSkew must not be negative")
	}
	return nil
}

// newTokenServiceDefaults is a TokenService with cfg's settings, the defaults filling those unset.
func newTokenServiceDefaults(cfg TokenServiceConfig) *TokenService {
	s := &TokenService{cfg: cfg, endpoint: cfg.Endpoint, issuer: cfg.Issuer, policy: cfg.Policy, skew: cfg.ClockSkew,
		txnLife: cfg.TxnTokenLifetime, atLife: cfg.AccessTokenLifetime, log: cfg.Logger, now: cfg.Now}
	if s.issuer == "" {
		s.issuer = cfg.Endpoint
	}
	if s.policy == nil {
		s.policy = SameTrustDomain(cfg.TrustDomain)
	}
	if s.skew == 0 {
		s.skew = DefaultClockSkew
	}
	if s.txnLife == 0 {
		s.txnLife = DefaultTxnTokenLifetime
	}
	if s.atLife == 0 {
		s.atLife = DefaultAccessTokenLifetime
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// newSigners returns the signers of Txn-Tokens and of access tokens: one key, each its own typ header.
func newSigners(cfg TokenServiceConfig) (txn, at jose.Signer, err error) {
	signer := func(typ string) (jose.Signer, error) {
		sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(cfg.Alg),
			Key: jose.JSONWebKey{Key: signingKey(cfg.SigningKey), KeyID: cfg.KeyID}},
			(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
		if err != nil {
			return nil, fmt.Errorf("oauth: signer: %w", err)
		}
		return sg, nil
	}
	if txn, err = signer(TypTxnToken); err != nil {
		return nil, nil, err
	}
	if at, err = signer(TypAccessToken); err != nil {
		return nil, nil, err
	}
	return txn, at, nil
}

// subjectIssuers indexes the trusted issuers of subject tokens by iss, checking each.
func subjectIssuers(list []TrustedIssuer) (map[string]*trustedIssuer, error) {
	issuers := map[string]*trustedIssuer{}
	for i := range list {
		ti := list[i]
		if ti.Issuer == "" || ti.Keys == nil || len(ti.Audiences) == 0 {
			return nil, fmt.Errorf("oauth: SubjectIssuers[%d] needs Issuer, Keys and Audiences", i)
		}
		if _, dup := issuers[ti.Issuer]; dup {
			return nil, fmt.Errorf("oauth: issuer %q configured twice", ti.Issuer)
		}
		algs, err := algList(ti.AllowedAlgs)
		if err != nil {
			return nil, fmt.Errorf("oauth: issuer %q: %w", ti.Issuer, err)
		}
		issuers[ti.Issuer] = &trustedIssuer{TrustedIssuer: ti, algs: algs}
	}
	if err := distinctPrefixes(list); err != nil {
		return nil, err
	}
	return issuers, nil
}

// distinctPrefixes checks that the users of several issuers cannot share a sub (the draft wants sub unique in
// the trust domain): each issuer needs a SubjectPrefix, and none may begin another, so "alice" of one issuer and
// "alice" of another (or "x"+"ab" and "xa"+"b") never become the same sub.
func distinctPrefixes(issuers []TrustedIssuer) error {
	if len(issuers) < 2 {
		return nil
	}
	for i, a := range issuers {
		if a.SubjectPrefix == "" {
			return fmt.Errorf("oauth: SubjectIssuers[%d] (%q) needs a SubjectPrefix: with several issuers, their users' subs must not collide", i, a.Issuer)
		}
		for j, b := range issuers {
			if i != j && strings.HasPrefix(b.SubjectPrefix, a.SubjectPrefix) {
				return fmt.Errorf("oauth: SubjectIssuers[%d]'s SubjectPrefix %q begins SubjectIssuers[%d]'s %q: their users' subs could collide", i, a.SubjectPrefix, j, b.SubjectPrefix)
			}
		}
	}
	return nil
}

// signingKey passes key types go-jose handles natively through and wraps others as opaque signers.
func signingKey(key crypto.Signer) any {
	switch key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
		return key
	default:
		return cryptosigner.Opaque(key)
	}
}

// JWKS returns the public keys that verify this service's tokens (give them to TxnVerifiers as StaticKeys,
// or serve them with JWKSHandler for RemoteJWKS).
func (s *TokenService) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), s.jwks.Keys...)}
}

// Keys implements KeySource with the service's own public keys.
func (s *TokenService) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	return lookup(&s.jwks, kid), nil
}

// JWKSHandler serves JWKS() as application/jwk-set+json.
func (s *TokenService) JWKSHandler() http.Handler {
	body, err := jsonMarshal(s.jwks)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			http.Error(w, "JWKS unavailable", http.StatusInternalServerError)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(body)
	})
}

// TokenResponse is a successful token exchange response (RFC 8693 §2.2.1).
type TokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in,omitempty"`
	Scope           string `json:"scope,omitempty"`
}

// serverErrorDescription is the error_description of every server_error: the cause is logged, not sent.
const serverErrorDescription = "the token service failed to process the request; the details are in its log"

// errorBody is an RFC 6749 §5.2 error response; reason is our extension (the autherr code).
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// ServeHTTP answers one token request.
func (s *TokenService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, actor, oe := s.serve(r)
	if s.cfg.Observe != nil {
		switch {
		case oe == nil:
			s.cfg.Observe(ResultIssued, "")
		case oe.Code == CodeServerError:
			s.cfg.Observe(ResultError, autherr.Internal)
		default:
			s.cfg.Observe(ResultRefused, reasonCode(oe))
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("Content-Type", "application/json")
	if oe != nil {
		fields := []zap.Field{zap.String("error", oe.Code), zap.String("reason", reasonCode(oe)),
			zap.String("description", oe.Description), zap.String("actor", actor), zap.String("remote", r.RemoteAddr)}
		desc := oe.Description
		if oe.Code == CodeServerError {
			// The detail (a policy's or store's error) is for the operator, not the requester.
			s.log.Error("token exchange failed", fields...)
			desc = serverErrorDescription
		} else {
			s.log.Info("token exchange refused", fields...)
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
		}
		body, _ := jsonMarshal(errorBody{Error: oe.Code, Description: desc, Reason: reasonCode(oe)})
		w.WriteHeader(oe.Status)
		_, _ = w.Write(body)
		return
	}
	body, err := jsonMarshal(resp)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(body)
}

func reasonCode(oe *Error) string {
	if r := autherrOf(oe.Err); r != nil {
		return r.Code()
	}
	return ""
}

// serve runs the request through parsing, client authentication, subject verification, revocation, policy and
// minting, in that order; it returns the actor for the log even on refusal.
func (s *TokenService) serve(r *http.Request) (*TokenResponse, string, *Error) {
	if r.Method != http.MethodPost {
		oe := errorf(CodeInvalidRequest, "oauth: %w: method %s; the token endpoint takes POST", autherr.ErrMalformed, r.Method)
		oe.Status = http.StatusMethodNotAllowed
		return nil, "", oe
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, "", errorf(CodeInvalidRequest, "oauth: %w: Content-Type %q; want application/x-www-form-urlencoded", autherr.ErrMalformed, r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestSize+1))
	if err != nil {
		return nil, "", errorf(CodeInvalidRequest, "oauth: %w: reading the request body: %v", autherr.ErrMalformed, err)
	}
	req, oe := parseTokenRequest(body)
	if oe != nil {
		return nil, "", oe
	}
	ctx := r.Context()
	now := s.now()
	act, oe := s.authenticate(ctx, r, req, now)
	if oe != nil {
		return nil, "", oe
	}
	subj, oe := s.subject(ctx, act, req, now)
	if oe != nil {
		return nil, act.id, oe
	}
	if oe := s.checkRevoked(ctx, act, subj); oe != nil {
		return nil, act.id, oe
	}
	scope, oe := s.authorize(ctx, act, subj, req)
	if oe != nil {
		return nil, act.id, oe
	}
	var resp *TokenResponse
	if req.requestedTokenType == TokenTypeTxnToken {
		resp, oe = s.mintTxnToken(act, subj, req, scope, now)
	} else {
		resp, oe = s.mintAccessToken(act, subj, req, scope, now)
	}
	return resp, act.id, oe
}

// actor is the authenticated requesting workload.
type actor struct {
	id       string
	method   wire.AuthMethod
	token    string // the actor credential presented (WIT or JWT-SVID), to recognise it as the subject too
	issuedAt time.Time
}

// authenticate establishes who is asking (Txn-Token draft: the TTS must authenticate the requesting workload).
// Accepted: a WIT (actor_token of type TokenTypeWIT, or the Workload-Identity-Token header) proved by a WPT
// whose aud is Endpoint, or by mTLS with an X.509-SVID of the WIT's subject; a JWT-SVID actor token naming
// Endpoint, with mTLS from its subject; or an X.509-SVID alone. Every failure is invalid_client.
func (s *TokenService) authenticate(ctx context.Context, r *http.Request, req *tokenRequest, now time.Time) (*actor, *Error) {
	peer, oe := s.peerID(r)
	if oe != nil {
		return nil, oe
	}
	witHdr := r.Header.Values(wire.HeaderWIT)
	if len(witHdr) > 1 || len(r.Header.Values(wire.HeaderWPT)) > 1 {
		return nil, errorf(CodeInvalidClient, "oauth: %w: repeated %s or %s header", autherr.ErrMalformed, wire.HeaderWIT, wire.HeaderWPT)
	}
	var wit string
	switch req.actorTokenType {
	case "":
		if len(witHdr) == 1 {
			wit = strings.TrimSpace(witHdr[0])
		}
	case TokenTypeWIT:
		wit = req.actorToken
		if len(witHdr) == 1 && strings.TrimSpace(witHdr[0]) != wit {
			return nil, errorf(CodeInvalidRequest, "oauth: %w: actor_token and the %s header carry different WITs", autherr.ErrMismatch, wire.HeaderWIT)
		}
	case TokenTypeJWT:
		return s.authenticateJWTSVID(ctx, req.actorToken, peer, now)
	default:
		return nil, errorf(CodeInvalidRequest, "oauth: %w: actor_token_type %q is not accepted (%s or %s)", autherr.ErrMalformed, req.actorTokenType, TokenTypeWIT, TokenTypeJWT)
	}
	if wit == "" {
		if peer.IsZero() {
			return nil, errorf(CodeInvalidClient, "oauth: %w: no client authentication: send a WIT with a %s (aud %q), or use mTLS with an X.509-SVID", autherr.ErrMissing, wire.HeaderWPT, s.endpoint)
		}
		return &actor{id: peer.String(), method: wire.AuthMTLS}, nil
	}
	if s.cfg.WITVerifier == nil {
		return nil, errorf(CodeInvalidClient, "oauth: %w: this token service does not accept WITs", autherr.ErrUntrustedIssuer)
	}
	if proof := r.Header.Get(wire.HeaderWPT); proof != "" {
		res, err := s.cfg.WITVerifier.VerifyRequest(ctx, wpt.Request{WIT: wit, WPT: strings.TrimSpace(proof), Audiences: []string{s.endpoint}})
		if err != nil {
			return nil, oauthError(CodeInvalidClient, fmt.Errorf("oauth: actor WIT/WPT: %w", err))
		}
		if !peer.IsZero() && peer.String() != res.WIT.Subject {
			return nil, errorf(CodeInvalidClient, "oauth: %w: mTLS peer %q is not the WIT subject %q", autherr.ErrMismatch, peer, res.WIT.Subject)
		}
		return &actor{id: res.WIT.Subject, method: wire.AuthWITWPT, token: wit, issuedAt: res.WIT.IssuedAt}, nil
	}
	if peer.IsZero() {
		return nil, errorf(CodeInvalidClient, "oauth: %w: a WIT is not a bearer token: prove it with a %s (aud %q) or mTLS with its SVID", autherr.ErrMissing, wire.HeaderWPT, s.endpoint)
	}
	w, err := s.cfg.WITVerifier.VerifyWIT(ctx, wit)
	if err != nil {
		return nil, oauthError(CodeInvalidClient, fmt.Errorf("oauth: actor WIT: %w", err))
	}
	if w.Subject != peer.String() {
		return nil, errorf(CodeInvalidClient, "oauth: %w: mTLS peer %q is not the WIT subject %q", autherr.ErrMismatch, peer, w.Subject)
	}
	return &actor{id: w.Subject, method: wire.AuthWITMTLS, token: wit, issuedAt: w.IssuedAt}, nil
}

func (s *TokenService) authenticateJWTSVID(ctx context.Context, token string, peer spiffeid.ID, now time.Time) (*actor, *Error) {
	if s.cfg.JWTBundles == nil {
		return nil, errorf(CodeInvalidClient, "oauth: %w: this token service does not accept JWT-SVID actor tokens", autherr.ErrUntrustedIssuer)
	}
	if peer.IsZero() {
		return nil, errorf(CodeInvalidClient, "oauth: %w: a JWT-SVID is a bearer token: it is accepted only over mTLS from its subject", autherr.ErrMissing)
	}
	id, iat, err := s.verifyJWTSVID(ctx, token, s.endpoint, now)
	if err != nil {
		return nil, oauthError(CodeInvalidClient, fmt.Errorf("oauth: actor JWT-SVID: %w", err))
	}
	if id != peer {
		return nil, errorf(CodeInvalidClient, "oauth: %w: mTLS peer %q is not the JWT-SVID subject %q", autherr.ErrMismatch, peer, id)
	}
	return &actor{id: id.String(), method: wire.AuthJWTSVIDMTLS, token: token, issuedAt: iat}, nil
}

// peerID returns the SPIFFE ID of the verified client certificate, or the zero ID without one (or when mTLS
// client authentication is not configured).
func (s *TokenService) peerID(r *http.Request) (spiffeid.ID, *Error) {
	if s.cfg.X509Bundles == nil || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return spiffeid.ID{}, nil
	}
	id, _, err := x509svid.Verify(r.TLS.PeerCertificates, s.cfg.X509Bundles)
	if err != nil {
		return spiffeid.ID{}, errorf(CodeInvalidClient, "oauth: %w: client certificate is not a valid X.509-SVID of a trusted domain: %v", autherr.ErrUntrustedIssuer, err)
	}
	return id, nil
}

// subject verifies the subject token and returns the principal the token will name. No subject token, or the
// actor's own credential as subject, means the agent acts for itself (sub = agent id).
func (s *TokenService) subject(ctx context.Context, act *actor, req *tokenRequest, now time.Time) (*subjectInfo, *Error) {
	self := &subjectInfo{kind: "self", sub: act.id, issuedAt: act.issuedAt}
	if req.subjectToken == "" || (act.token != "" && req.subjectToken == act.token) {
		return self, nil
	}
	switch req.subjectTokenType {
	case TokenTypeWIT:
		if s.cfg.WITVerifier == nil {
			return nil, errorf(CodeInvalidRequest, "oauth: %w: this token service does not accept WITs", autherr.ErrUntrustedIssuer)
		}
		w, err := s.cfg.WITVerifier.VerifyWIT(ctx, req.subjectToken)
		if err != nil {
			return nil, oauthError(CodeInvalidRequest, fmt.Errorf("oauth: subject WIT: %w", err))
		}
		if w.Subject != act.id {
			return nil, errorf(CodeInvalidRequest, "oauth: %w: subject WIT is %q's, not the requester %q's own", autherr.ErrMismatch, w.Subject, act.id)
		}
		return self, nil
	case TokenTypeTxnToken:
		info, err := s.ownVerifier.Verify(ctx, req.subjectToken)
		if err != nil {
			return nil, oauthError(CodeInvalidRequest, fmt.Errorf("oauth: subject Txn-Token: %w", err))
		}
		// The verifier allows clock skew for tokens of other signers; this one is ours, on our clock, and the
		// draft forbids replacing an expired Txn-Token.
		if !now.Before(info.Expiry) {
			return nil, errorf(CodeInvalidRequest, "oauth: %w: subject Txn-Token expired at %s", autherr.ErrExpired, info.Expiry.UTC().Format(time.RFC3339))
		}
		return &subjectInfo{kind: "txn", sub: info.Subject, issuedAt: info.SubjectIssuedAt(), expiry: info.Expiry,
			scope: info.Scope, scoped: true, claims: info.Claims, txn: info}, nil
	case TokenTypeJWT, TokenTypeAccessToken, TokenTypeIDToken:
		si, err := s.verifyUserToken(ctx, req.subjectToken, req.subjectTokenType, now)
		if err != nil {
			return nil, oauthError(CodeInvalidRequest, err)
		}
		if ma, ok := si.claims["may_act"].(map[string]any); ok && ma["sub"] != act.id {
			return nil, errorf(CodeInvalidRequest, "oauth: %w: the subject token's may_act does not name %q", autherr.ErrDenied, act.id)
		}
		return si, nil
	default:
		return nil, errorf(CodeInvalidRequest, "oauth: %w: subject_token_type %q is not accepted", autherr.ErrMalformed, req.subjectTokenType)
	}
}

func (s *TokenService) checkRevoked(ctx context.Context, act *actor, subj *subjectInfo) *Error {
	if s.cfg.Revocations == nil {
		return nil
	}
	call := revocation.Call{Agent: act.id, AgentIssuedAt: act.issuedAt, DelegatedIssuedAt: subj.issuedAt}
	// A self subject is the actor itself, checked as the agent already.
	if subj.kind != "self" {
		call.Delegated = subj.sub
	}
	if subj.txn != nil {
		call.Txn = subj.txn.TransactionID
	}
	for _, c := range call.Checks() {
		if id, revoked := s.cfg.Revocations.Revoked(ctx, string(c.Class), c.Value, c.IssuedAt); revoked {
			return errorf(CodeInvalidGrant, "oauth: %w: %s %q is revoked (%s)", autherr.ErrRevoked, c.Class, c.Value, id)
		}
	}
	return nil
}

// authorize bounds the requested scope by the subject token's and asks the Policy.
func (s *TokenService) authorize(ctx context.Context, act *actor, subj *subjectInfo, req *tokenRequest) ([]string, *Error) {
	if req.requestedTokenType == TokenTypeTxnToken && req.audiences[0] != s.cfg.TrustDomain.Name() {
		return nil, errorf(CodeInvalidTarget, "oauth: %w: a Txn-Token's audience is the trust domain %q, not %q", autherr.ErrWrongAudience, s.cfg.TrustDomain.Name(), req.audiences[0])
	}
	scope := req.scope
	if subj.scoped {
		if len(scope) == 0 {
			scope = subj.scope
		}
		if extra, ok := subset(scope, subj.scope); !ok {
			return nil, errorf(CodeInvalidScope, "oauth: %w: scope %q is beyond the subject token's scope %q", autherr.ErrDenied, extra, subj.scope)
		}
	} else if subj.kind == "user" {
		// The user token says nothing about scope: that is not unlimited scope (Txn-Token draft), only what its
		// issuer's configuration allows.
		if extra, ok := subset(scope, subj.scope); !ok {
			return nil, errorf(CodeInvalidScope, "oauth: %w: the subject token has no scope, and issuer %q's unscoped tokens may be narrowed only to %q, not %q", autherr.ErrDenied, subj.issuer, subj.scope, extra)
		}
	}
	if subj.txn != nil && req.requestDetails != nil && req.requestedTokenType == TokenTypeTxnToken {
		return nil, errorf(CodeInvalidRequest, "oauth: %w: a transaction's tctx is immutable; a replacement takes no request_details", autherr.ErrMalformed)
	}
	er := &ExchangeRequest{
		Actor: act.id, AuthMethod: act.method, Subject: subj.sub, SubjectIssuer: subj.issuer,
		Delegated: subj.sub != act.id, SubjectClaims: subj.claims, RequestedTokenType: req.requestedTokenType,
		Audiences: req.audiences, Resources: req.resources, Scope: scope, RequestDetails: req.requestDetails,
		ScopeDefaulted: len(req.scope) == 0 && len(scope) > 0,
	}
	if subj.txn != nil {
		er.TransactionID = subj.txn.TransactionID
	}
	granted, err := s.policy.Authorize(ctx, er)
	if err != nil {
		if oe, ok := asOAuthError(err); ok {
			return nil, oe
		}
		if errors.Is(err, autherr.ErrDenied) {
			return nil, oauthError(CodeInvalidTarget, err)
		}
		return nil, oauthError(CodeServerError, fmt.Errorf("oauth: %w: policy failed: %v", autherr.ErrDenied, err))
	}
	if granted == nil {
		granted = scope
	}
	if extra, ok := subset(granted, scope); !ok {
		return nil, errorf(CodeServerError, "oauth: %w: policy granted scope %q, which was not requested", autherr.ErrDenied, extra)
	}
	if req.requestedTokenType == TokenTypeTxnToken && len(granted) == 0 {
		return nil, errorf(CodeInvalidScope, "oauth: %w: no scope left to grant; a Txn-Token needs one", autherr.ErrDenied)
	}
	return granted, nil
}

var (
	_ http.Handler = (*TokenService)(nil)
	_ KeySource    = (*TokenService)(nil)
)
