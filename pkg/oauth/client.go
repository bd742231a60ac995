package oauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// Defaults for ExchangerConfig.
const (
	DefaultRefreshBefore   = 30 * time.Second
	DefaultExchangeTimeout = 10 * time.Second
	DefaultClientCacheSize = 1024
	// maxResponseSize bounds a token endpoint response.
	maxResponseSize = 64 << 10
)

// WITSource gives the agent's current WIT and its key; identity.Source satisfies it.
type WITSource interface {
	GetWIT() (*identity.WIT, error)
}

// ExchangerConfig configures an Exchanger.
type ExchangerConfig struct {
	// TokenEndpoint is the token service's https URL (required); it is also the aud of the WPT we prove the WIT
	// with, so it must be exactly the service's configured Endpoint.
	TokenEndpoint string
	// TrustDomain is ours: the audience of the Txn-Tokens we ask for (required).
	TrustDomain spiffeid.TrustDomain
	// Source gives the agent's WIT and key: the actor token, proved by a WPT (required unless JWTSVID is set).
	Source WITSource
	// JWTSVID, when set, makes the actor a JWT-SVID for the given audience (the token endpoint) instead of a WIT;
	// the token service accepts it only over mTLS from the same SPIFFE ID, so HTTPClient must present the agent's
	// X.509-SVID.
	JWTSVID func(ctx context.Context, audience string) (string, error)
	// HTTPClient calls the token endpoint; nil means a plain HTTPS client. Its timeout, if any, also applies.
	HTTPClient *http.Client
	// UserTokenHeader is where the agent's request carries the user's token; "" means Authorization, where only
	// the Bearer scheme counts. For other headers an optional "Bearer " prefix is stripped.
	UserTokenHeader string
	// UserTokenType is the subject_token_type of that token; "" means TokenTypeAccessToken.
	UserTokenType string
	// KeepUserToken forwards the user's raw token to the tool; by default it is removed once exchanged.
	KeepUserToken bool
	// RefreshBefore: a cached token is replaced this long before it expires (at most half its lifetime);
	// 0 means DefaultRefreshBefore.
	RefreshBefore time.Duration
	// CacheSize bounds cached tokens; 0 means DefaultClientCacheSize, negative disables caching.
	CacheSize int
	// Timeout bounds one exchange, whoever waits for it; 0 means DefaultExchangeTimeout.
	Timeout time.Duration
	// Logger records exchanges (token fingerprints only); nil means no logging.
	Logger *zap.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// TokenRequest asks for one token.
type TokenRequest struct {
	// SubjectToken and SubjectTokenType name on whose behalf; empty means the agent itself.
	SubjectToken, SubjectTokenType string
	// RequestedTokenType is TokenTypeTxnToken ("" too) or TokenTypeAccessToken.
	RequestedTokenType string
	// Audience defaults to the trust domain for Txn-Tokens; Resource is an RFC 8707 resource URI.
	Audience, Resource string
	// Scope is space-separated.
	Scope string
}

// Token is an issued token. Tokens from the cache are shared between callers: do not modify them.
type Token struct {
	Value string
	// Type is the issued_token_type.
	Type  string
	Scope string
	// Expiry is when it stops being valid; zero when the service said nothing and the token is not a JWT.
	Expiry time.Time

	received time.Time
}

// Exchanger obtains tokens from the token service on the agent's behalf (egress). Tokens are cached per
// (subject token hash, requested type, audience, resource, scope) until shortly before they expire, and
// concurrent requests for the same key share one exchange. It is safe for concurrent use.
type Exchanger struct {
	cfg      ExchangerConfig
	client   *http.Client
	userHdr  string
	userType string
	refresh  time.Duration
	timeout  time.Duration
	log      *zap.Logger
	now      func() time.Time
	prover   atomic.Pointer[wpt.Prover]

	mu                      sync.Mutex
	max                     int
	entries                 map[cacheKey]*Token
	flights                 map[cacheKey]*flight
	exchanges, hits, shared atomic.Int64
}

// ExchangerStats counts what an Exchanger did, for metrics.
type ExchangerStats struct {
	// Exchanges is the number of requests sent to the token endpoint.
	Exchanges int64
	// CacheHits is the number of tokens served from the cache.
	CacheHits int64
	// Shared is the number of callers that waited for an exchange another caller had started.
	Shared int64
}

type cacheKey struct {
	subject                        [sha256.Size]byte
	subjectType, requested         string
	audience, resource, scopeParam string
}

type flight struct {
	done chan struct{}
	tok  *Token
	err  error
}

// NewExchanger checks cfg and returns an Exchanger.
func NewExchanger(cfg ExchangerConfig) (*Exchanger, error) {
	u, err := url.Parse(cfg.TokenEndpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("oauth: TokenEndpoint %q must be an https URL without query or fragment (tokens travel there)", cfg.TokenEndpoint)
	}
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("oauth: ExchangerConfig.TrustDomain is required")
	}
	if cfg.Source == nil && cfg.JWTSVID == nil {
		return nil, errors.New("oauth: ExchangerConfig needs Source (WIT) or JWTSVID for the actor")
	}
	if cfg.RefreshBefore < 0 || cfg.Timeout < 0 {
		return nil, errors.New("oauth: RefreshBefore and Timeout must not be negative")
	}
	x := &Exchanger{cfg: cfg, client: cfg.HTTPClient, userHdr: cfg.UserTokenHeader, userType: cfg.UserTokenType,
		refresh: cfg.RefreshBefore, timeout: cfg.Timeout, log: cfg.Logger, now: cfg.Now, max: cfg.CacheSize,
		entries: map[cacheKey]*Token{}, flights: map[cacheKey]*flight{}}
	if x.client == nil {
		x.client = &http.Client{}
	}
	if x.userHdr == "" {
		x.userHdr = "Authorization"
	}
	if x.userType == "" {
		x.userType = TokenTypeAccessToken
	}
	if x.refresh == 0 {
		x.refresh = DefaultRefreshBefore
	}
	if x.timeout == 0 {
		x.timeout = DefaultExchangeTimeout
	}
	if x.log == nil {
		x.log = zap.NewNop()
	}
	if x.now == nil {
		x.now = time.Now
	}
	if x.max == 0 {
		x.max = DefaultClientCacheSize
	}
	return x, nil
}

