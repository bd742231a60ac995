package oauth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// txnOut is a Txn-Token payload as issued (draft-ietf-oauth-transaction-tokens, editor's copy after -08; JOSE
// typ txntoken+jwt, kid of the signing key): iat, exp (short, capped at the subject token's exp), aud = the trust
// domain name, txn = a fresh v4 UUID (kept on replacement), sub = the user (issuer's SubjectPrefix + sub) or the
// agent, scope = the granted scope, req_wl = the authenticated requester, tctx = request_details (immutable for
// the transaction), rctx = request_context plus req_wl_authn (how the requester authenticated) and subject_iss
// (the user token's issuer), act = RFC 8693 actor chain when the requester acts for someone else.
type txnOut struct {
	Iss   string         `json:"iss,omitempty"`
	Iat   int64          `json:"iat"`
	Exp   int64          `json:"exp"`
	Aud   string         `json:"aud"`
	Txn   string         `json:"txn"`
	Sub   string         `json:"sub"`
	Scope string         `json:"scope"`
	ReqWL string         `json:"req_wl"`
	Tctx  map[string]any `json:"tctx,omitempty"`
	Rctx  map[string]any `json:"rctx,omitempty"`
	Act   map[string]any `json:"act,omitempty"`
}

// atOut is a JWT access token payload as issued (RFC 9068 §2.2), with act (RFC 8693 §4.1) for delegation and
// txn when it was exchanged from a Txn-Token.
type atOut struct {
	Iss      string         `json:"iss"`
	Exp      int64          `json:"exp"`
	Aud      any            `json:"aud"`
	Sub      string         `json:"sub"`
	ClientID string         `json:"client_id"`
	Iat      int64          `json:"iat"`
	Jti      string         `json:"jti"`
	Scope    string         `json:"scope,omitempty"`
	Act      map[string]any `json:"act,omitempty"`
	Txn      string         `json:"txn,omitempty"`
}

