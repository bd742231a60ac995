package oauth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Limits and defaults for Txn-Token verification.
const (
	// MaxTxnTokenSize is the largest Txn-Token accepted, in bytes.
	MaxTxnTokenSize = 16 << 10
	// DefaultClockSkew is the leeway for exp, nbf and iat.
	DefaultClockSkew = 30 * time.Second
	// DefaultMaxTxnLifetime bounds exp - iat of an accepted Txn-Token; the draft says "minutes or less".
	DefaultMaxTxnLifetime = 30 * time.Minute
	// DefaultTxnCacheSize bounds the verified Txn-Tokens a TxnVerifier remembers.
	DefaultTxnCacheSize = 4096
)

// TxnInfo is a verified Txn-Token. Values may come from the verifier's cache and be shared: do not modify them.
type TxnInfo struct {
	// Subject (sub) is the principal of the transaction: the delegated user, or the agent itself.
	Subject string
	// TransactionID (txn) identifies the transaction; log it everywhere.
	TransactionID string
	// Scope (scope, or legacy purp) is the purpose of the transaction, split at spaces.
	Scope []string
	// RequestingWorkload (req_wl) is the workload that requested the token.
	RequestingWorkload string
	// Actor is act.sub (RFC 8693 §4.1), the agent acting for Subject; empty when the token has no act.
	Actor string
	// Issuer (iss) and Audience (the aud value that matched) identify the token service and trust domain.
	Issuer, Audience string
	IssuedAt, Expiry time.Time
	// TransactionContext (tctx, or legacy azd) and RequestContext (rctx) are the draft's context objects.
	TransactionContext, RequestContext map[string]any
	// Claims holds every claim of the token, as JSON values (numbers are float64).
	Claims map[string]any
	// Hash is base64url(SHA-256(token)), the form to log and the tth a WPT binds it with.
	Hash string
}

// SubjectIssuedAt is when the subject's own credential was issued (the user token the transaction began with), as
// the token service records it in rctx.subject_iat, or the Txn-Token's own iat when it does not or names a later
// time (which cannot be). Revocations of the user are judged by it: a Txn-Token minted after a revocation, from a
// user token issued before it, is refused like the user token, and so is every replacement of it.
func (t *TxnInfo) SubjectIssuedAt() time.Time {
	if v, ok := t.RequestContext["subject_iat"].(float64); ok && v > 0 {
		if at := time.Unix(int64(v), 0); at.Before(t.IssuedAt) {
			return at
		}
	}
	return t.IssuedAt
}

// Who a Txn-Token's subject is to the workload that presents it (TxnInfo.SubjectKind).
const (
	SubjectUser   = "user"   // a user the workload acts for: someone delegated
	SubjectSelf   = "self"   // the workload itself: it acts for itself, nobody delegated
	SubjectSystem = "system" // another workload, which began the transaction acting for itself
)

// SubjectKind says who the token's sub is to caller, the authenticated workload that presented it: caller itself
// (SubjectSelf: the token service names an agent that acts for itself by its own id), another workload
// (SubjectSystem: a SPIFFE ID, which the token service never gives a user), or a user (SubjectUser).
func (t *TxnInfo) SubjectKind(caller string) string {
	switch {
	case t.Subject == caller:
		return SubjectSelf
	case isWorkloadID(t.Subject):
		return SubjectSystem
	}
	return SubjectUser
}

// isWorkloadID reports whether sub is a workload's SPIFFE ID, which no user's name may look like (verifyUserToken).
func isWorkloadID(sub string) bool { return strings.HasPrefix(sub, "spiffe://") }

// ClaimStrings flattens Claims for policy tags: strings as they are, everything else as compact JSON.
func (t *TxnInfo) ClaimStrings() map[string]string {
	out := make(map[string]string, len(t.Claims))
	for k, v := range t.Claims {
		if s, ok := v.(string); ok {
			out[k] = s
			continue
		}
		b, err := jsonMarshal(v)
		if err == nil {
			out[k] = string(b)
		}
	}
	return out
}