// Stats returns the counters so far.
func (x *Exchanger) Stats() ExchangerStats {
	return ExchangerStats{Exchanges: x.exchanges.Load(), CacheHits: x.hits.Load(), Shared: x.shared.Load()}
}

// Apply gives r a Txn-Token for scope (egress, before the WPT is minted so that it binds the token with tth).
// The subject is, in order: a Txn-Token r already carries (replaced by one naming this agent as req_wl, same
// txn and sub), the user's token from the configured header (removed from r unless KeepUserToken), or the agent
// itself.
func (x *Exchanger) Apply(ctx context.Context, r *http.Request, scope string) error {
	tr := TokenRequest{RequestedTokenType: TokenTypeTxnToken, Audience: x.cfg.TrustDomain.Name(), Scope: scope}
	if err := x.subjectFrom(r, &tr); err != nil {
		return err
	}
	tok, err := x.Exchange(ctx, tr)
	if err != nil {
		return err
	}
	r.Header.Set(wire.HeaderTxnToken, tok.Value)
	return nil
}

// subjectFrom fills tr's subject from r: its Txn-Token, else its user token (removed unless kept), else none.
func (x *Exchanger) subjectFrom(r *http.Request, tr *TokenRequest) error {
	if len(r.Header.Values(wire.HeaderTxnToken)) > 0 {
		txn, err := TxnTokenFromHeader(r.Header)
		if err != nil {
			return err
		}
		tr.SubjectToken, tr.SubjectTokenType = txn, TokenTypeTxnToken
		x.dropUserToken(r)
		return nil
	}
	tok, err := x.userToken(r.Header)
	if err != nil || tok == "" {
		return err
	}
	tr.SubjectToken, tr.SubjectTokenType = tok, x.userType
	x.dropUserToken(r)
	return nil
}