// expiry is now + life, but never after the subject token's own exp: a delegated token must not outlive the
// delegation it came from. A subject token with no whole second left (accepted within the clock skew) gets
// nothing: a token whose exp is not after its iat.
func expiry(now time.Time, life time.Duration, subj *subjectInfo) (time.Time, *Error) {
	exp := now.Add(life)
	if !subj.expiry.IsZero() && subj.expiry.Before(exp) {
		exp = subj.expiry
	}
	if exp.Unix() <= now.Unix() {
		return time.Time{}, errorf(CodeInvalidRequest, "oauth: %w: the subject token expires at %s, leaving no lifetime for a new token",
			autherr.ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	return exp, nil
}

// actChain is the act claim of the new token: the requester as the current actor, with the prior actors of a
// replaced Txn-Token nested inside (RFC 8693 §4.1; the draft requires keeping the chain of requesting
// workloads). No act when the requester acts for itself with no history.
func actChain(act *actor, subj *subjectInfo) map[string]any {
	var prior map[string]any
	if subj.txn != nil {
		if a, ok := subj.txn.Claims["act"].(map[string]any); ok {
			prior = a
		} else if rw := subj.txn.RequestingWorkload; rw != subj.sub {
			prior = map[string]any{"sub": rw}
		}
	}
	if prior != nil && prior["sub"] == act.id {
		return prior // the same workload again: no new link
	}
	if act.id == subj.sub && prior == nil {
		return nil
	}
	a := map[string]any{"sub": act.id}
	if prior != nil {
		a["act"] = prior
	}
	return a
}

func (s *TokenService) mintTxnToken(act *actor, subj *subjectInfo, req *tokenRequest, scope []string, now time.Time) (*TokenResponse, *Error) {
	exp, oe := expiry(now, s.txnLife, subj)
	if oe != nil {
		return nil, oe
	}
	c := txnOut{
		Iss: s.issuer, Iat: now.Unix(), Exp: exp.Unix(), Aud: s.cfg.TrustDomain.Name(),
		Sub: subj.sub, Scope: strings.Join(scope, " "), ReqWL: act.id, Act: actChain(act, subj),
		Tctx: req.requestDetails,
	}
	if subj.txn != nil {
		// A replacement keeps txn, sub and aud, and the transaction's immutable context.
		c.Txn, c.Tctx = subj.txn.TransactionID, subj.txn.TransactionContext
	} else {
		var err error
		if c.Txn, err = newTxnID(); err != nil {
			return nil, oauthError(CodeServerError, fmt.Errorf("oauth: %w: %v", autherr.ErrUpstream, err))
		}
	}
	// rctx: what the requester said about the request, then what we know, which it cannot override.
	c.Rctx = make(map[string]any, len(req.requestContext)+2)
	for k, v := range req.requestContext {
		c.Rctx[k] = v
	}
	c.Rctx["req_wl_authn"] = string(act.method)
	delete(c.Rctx, "subject_iss")
	if subj.issuer != "" {
		c.Rctx["subject_iss"] = subj.issuer
	}
	// When the subject's own credential was issued (see TxnInfo.SubjectIssuedAt); a replacement carries it on.
	delete(c.Rctx, "subject_iat")
	if !subj.issuedAt.IsZero() {
		c.Rctx["subject_iat"] = subj.issuedAt.Unix()
	}
	tok, oe := s.sign(s.txnSigner, c)
	if oe != nil {
		return nil, oe
	}
	s.log.Info("issued Txn-Token", zap.String("txn", c.Txn), zap.String("sub", c.Sub), zap.String("req_wl", c.ReqWL),
		zap.String("scope", c.Scope), zap.Time("exp", exp), zap.String("token_sha256", TokenFingerprint(tok)))
	return &TokenResponse{AccessToken: tok, IssuedTokenType: TokenTypeTxnToken, TokenType: "N_A",
		ExpiresIn: int64(exp.Sub(now) / time.Second), Scope: c.Scope}, nil
}

func (s *TokenService) mintAccessToken(act *actor, subj *subjectInfo, req *tokenRequest, scope []string, now time.Time) (*TokenResponse, *Error) {
	exp, oe := expiry(now, s.atLife, subj)
	if oe != nil {
		return nil, oe
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return nil, oauthError(CodeServerError, fmt.Errorf("oauth: %w: jti: %v", autherr.ErrUpstream, err))
	}
	targets := append(append([]string(nil), req.audiences...), req.resources...)
	c := atOut{
		Iss: s.issuer, Exp: exp.Unix(), Sub: subj.sub, ClientID: act.id, Iat: now.Unix(),
		Jti: base64.RawURLEncoding.EncodeToString(jti[:]), Scope: strings.Join(scope, " "), Act: actChain(act, subj),
	}
	if len(targets) == 1 {
		c.Aud = targets[0]
	} else {
		c.Aud = targets
	}
	if subj.txn != nil {
		c.Txn = subj.txn.TransactionID
	}
	tok, oe := s.sign(s.atSigner, c)
	if oe != nil {
		return nil, oe
	}
	s.log.Info("issued access token", zap.String("sub", c.Sub), zap.String("client_id", c.ClientID),
		zap.Strings("aud", targets), zap.String("scope", c.Scope), zap.Time("exp", exp), zap.String("token_sha256", TokenFingerprint(tok)))
	return &TokenResponse{AccessToken: tok, IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer",
		ExpiresIn: int64(exp.Sub(now) / time.Second), Scope: c.Scope}, nil
}

func (s *TokenService) sign(signer jose.Signer, claims any) (string, *Error) {
	payload, err := jsonMarshal(claims)
	if err != nil {
		return "", oauthError(CodeServerError, fmt.Errorf("oauth: %w: encoding claims: %v", autherr.ErrMalformed, err))
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", oauthError(CodeServerError, fmt.Errorf("oauth: %w: signing: %v", autherr.ErrUpstream, err))
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", oauthError(CodeServerError, fmt.Errorf("oauth: %w: serialising: %v", autherr.ErrUpstream, err))
	}
	return tok, nil
}