// TxnVerifierConfig configures a TxnVerifier.
type TxnVerifierConfig struct {
	// Keys are the token service's verification keys (required), e.g. a RemoteJWKS of the controller's JWKS.
	Keys KeySource
	// TrustDomain is ours; a Txn-Token's aud must name it (draft §"aud"). Required unless Audiences is set.
	TrustDomain spiffeid.TrustDomain
	// Audiences overrides the accepted aud values; empty means TrustDomain's name.
	Audiences []string
	// Issuer, when set, must equal iss (which the draft makes optional).
	Issuer string
	// AllowedAlgs lists the accepted JWS algorithms; empty means internal/jose.DefaultAllowedAlgs().
	AllowedAlgs []string
	// ClockSkew is the leeway for exp, nbf and iat; 0 means DefaultClockSkew.
	ClockSkew time.Duration
	// MaxLifetime refuses tokens whose exp - iat is longer; 0 means DefaultMaxTxnLifetime.
	MaxLifetime time.Duration
	// AcceptLegacyClaims reads the pre-09 draft names purp (scope), azd (tctx) and rctx.req_wl (req_wl) when the
	// current names are absent, for older token services. The draft says nothing about this; off by default.
	AcceptLegacyClaims bool
	// CacheSize bounds the verified tokens remembered (egress sidecars reuse a Txn-Token until shortly before it
	// expires, so ingress sees the same bytes repeatedly); 0 means DefaultTxnCacheSize, negative disables it.
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// TxnVerifier verifies Txn-Tokens on ingress. It is safe for concurrent use.
type TxnVerifier struct {
	keys      KeySource
	audiences []string
	issuer    string
	algs      []jose.SignatureAlgorithm
	skew      time.Duration
	maxLife   time.Duration
	legacy    bool
	now       func() time.Time
	cache     *txnCache
}

// NewTxnVerifier checks cfg and returns a TxnVerifier.
func NewTxnVerifier(cfg TxnVerifierConfig) (*TxnVerifier, error) {
	if cfg.Keys == nil {
		return nil, errors.New("oauth: TxnVerifierConfig.Keys is required")
	}
	auds := cfg.Audiences
	if len(auds) == 0 {
		if cfg.TrustDomain.IsZero() {
			return nil, errors.New("oauth: TxnVerifierConfig needs TrustDomain or Audiences")
		}
		auds = []string{cfg.TrustDomain.Name()}
	}
	algs, err := algList(cfg.AllowedAlgs)
	if err != nil {
		return nil, err
	}
	if cfg.ClockSkew < 0 || cfg.MaxLifetime < 0 {
		return nil, errors.New("oauth: ClockSkew and MaxLifetime must not be negative")
	}
	v := &TxnVerifier{keys: cfg.Keys, audiences: append([]string(nil), auds...), issuer: cfg.Issuer, algs: algs,
		skew: cfg.ClockSkew, maxLife: cfg.MaxLifetime, legacy: cfg.AcceptLegacyClaims, now: cfg.Now}
	if v.skew == 0 {
		v.skew = DefaultClockSkew
	}
	if v.maxLife == 0 {
		v.maxLife = DefaultMaxTxnLifetime
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case cfg.CacheSize == 0:
		v.cache = newTxnCache(DefaultTxnCacheSize)
	case cfg.CacheSize > 0:
		v.cache = newTxnCache(cfg.CacheSize)
	}
	return v, nil
}

// TxnTokenFromHeader returns the single Txn-Token value of h: autherr.ErrMissing without one, autherr.ErrMalformed for repeated
// headers or a value that is not one compact JWS, autherr.ErrTooLarge beyond MaxTxnTokenSize.
func TxnTokenFromHeader(h http.Header) (string, error) {
	vals := h.Values(wire.HeaderTxnToken)
	switch {
	case len(vals) == 0:
		return "", fmt.Errorf("oauth: %w: no %s header", autherr.ErrMissing, wire.HeaderTxnToken)
	case len(vals) > 1:
		return "", fmt.Errorf("oauth: %w: %d %s headers, want exactly one", autherr.ErrMalformed, len(vals), wire.HeaderTxnToken)
	}
	v := strings.Trim(vals[0], " \t")
	if err := checkCompact(wire.HeaderTxnToken, v, MaxTxnTokenSize); err != nil {
		return "", err
	}
	return v, nil
}

// checkCompact requires s to look like one compact JWS (three base64url parts) of at most max bytes.
func checkCompact(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("oauth: %w: %s is %d bytes, over %d", autherr.ErrTooLarge, what, len(s), max)
	}
	if s == "" {
		return fmt.Errorf("oauth: %w: empty %s", autherr.ErrMalformed, what)
	}
	dots := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("oauth: %w: %s holds %q at offset %d; want one compact JWS", autherr.ErrMalformed, what, c, i)
		}
	}
	if dots != 2 {
		return fmt.Errorf("oauth: %w: %s has %d dots; want one compact JWS", autherr.ErrMalformed, what, dots)
	}
	return nil
}