// userToken reads the user's token from h; "" when there is none.
func (x *Exchanger) userToken(h http.Header) (string, error) {
	vals := h.Values(x.userHdr)
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", fmt.Errorf("oauth: %w: %d %s headers; want at most one user token", autherr.ErrMalformed, len(vals), x.userHdr)
	}
	v := strings.TrimSpace(vals[0])
	hasBearer := len(v) > 7 && strings.EqualFold(v[:7], "bearer ")
	if hasBearer {
		v = strings.TrimSpace(v[7:])
	} else if strings.EqualFold(x.userHdr, "Authorization") {
		return "", nil // another scheme (Basic, ...) is not a user token for us
	}
	if len(v) > MaxSubjectTokenSize {
		return "", fmt.Errorf("oauth: %w: user token in %s is %d bytes, over %d", autherr.ErrTooLarge, x.userHdr, len(v), MaxSubjectTokenSize)
	}
	return v, nil
}

func (x *Exchanger) dropUserToken(r *http.Request) {
	if x.cfg.KeepUserToken {
		return
	}
	if strings.EqualFold(x.userHdr, "Authorization") {
		if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			r.Header.Del("Authorization")
		}
		return
	}
	r.Header.Del(x.userHdr)
}

// Exchange returns a token for tr, from the cache when one is there and not about to expire, otherwise from the
// token service (one exchange for all concurrent callers with the same tr). Errors wrap an autherr sentinel;
// a refusal by the token service is an *Error wrapping the reason it gave.
func (x *Exchanger) Exchange(ctx context.Context, tr TokenRequest) (*Token, error) {
	if tr.RequestedTokenType == "" {
		tr.RequestedTokenType = TokenTypeTxnToken
	}
	if tr.Audience == "" && tr.RequestedTokenType == TokenTypeTxnToken {
		tr.Audience = x.cfg.TrustDomain.Name()
	}
	k := cacheKey{subject: sha256.Sum256([]byte(tr.SubjectToken)), subjectType: tr.SubjectTokenType,
		requested: tr.RequestedTokenType, audience: tr.Audience, resource: tr.Resource, scopeParam: tr.Scope}
	now := x.now()
	x.mu.Lock()
	if tok := x.entries[k]; tok != nil {
		if now.Before(x.refreshAt(tok)) {
			x.mu.Unlock()
			x.hits.Add(1)
			return tok, nil
		}
		delete(x.entries, k)
	}
	f := x.flights[k]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		x.flights[k] = f
		// The exchange outlives this caller's cancellation: others may be waiting for it.
		go x.run(context.WithoutCancel(ctx), k, f, tr)
	} else {
		x.shared.Add(1)
	}
	x.mu.Unlock()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("oauth: %w: waiting for the token exchange: %v", autherr.ErrUpstreamTimeout, ctx.Err())
		}
		return nil, fmt.Errorf("oauth: %w: waiting for the token exchange: %v", autherr.ErrUpstream, ctx.Err())
	}
}

// refreshAt is when a cached token is replaced: RefreshBefore ahead of its expiry, but no earlier than half way
// through the lifetime it had when it arrived, so short-lived tokens are still reused.
func (x *Exchanger) refreshAt(tok *Token) time.Time {
	margin := x.refresh
	if half := tok.Expiry.Sub(tok.received) / 2; half < margin {
		margin = half
	}
	return tok.Expiry.Add(-margin)
}

