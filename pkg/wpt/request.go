package wpt

import (
	"context"
	"crypto"
	"fmt"
	"strings"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-json-experiment/json/jsontext"
)

// maxJTILen bounds the jti kept in the replay cache.
const maxJTILen = 256

// Request is what VerifyRequest needs from one HTTP request.
type Request struct {
	// WIT and WPT are the Workload-Identity-Token and Workload-Proof-Token values (see ExtractHeaders).
	WIT, WPT string
	// Audiences are the acceptable aud values, from trusted configuration (e.g. this route's target URI without
	// query and fragment, plus configured aliases) — never from the request's Host or X-Forwarded-Host.
	Audiences []string
	// AccessToken is the OAuth access token of the request (the value after "Bearer "), if any; it must be bound by ath.
	AccessToken string
	// TxnToken is the Txn-Token header value, if any; it must be bound by tth.
	TxnToken string
	// Other maps further context-token header names this receiver understands to their values in the request;
	// each must be bound by oth, and oth may bind nothing else.
	Other map[string]string
}

// Result is a verified request proof.
type Result struct {
	// WIT is the verified WIT; WIT.Subject is the authenticated peer. Shared and read-only.
	WIT *WIT
	// JTI, Expiry and Audience are the WPT's jti, exp and the aud value that matched.
	JTI      string
	Expiry   time.Time
	Audience string
}

// wptIn is the WPT payload as received; aud may be a string or an array.
type wptIn struct {
	Aud jsontext.Value    `json:"aud"`
	Exp *jwt.NumericDate  `json:"exp"`
	Nbf *jwt.NumericDate  `json:"nbf"`
	Iat *jwt.NumericDate  `json:"iat"`
	Jti string            `json:"jti"`
	Wth string            `json:"wth"`
	Ath *string           `json:"ath"`
	Tth *string           `json:"tth"`
	Oth map[string]string `json:"oth"`
}

// VerifyRequest verifies a WIT and the WPT made with its key for one request, in the order of
// draft-ietf-wimse-wpt §3.4: the WIT (VerifyWIT), WPT alg equal to cnf.jwk.alg, the WPT signature with cnf.jwk,
// typ wpt+jwt, aud, exp (not passed, not further than MaxProofLifetime ahead), wth, the ath/tth/oth bindings,
// and, last, the jti replay check scoped by the WIT subject — so a proof that fails any other check never
// consumes its jti.
func (v *Verifier) VerifyRequest(ctx context.Context, in Request) (*Result, error) {
	switch {
	case in.WIT == "":
		return nil, fmt.Errorf("wpt: %w: no %s", autherr.ErrMissing, wire.HeaderWIT)
	case in.WPT == "":
		return nil, fmt.Errorf("wpt: %w: no %s", autherr.ErrMissing, wire.HeaderWPT)
	case len(in.WPT) > MaxTokenSize:
		return nil, fmt.Errorf("wpt: %w: WPT is %d bytes, over %d", autherr.ErrTooLarge, len(in.WPT), MaxTokenSize)
	}
	vw, err := v.verifyWIT(in.WIT)
	if err != nil {
		return nil, err
	}
	payload, err := proofPayload(vw, in.WPT)
	if err != nil {
		return nil, err
	}
	var c proofClaims
	decode := c.decode
	if v.strictClaims {
		decode = c.decodeJSON
	}
	if err := decode(payload); err != nil {
		return nil, err
	}
	aud, err := matchAudience(c.aud, in.Audiences)
	if err != nil {
		return nil, err
	}
	now := v.now()
	exp, err := v.checkProofTimes(&c, now)
	if err != nil {
		return nil, err
	}
	if c.wth != vw.wth {
		return nil, fmt.Errorf("wpt: %w: WPT wth does not match the hash of the %s sent", autherr.ErrMismatch, wire.HeaderWIT)
	}
	if err := checkBinding("ath", "access token", c.ath, c.hasAth, in.AccessToken); err != nil {
		return nil, err
	}
	if err := checkBinding("tth", wire.HeaderTxnToken, c.tth, c.hasTth, in.TxnToken); err != nil {
		return nil, err
	}
	if err := checkOth(c.oth, in.Other); err != nil {
		return nil, err
	}
	if c.jti == "" {
		return nil, fmt.Errorf("wpt: %w: WPT has no jti", autherr.ErrMalformed)
	}
	if len(c.jti) > maxJTILen {
		return nil, fmt.Errorf("wpt: %w: WPT jti is %d bytes, over %d", autherr.ErrMalformed, len(c.jti), maxJTILen)
	}
	if err := v.replay.Check(vw.wit.Subject+"\x00"+c.jti, exp.Add(v.skew)); err != nil {
		return nil, fmt.Errorf("wpt: WPT jti %q from %s: %w", c.jti, vw.wit.Subject, err)
	}
	return &Result{WIT: vw.wit, JTI: c.jti, Expiry: exp, Audience: aud}, nil
}