// txnClaims is a Txn-Token payload as received.
type txnClaims struct {
	Iss   string           `json:"iss"`
	Sub   *string          `json:"sub"`
	Aud   jsontext.Value   `json:"aud"`
	Exp   *jwt.NumericDate `json:"exp"`
	Nbf   *jwt.NumericDate `json:"nbf"`
	Iat   *jwt.NumericDate `json:"iat"`
	Txn   *string          `json:"txn"`
	Scope *string          `json:"scope"`
	ReqWL *string          `json:"req_wl"`
	Tctx  map[string]any   `json:"tctx"`
	Rctx  map[string]any   `json:"rctx"`
	Act   *actClaim        `json:"act"`
	Purp  *string          `json:"purp"`
	Azd   map[string]any   `json:"azd"`
	Extra map[string]any   `json:",embed"`
}

// actClaim is the RFC 8693 §4.1 actor claim; nested act values are prior actors.
type actClaim struct {
	Sub   string         `json:"sub"`
	Iss   string         `json:"iss,omitempty"`
	Act   *actClaim      `json:"act,omitempty"`
	Extra map[string]any `json:",embed"`
}

// Verify checks a Txn-Token (specs/oauth-txn-token-exchange.md §1.4): one compact JWS under MaxTxnTokenSize,
// an allowed alg, typ txntoken+jwt, the signature with the token service key chosen by kid, iss (if
// configured), aud naming our trust domain, exp/nbf/iat with skew and a bounded lifetime, and the required
// claims txn, sub, scope and req_wl. It does not check who presented the token: use VerifyFrom on ingress.
func (v *TxnVerifier) Verify(ctx context.Context, token string) (*TxnInfo, error) {
	if len(token) > MaxTxnTokenSize {
		return nil, fmt.Errorf("oauth: %w: Txn-Token is %d bytes, over %d", autherr.ErrTooLarge, len(token), MaxTxnTokenSize)
	}
	now := v.now()
	if v.cache != nil {
		// A hit is a byte-exact match of a token that passed every check below.
		if e := v.cache.get(token); e != nil {
			if err := v.recheck(ctx, e, now); err != nil {
				return nil, err
			}
			return e.info, nil
		}
	}
	if err := checkCompact("Txn-Token", token, MaxTxnTokenSize); err != nil {
		return nil, err
	}
	e, err := v.verifyFull(ctx, token, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(token, e, now)
	}
	return e.info, nil
}