func (x *Exchanger) run(ctx context.Context, k cacheKey, f *flight, tr TokenRequest) {
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	f.tok, f.err = x.exchange(ctx, tr)
	x.mu.Lock()
	delete(x.flights, k)
	if f.err == nil && x.max > 0 && !f.tok.Expiry.IsZero() && x.now().Before(x.refreshAt(f.tok)) {
		x.evictLocked()
		x.entries[k] = f.tok
	}
	x.mu.Unlock()
	close(f.done)
}

// evictLocked makes room for one entry: expired-soon entries first, otherwise an arbitrary one.
func (x *Exchanger) evictLocked() {
	if len(x.entries) < x.max {
		return
	}
	now := x.now()
	for k, t := range x.entries {
		if !now.Before(x.refreshAt(t)) {
			delete(x.entries, k)
		}
	}
	for k := range x.entries {
		if len(x.entries) < x.max {
			return
		}
		delete(x.entries, k)
	}
}

// exchange performs one RFC 8693 request.
func (x *Exchanger) exchange(ctx context.Context, tr TokenRequest) (*Token, error) {
	x.exchanges.Add(1)
	form := url.Values{
		"grant_type":           {GrantTypeTokenExchange},
		"requested_token_type": {tr.RequestedTokenType},
	}
	if tr.Audience != "" {
		form.Set("audience", tr.Audience)
	}
	if tr.Resource != "" {
		form.Set("resource", tr.Resource)
	}
	if tr.Scope != "" {
		form.Set("scope", tr.Scope)
	}
	hdr := http.Header{}
	if err := x.actor(ctx, form, hdr); err != nil {
		return nil, err
	}
	if tr.SubjectToken != "" {
		form.Set("subject_token", tr.SubjectToken)
		form.Set("subject_token_type", tr.SubjectTokenType)
	} else {
		// RFC 8693 requires a subject_token: acting for itself, the agent's own credential is the subject.
		form.Set("subject_token", form.Get("actor_token"))
		form.Set("subject_token_type", form.Get("actor_token_type"))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.cfg.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("oauth: %w: %v", autherr.ErrUpstream, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := x.now()
	tok, err := x.send(req, tr.RequestedTokenType, start)
	fields := []zap.Field{zap.String("requested", tr.RequestedTokenType), zap.String("audience", tr.Audience),
		zap.String("resource", tr.Resource), zap.String("scope", tr.Scope),
		zap.String("subject_sha256", TokenFingerprint(tr.SubjectToken))}
	if err != nil {
		x.log.Warn("token exchange failed", append(fields, zap.Error(err))...)
		return nil, err
	}
	x.log.Debug("token exchanged", append(fields, zap.String("token_sha256", TokenFingerprint(tok.Value)), zap.Time("exp", tok.Expiry))...)
	return tok, nil
}

// actor adds the actor token (and its proof) to the request.
func (x *Exchanger) actor(ctx context.Context, form url.Values, hdr http.Header) error {
	if x.cfg.JWTSVID != nil {
		svid, err := x.cfg.JWTSVID(ctx, x.cfg.TokenEndpoint)
		if err != nil {
			return fmt.Errorf("oauth: %w: no JWT-SVID for the token endpoint: %v", autherr.ErrMissing, err)
		}
		form.Set("actor_token", svid)
		form.Set("actor_token_type", TokenTypeJWT)
		return nil
	}
	w, err := x.cfg.Source.GetWIT()
	if err != nil {
		if autherr.Of(err) != nil {
			return fmt.Errorf("oauth: the agent's WIT: %w", err)
		}
		return fmt.Errorf("oauth: %w: the agent's WIT: %v", autherr.ErrMissing, err)
	}
	p := x.prover.Load()
	if p == nil || p.WIT() != w.Token {
		if p, err = wpt.NewProver(w.Token, w.Key); err != nil {
			return fmt.Errorf("oauth: the agent's WIT and key: %w", err)
		}
		x.prover.Store(p)
	}
	proof, err := p.Mint(wpt.ProofParams{Audience: x.cfg.TokenEndpoint, Now: x.now()})
	if err != nil {
		return fmt.Errorf("oauth: proving the WIT to the token endpoint: %w", err)
	}
	form.Set("actor_token", w.Token)
	form.Set("actor_token_type", TokenTypeWIT)
	hdr.Set(wire.HeaderWPT, proof)
	return nil
}

// send posts the request and reads the answer.
func (x *Exchanger) send(req *http.Request, requested string, start time.Time) (*Token, error) {
	resp, err := x.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return nil, fmt.Errorf("oauth: %w: token endpoint: %v", autherr.ErrUpstreamTimeout, err)
		}
		return nil, fmt.Errorf("oauth: %w: token endpoint: %v", autherr.ErrUpstream, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("oauth: %w: reading the token endpoint's answer: %v", autherr.ErrUpstream, err)
	}
	if len(body) > maxResponseSize {
		return nil, fmt.Errorf("oauth: %w: token endpoint answer over %d bytes", autherr.ErrUpstream, maxResponseSize)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp.StatusCode, body)
	}
	var tr TokenResponse
	if err := jsonUnmarshal(body, &tr); err != nil {
		return nil, fmt.Errorf("oauth: %w: token endpoint answer is not a token response: %v", autherr.ErrUpstream, err)
	}
	switch {
	case tr.AccessToken == "":
		return nil, fmt.Errorf("oauth: %w: token endpoint answer has no access_token", autherr.ErrUpstream)
	case tr.IssuedTokenType != requested:
		return nil, fmt.Errorf("oauth: %w: token endpoint issued %q, not the requested %q", autherr.ErrUpstream, tr.IssuedTokenType, requested)
	case requested == TokenTypeAccessToken && !strings.EqualFold(tr.TokenType, "Bearer"):
		return nil, fmt.Errorf("oauth: %w: token endpoint issued a %q access token; only Bearer can be injected", autherr.ErrUpstream, tr.TokenType)
	}
	tok := &Token{Value: tr.AccessToken, Type: tr.IssuedTokenType, Scope: tr.Scope, received: start}
	switch {
	case tr.ExpiresIn > 0:
		tok.Expiry = start.Add(time.Duration(tr.ExpiresIn) * time.Second)
	default:
		tok.Expiry = unverifiedExpiry(tr.AccessToken)
	}
	return tok, nil
}