// proofPayload verifies the JWS of token, a WPT made with vw's key (§3.4 steps 3 to 5: alg, signature, typ), and
// returns its payload: directly when its header is the one that last passed these checks for vw (verifyFast),
// otherwise through go-jose, remembering the header when it passes.
func proofPayload(vw *verifiedWIT, token string) ([]byte, error) {
	if payload, ok, err := vw.verifyFast(token); ok {
		return payload, err
	}
	payload, typ, err := verifyProofJWS(token, vw.cnfAlgs, vw.cnfKey)
	if err != nil {
		return nil, err
	}
	if !isTyp(typ, typWPT) {
		return nil, fmt.Errorf("wpt: %w: WPT typ is %q, want %q", autherr.ErrMalformed, typ, typWPT)
	}
	vw.rememberProofHeader(token)
	return payload, nil
}

// verifyProofJWS parses a WPT allowing only cnf.jwk.alg (§3.4 step 3, before the signature is looked at), verifies
// its signature with the cnf.jwk key, and returns the payload and the header's typ. The key's fitness for the alg
// was checked when the WIT was.
func verifyProofJWS(token string, cnfAlg []jose.SignatureAlgorithm, key crypto.PublicKey) ([]byte, string, error) {
	jws, hdr, err := parseCompact("WPT", token, cnfAlg, "the WIT's cnf.jwk alg")
	if err != nil {
		return nil, "", err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, "", fmt.Errorf("wpt: %w: WPT signature does not verify with the WIT's cnf.jwk", autherr.ErrBadSignature)
	}
	return payload, headerTyp(hdr), nil
}

// matchAudience requires aud, the proof's one audience (proofClaims.aud), to be one of want.
func matchAudience(aud string, want []string) (string, error) {
	for _, w := range want {
		if aud == w {
			return w, nil
		}
	}
	return "", fmt.Errorf("wpt: %w: aud %q is not one of %q", autherr.ErrWrongAudience, aud, want)
}

func (v *Verifier) checkProofTimes(c *proofClaims, now time.Time) (time.Time, error) {
	if !c.hasExp {
		return time.Time{}, fmt.Errorf("wpt: %w: WPT has no exp", autherr.ErrMalformed)
	}
	exp := time.Unix(c.exp, 0)
	if now.After(exp.Add(v.skew)) {
		return exp, fmt.Errorf("wpt: %w: WPT expired at %s", autherr.ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	if limit := now.Add(v.maxLifetime + v.skew); exp.After(limit) {
		return exp, fmt.Errorf("wpt: %w: WPT exp %s is more than %v ahead; proofs must be short-lived",
			autherr.ErrExpired, exp.UTC().Format(time.RFC3339), v.maxLifetime)
	}
	for _, d := range [...]struct {
		name    string
		t       int64
		present bool
	}{{"nbf", c.nbf, c.hasNbf}, {"iat", c.iat, c.hasIat}} {
		if d.present && time.Unix(d.t, 0).After(now.Add(v.skew)) {
			return exp, fmt.Errorf("wpt: %w: WPT %s is in the future", autherr.ErrNotYetValid, d.name)
		}
	}
	return exp, nil
}

// checkBinding enforces one of ath/tth (got, when present): a token in the request must be bound, and a binding
// must match a token in the request (a proof made for a token the request does not carry is not for this request).
func checkBinding(claim, what string, got string, present bool, token string) error {
	switch {
	case token == "" && !present:
		return nil
	case token == "":
		return fmt.Errorf("wpt: %w: WPT has %s but the request carries no %s", autherr.ErrMismatch, claim, what)
	case !present:
		return fmt.Errorf("wpt: %w: the request carries an %s but the WPT has no %s", autherr.ErrMismatch, what, claim)
	case got != hashB64(token):
		return fmt.Errorf("wpt: %w: WPT %s does not match the %s", autherr.ErrMismatch, claim, what)
	}
	return nil
}

// checkOth requires every header in other to be bound by oth and every oth entry to name a header in other.
func checkOth(oth, other map[string]string) error {
	for name, val := range other {
		lower := strings.ToLower(name)
		h, ok := oth[lower]
		if !ok {
			return fmt.Errorf("wpt: %w: the request carries %s but WPT oth does not bind it", autherr.ErrMismatch, lower)
		}
		if h != hashB64(strings.Trim(val, " \t")) {
			return fmt.Errorf("wpt: %w: WPT oth[%q] does not match the header value", autherr.ErrMismatch, lower)
		}
	}
	for name := range oth {
		if !hasLower(other, name) {
			return fmt.Errorf("wpt: %w: WPT oth binds %q, which this receiver does not understand or the request does not carry", autherr.ErrMismatch, name)
		}
	}
	return nil
}

// hasLower reports whether m has a key whose lower-case form is name.
func hasLower(m map[string]string, name string) bool {
	for k := range m {
		if strings.ToLower(k) == name {
			return true
		}
	}
	return false
}