// VerifyFrom is Verify plus the binding to the caller: req_wl must equal workload, the authenticated workload
// identifier of the peer (WIT sub or mTLS SPIFFE ID), else autherr.ErrMismatch. A workload that forwards a Txn-Token it
// received gets a replacement token naming itself from the token service (Exchanger does this on egress). The
// tth binding of the token to the request's WPT is pkg/wpt's check.
func (v *TxnVerifier) VerifyFrom(ctx context.Context, token, workload string) (*TxnInfo, error) {
	info, err := v.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	if workload == "" {
		return nil, fmt.Errorf("oauth: %w: no authenticated workload to bind the Txn-Token to", autherr.ErrMissing)
	}
	if info.RequestingWorkload != workload {
		return nil, fmt.Errorf("oauth: %w: Txn-Token req_wl %q is not the authenticated workload %q", autherr.ErrMismatch, info.RequestingWorkload, workload)
	}
	return info, nil
}

// txnEntry is a verified token plus what re-checking it needs.
type txnEntry struct {
	info *TxnInfo
	kid  string
	key  crypto.PublicKey
}

func (v *TxnVerifier) recheck(ctx context.Context, e *txnEntry, now time.Time) error {
	if !now.Before(e.info.Expiry.Add(v.skew)) {
		return fmt.Errorf("oauth: %w: Txn-Token expired at %s", autherr.ErrExpired, e.info.Expiry.UTC().Format(time.RFC3339))
	}
	keys, err := v.keys.Keys(ctx, e.kid)
	if err != nil {
		return fmt.Errorf("oauth: %w: token service keys: %v", autherr.ErrUntrustedIssuer, err)
	}
	for _, k := range keys {
		if eq, ok := k.Key.(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(e.key) {
			return nil
		}
	}
	return fmt.Errorf("oauth: %w: token service key %q that signed this Txn-Token is no longer trusted", autherr.ErrUntrustedIssuer, e.kid)
}

func (v *TxnVerifier) verifyFull(ctx context.Context, token string, now time.Time) (*txnEntry, error) {
	s, err := verifyJWS(ctx, "Txn-Token", token, v.algs, v.keys, "the token service")
	if err != nil {
		return nil, err
	}
	if !isTyp(s.typ, TypTxnToken) {
		return nil, fmt.Errorf("oauth: %w: Txn-Token typ is %q, want %q", autherr.ErrMalformed, s.typ, TypTxnToken)
	}
	var c txnClaims
	if err := decodeClaims("Txn-Token", s.payload, &c); err != nil {
		return nil, err
	}
	if v.issuer != "" && c.Iss != v.issuer {
		return nil, fmt.Errorf("oauth: %w: Txn-Token iss %q is not %q", autherr.ErrUntrustedIssuer, c.Iss, v.issuer)
	}
	auds, err := parseAudience("Txn-Token", c.Aud)
	if err != nil {
		return nil, err
	}
	aud, ok := firstMatch(auds, v.audiences)
	if !ok {
		if len(auds) == 0 {
			return nil, fmt.Errorf("oauth: %w: Txn-Token has no aud", autherr.ErrMalformed)
		}
		return nil, fmt.Errorf("oauth: %w: Txn-Token aud %q does not name our trust domain %q", autherr.ErrWrongAudience, auds, v.audiences)
	}
	tc := timeClaims{Exp: c.Exp, Nbf: c.Nbf, Iat: c.Iat}
	if err := tc.check("Txn-Token", now, v.skew, v.maxLife, true); err != nil {
		return nil, err
	}
	if v.legacy {
		c.applyLegacy()
	}
	for _, req := range [...]struct {
		name string
		val  *string
	}{{"txn", c.Txn}, {"sub", c.Sub}, {"scope", c.Scope}, {"req_wl", c.ReqWL}} {
		if req.val == nil || *req.val == "" {
			return nil, fmt.Errorf("oauth: %w: Txn-Token has no %s", autherr.ErrMalformed, req.name)
		}
	}
	info := &TxnInfo{
		Subject:            *c.Sub,
		TransactionID:      *c.Txn,
		Scope:              scopeList(*c.Scope),
		RequestingWorkload: *c.ReqWL,
		Issuer:             c.Iss,
		Audience:           aud,
		IssuedAt:           c.Iat.Time(),
		Expiry:             c.Exp.Time(),
		TransactionContext: c.Tctx,
		RequestContext:     c.Rctx,
		Claims:             c.all(auds),
		Hash:               hashB64(token),
	}
	if c.Act != nil {
		if c.Act.Sub == "" {
			return nil, fmt.Errorf("oauth: %w: Txn-Token act has no sub", autherr.ErrMalformed)
		}
		info.Actor = c.Act.Sub
	}
	return &txnEntry{info: info, kid: s.header.KeyID, key: s.key}, nil
}

// applyLegacy fills the current claim names from the pre-09 ones when absent.
func (c *txnClaims) applyLegacy() {
	if c.Scope == nil && c.Purp != nil {
		c.Scope = c.Purp
	}
	if c.Tctx == nil && c.Azd != nil {
		c.Tctx = c.Azd
	}
	if c.ReqWL == nil {
		if s, ok := c.Rctx["req_wl"].(string); ok {
			c.ReqWL = &s
		}
	}
}

// all returns every claim as a generic map.
func (c *txnClaims) all(auds []string) map[string]any {
	m := make(map[string]any, len(c.Extra)+12)
	for k, val := range c.Extra {
		m[k] = val
	}
	set := func(name string, p *string) {
		if p != nil {
			m[name] = *p
		}
	}
	if c.Iss != "" {
		m["iss"] = c.Iss
	}
	set("sub", c.Sub)
	set("txn", c.Txn)
	set("scope", c.Scope)
	set("req_wl", c.ReqWL)
	set("purp", c.Purp)
	if len(auds) == 1 {
		m["aud"] = auds[0]
	} else {
		l := make([]any, len(auds))
		for i, a := range auds {
			l[i] = a
		}
		m["aud"] = l
	}
	for name, t := range map[string]*jwt.NumericDate{"exp": c.Exp, "iat": c.Iat, "nbf": c.Nbf} {
		if t != nil {
			m[name] = float64(*t)
		}
	}
	for name, obj := range map[string]map[string]any{"tctx": c.Tctx, "rctx": c.Rctx, "azd": c.Azd} {
		if obj != nil {
			m[name] = obj
		}
	}
	if c.Act != nil {
		m["act"] = c.Act.asMap()
	}
	return m
}

func (a *actClaim) asMap() map[string]any {
	m := make(map[string]any, len(a.Extra)+3)
	for k, v := range a.Extra {
		m[k] = v
	}
	m["sub"] = a.Sub
	if a.Iss != "" {
		m["iss"] = a.Iss
	}
	if a.Act != nil {
		m["act"] = a.Act.asMap()
	}
	return m
}

// firstMatch returns the first of got that is in want.
func firstMatch(got, want []string) (string, bool) {
	for _, g := range got {
		for _, w := range want {
			if g == w {
				return g, true
			}
		}
	}
	return "", false
}

// txnCache holds verified Txn-Tokens keyed by the token itself, like pkg/wpt's WIT cache: a hit is an exact
// byte match by construction and costs a map lookup; a hit re-checks exp and that the signing key is still
// trusted. When full, expired entries go first, otherwise an arbitrary one.
type txnCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]*txnEntry
}

func newTxnCache(max int) *txnCache { return &txnCache{max: max, m: make(map[string]*txnEntry)} }

func (c *txnCache) get(token string) *txnEntry {
	c.mu.RLock()
	e := c.m[token]
	c.mu.RUnlock()
	return e
}

func (c *txnCache) put(token string, e *txnEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[token]; !ok && len(c.m) >= c.max {
		evicted := false
		for k, old := range c.m {
			if now.After(old.info.Expiry) {
				delete(c.m, k)
				evicted = true
			}
		}
		if !evicted {
			for k := range c.m {
				delete(c.m, k)
				break
			}
		}
	}
	c.m[token] = e
}