// responseError turns an RFC 6749 §5.2 error response into an *Error wrapping the reason the service named (our
// "reason" extension), or one that fits the OAuth code.
func responseError(status int, body []byte) error {
	var eb errorBody
	if err := jsonUnmarshal(body, &eb); err != nil || eb.Error == "" {
		reason := autherr.ErrUpstream
		if status == http.StatusGatewayTimeout {
			reason = autherr.ErrUpstreamTimeout
		}
		return &Error{Code: CodeServerError, Status: status,
			Description: fmt.Sprintf("token endpoint answered %d without an OAuth error", status),
			Err:         fmt.Errorf("oauth: %w: token endpoint answered %d", reason, status)}
	}
	r := reasonByCode(eb.Reason)
	if r == nil {
		r = reasonForOAuthCode(eb.Error)
	}
	return &Error{Code: eb.Error, Description: eb.Description, Status: status,
		Err: fmt.Errorf("oauth: %w: token service refused: %s: %s", r, eb.Error, eb.Description)}
}

// unverifiedExpiry reads exp from a JWT without verifying it: only to know how long to cache a token the
// service did not give expires_in for. Zero when it is not a JWT with exp.
func unverifiedExpiry(token string) time.Time {
	jws, err := jose.ParseSignedCompact(token, supportedAlgs)
	if err != nil {
		return time.Time{}
	}
	var c struct {
		Exp *jwt.NumericDate `json:"exp"`
	}
	if jsonUnmarshal(jws.UnsafePayloadWithoutVerification(), &c) != nil || c.Exp == nil {
		return time.Time{}
	}
	return c.Exp.Time()
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
