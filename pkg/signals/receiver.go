package signals

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Sink persists and publishes what SETs change. The controller implements it over pkg/store and the xDS
// publisher.
//
// Apply must be atomic (all changes or none) and durable when it returns nil: the transmitter hears 202 only
// after that, and a SET whose Apply failed is retried by the transmitter. Apply must be idempotent: a revocation
// is keyed by its id, and a risk state is stored as MergeRisk(stored, update) under its subject's key.
type Sink interface {
	Apply(ctx context.Context, changes []Change) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, changes []Change) error

// Apply calls f.
func (f SinkFunc) Apply(ctx context.Context, changes []Change) error { return f(ctx, changes) }

// TransmitterConfig is one transmitter this receiver accepts SETs from.
type TransmitterConfig struct {
	// Issuer is the transmitter's issuer URL, exactly as in the SETs' iss.
	Issuer string
	// Audience lists the values that name this receiver; a SET's aud must contain one of them.
	Audience []string
	// JWKSURL (https, or http on a loopback address), JWKSFile or JWKS (the JWK Set document itself, e.g. from a
	// Kubernetes Secret): where the transmitter's public keys are; exactly one. A URL is cached per its
	// Cache-Control max-age; a URL or file is fetched again when a SET names a kid it lacks (at most once per
	// JWKSCacheConfig.MinRefresh), which is how key rotation reaches the receiver. New JWKS takes SetTransmitters.
	JWKSURL  string
	JWKSFile string
	JWKS     []byte
	// JWKSSource names where JWKS came from, for errors and logs (default "inline").
	JWKSSource string
	// AllowedAlgs are the JWS algorithms accepted; asymmetric only. Default: RS256/384/512, PS256/384/512,
	// ES256/384/512, EdDSA.
	AllowedAlgs []jose.SignatureAlgorithm
	// MaxIATAge refuses SETs issued longer ago than this (default 24h); it also bounds how long a jti is kept
	// for de-duplication, since an older SET is refused anyway.
	MaxIATAge time.Duration
	// MaxIATFuture is the clock skew allowed for an iat in the future (default 5m).
	MaxIATFuture time.Duration
	// PushAuthorization, if set, is the Authorization header value every push delivery from this transmitter
	// must carry (the stream's authorization_header); a push without it is refused with authentication_failed.
	PushAuthorization string
	// AllowedEvents, if set, lists the event types this transmitter may send; another known event type is
	// refused with access_denied. SSF stream control events (verification, stream-updated) are always allowed.
	AllowedEvents []string
}

// ReceiverConfig configures NewReceiver.
type ReceiverConfig struct {
	// Transmitters are the ones trusted from the start; SetTransmitters replaces them. With none, every SET is
	// refused (invalid_issuer) until SetTransmitters names some.
	Transmitters []TransmitterConfig
	// Sink applies what SETs change. Required.
	Sink Sink
	// Dedup remembers applied SETs across restarts (NewStoreDedup). Required.
	Dedup Dedup
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// MaxBodyBytes caps a pushed body and a SET (default 64 KiB).
	MaxBodyBytes int
	// Now defaults to time.Now.
	Now func() time.Time
	// HTTPClient fetches JWKS URLs (default: a client with a 10s timeout).
	HTTPClient *http.Client
	// JWKSCache tunes key caching; zero fields take its defaults.
	JWKSCache JWKSCacheConfig
	// Mapper turns SETs into changes; the zero value is fine (see Mapper.RevocationTTL).
	Mapper Mapper
	// Observe, when set, is told what became of every SET delivered (pushed or polled), for metrics: result is
	// ResultAccepted, ResultDuplicate, ResultRefused (reason: the autherr code) or ResultFailed (ours; the
	// transmitter delivers it again).
	Observe func(result, reason string)
}

// What became of a delivered SET, as ReceiverConfig.Observe is told it.
const (
	ResultAccepted  = "accepted"
	ResultDuplicate = "duplicate"
	ResultRefused   = "refused"
	ResultFailed    = "failed"
)

// Result is what processing a SET did.
type Result struct {
	Issuer, JTI string
	// Duplicate is true when the SET was applied before; nothing was applied again.
	Duplicate bool
	Changes   []Change
	Ignored   []Ignored
}

// Receiver verifies SETs, applies them through the Sink, and is the RFC 8935 push endpoint (ServeHTTP). It is
// safe for concurrent use.
type Receiver struct {
	// trusted is the transmitter set in force; SetTransmitters swaps it whole, and each SET is verified against
	// the one set it loaded first.
	trusted   atomic.Pointer[transmitterSet]
	setMu     sync.Mutex // serialises SetTransmitters
	cache     ijose.RemoteKeySetConfig
	sink      Sink
	dedup     Dedup
	log       *zap.Logger
	maxBody   int
	now       func() time.Time
	client    *http.Client
	mapper    Mapper
	observeFn func(result, reason string)

	verifyMu sync.Mutex
	pending  map[streamKey]*pendingVerification
}

type transmitter struct {
	TransmitterConfig
	keys *ijose.RemoteKeySet
}

// transmitterSet is one immutable set of trusted transmitters.
type transmitterSet struct {
	byIssuer map[string]*transmitter
	algs     []jose.SignatureAlgorithm // union over the transmitters, for parsing before iss is known
}

type streamKey struct{ iss, stream string }

type pendingVerification struct {
	state string
	done  chan struct{}
}

const defaultMaxBody = 64 << 10

func defaultAlgs() []jose.SignatureAlgorithm { return ijose.SupportedAlgs() }

// NewReceiver checks cfg and loads JWKS files (JWKS URLs are fetched when the first SET needs them).
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if cfg.Sink == nil || cfg.Dedup == nil {
		return nil, errors.New("signals: ReceiverConfig needs a Sink and a Dedup")
	}
	r := &Receiver{sink: cfg.Sink, dedup: cfg.Dedup, log: cfg.Logger,
		maxBody: cfg.MaxBodyBytes, now: cfg.Now, client: cfg.HTTPClient, mapper: cfg.Mapper,
		observeFn: cfg.Observe,
		pending:   map[streamKey]*pendingVerification{}}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if r.maxBody <= 0 {
		r.maxBody = defaultMaxBody
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.client == nil {
		r.client = &http.Client{Timeout: 10 * time.Second}
	}
	r.cache = cfg.JWKSCache.keySetConfig()
	r.cache.Client, r.cache.Now = r.client, r.now
	r.trusted.Store(&transmitterSet{byIssuer: map[string]*transmitter{}})
	if err := r.SetTransmitters(cfg.Transmitters); err != nil {
		return nil, err
	}
	return r, nil
}

// SetTransmitters replaces the trusted transmitters with ts, atomically: a SET is verified wholly against the
// set before or wholly against the one after, and a transmitter left out is refused (invalid_issuer) from the
// next SET on. A transmitter whose configuration did not change keeps its cached keys. When ts has an error
// (CheckTransmitter's, or an issuer named twice), nothing changes.
func (r *Receiver) SetTransmitters(ts []TransmitterConfig) error {
	r.setMu.Lock()
	defer r.setMu.Unlock()
	old := r.trusted.Load()
	next := &transmitterSet{byIssuer: make(map[string]*transmitter, len(ts))}
	for _, tc := range ts {
		if _, dup := next.byIssuer[tc.Issuer]; dup {
			return fmt.Errorf("signals: transmitter %q is configured twice", tc.Issuer)
		}
		t, err := r.newTransmitter(tc)
		if err != nil {
			return err
		}
		if prev := old.byIssuer[tc.Issuer]; prev != nil && sameTransmitter(prev.TransmitterConfig, t.TransmitterConfig) {
			t = prev
		}
		next.byIssuer[tc.Issuer] = t
		for _, a := range t.AllowedAlgs {
			if !slices.Contains(next.algs, a) {
				next.algs = append(next.algs, a)
			}
		}
	}
	if len(next.algs) == 0 {
		next.algs = defaultAlgs() // so that a SET parses and is refused for its issuer
	}
	r.trusted.Store(next)
	return nil
}

// CheckTransmitter checks tc as SetTransmitters would (and loads its keys when they are a file or inline),
// without trusting it.
func (r *Receiver) CheckTransmitter(tc TransmitterConfig) error {
	_, err := r.newTransmitter(tc)
	return err
}

// Trusts reports whether iss is a trusted transmitter now.
func (r *Receiver) Trusts(iss string) bool { return r.trusted.Load().byIssuer[iss] != nil }

// sameTransmitter reports whether a and b (with defaults applied) configure the same transmitter.
func sameTransmitter(a, b TransmitterConfig) bool {
	return a.Issuer == b.Issuer && slices.Equal(a.Audience, b.Audience) && a.JWKSURL == b.JWKSURL &&
		a.JWKSFile == b.JWKSFile && bytes.Equal(a.JWKS, b.JWKS) && a.JWKSSource == b.JWKSSource &&
		slices.Equal(a.AllowedAlgs, b.AllowedAlgs) && a.MaxIATAge == b.MaxIATAge && a.MaxIATFuture == b.MaxIATFuture &&
		a.PushAuthorization == b.PushAuthorization && slices.Equal(a.AllowedEvents, b.AllowedEvents)
}

func (r *Receiver) newTransmitter(tc TransmitterConfig) (*transmitter, error) {
	cache := r.cache
	sources := 0
	for _, set := range []bool{tc.JWKSURL != "", tc.JWKSFile != "", tc.JWKS != nil} {
		if set {
			sources++
		}
	}
	switch {
	case tc.Issuer == "":
		return nil, errors.New("signals: transmitter with no issuer")
	case len(tc.Audience) == 0 || slices.Contains(tc.Audience, ""):
		return nil, fmt.Errorf("signals: transmitter %q: audience must name this receiver", tc.Issuer)
	case sources != 1:
		return nil, fmt.Errorf("signals: transmitter %q: set exactly one of JWKSURL, JWKSFile and JWKS", tc.Issuer)
	}
	if len(tc.AllowedAlgs) == 0 {
		tc.AllowedAlgs = defaultAlgs()
	}
	for _, a := range tc.AllowedAlgs {
		if !slices.Contains(defaultAlgs(), a) {
			return nil, fmt.Errorf("signals: transmitter %q: algorithm %q is not an asymmetric JWS algorithm", tc.Issuer, a)
		}
	}
	if tc.MaxIATAge <= 0 {
		tc.MaxIATAge = 24 * time.Hour
	}
	if tc.MaxIATFuture <= 0 {
		tc.MaxIATFuture = 5 * time.Minute
	}
	t := &transmitter{TransmitterConfig: tc}
	cache.Logger = r.log.With(zap.String("transmitter", tc.Issuer))
	var err error
	switch {
	case tc.JWKSURL != "":
		if err := checkOutboundURL(tc.JWKSURL); err != nil {
			return nil, fmt.Errorf("signals: transmitter %q: JWKS URL: %w", tc.Issuer, err)
		}
		cache.URL, cache.AllowHTTP = tc.JWKSURL, true // checkOutboundURL allows http to loopback only
		t.keys, err = ijose.NewRemoteKeySet(cache)
	case tc.JWKSFile != "":
		t.keys, err = ijose.NewFileKeySet(tc.JWKSFile, cache)
	default:
		t.keys, err = ijose.NewStaticKeySet(cmp.Or(tc.JWKSSource, "inline"), tc.JWKS, cache)
	}
	if err != nil {
		return nil, fmt.Errorf("signals: transmitter %q: %w", tc.Issuer, err)
	}
	return t, nil
}

// CheckEndpointURL checks a URL the receiver is to call (a poll endpoint) as NewPoller does: https, or http to a
// loopback address.
func CheckEndpointURL(raw string) error { return checkOutboundURL(raw) }

// checkOutboundURL requires https (SSF §6.1), except http to a loopback address for tests and demos.
func checkOutboundURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	if u.Scheme == "https" {
		return nil
	}
	if u.Scheme == "http" {
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("%q must use https (http only to a loopback address)", raw)
}

// Process verifies one SET (compact JWS), and unless it is a duplicate, applies what it changes through the
// Sink and marks it seen. A *SETError means the SET was refused (nothing applied); any other error is ours
// (Sink, Dedup or JWKS unavailable) and the SET should be delivered again.
func (r *Receiver) Process(ctx context.Context, token string) (*Result, error) {
	return r.process(ctx, token, nil)
}

// process is Process; pushAuth is the push request's Authorization header, nil for other deliveries.
func (r *Receiver) process(ctx context.Context, token string, pushAuth *string) (*Result, error) {
	set, t, err := r.verify(ctx, token, pushAuth)
	if err == nil {
		var res *Result
		if res, err = r.apply(ctx, set, t); err == nil {
			if res.Duplicate {
				r.observe(ResultDuplicate, "")
			} else {
				r.observe(ResultAccepted, "")
			}
			return res, nil
		}
	}
	fields := []zap.Field{zap.Error(err)}
	if set != nil {
		fields = append(fields, zap.String("iss", set.Issuer), zap.String("jti", set.JTI))
	}
	var se *SETError
	if errors.As(err, &se) {
		r.observe(ResultRefused, autherr.Code(se.Err))
		r.log.Warn("SET refused", append(fields, zap.String("err", se.Code))...)
	} else {
		r.observe(ResultFailed, "")
		r.log.Error("SET not processed; the transmitter should retry", fields...)
	}
	return nil, err
}

func (r *Receiver) observe(result, reason string) {
	if r.observeFn != nil {
		r.observeFn(result, reason)
	}
}

// verify runs every check on the SET, in an order that gives the transmitter the most useful error code:
// structure, explicit type, issuer, (push authorization), algorithm, key and signature, then claims.
func (r *Receiver) verify(ctx context.Context, token string, pushAuth *string) (*SET, *transmitter, error) {
	trusted := r.trusted.Load()
	jws, iss, err := r.parseSET(token, trusted.algs)
	if err != nil {
		return nil, nil, err
	}
	t, err := trusted.transmitterFor(iss, pushAuth)
	if err != nil {
		return nil, nil, err
	}
	payload, err := t.verifySignature(ctx, jws)
	if err != nil {
		return nil, nil, err
	}
	set, err := parseClaims(payload)
	if err != nil {
		return nil, nil, &SETError{Code: CodeInvalidRequest, Err: fmt.Errorf("signals: %w", err)}
	}
	if err := r.checkClaims(set, t); err != nil {
		return set, nil, err
	}
	return set, t, nil
}

// parseSET parses token as a compact JWS with an accepted alg and the SET typ, and returns it with the iss its
// payload claims (not yet verified: it says whose keys to verify with).
func (r *Receiver) parseSET(token string, algs []jose.SignatureAlgorithm) (*jose.JSONWebSignature, string, error) {
	if len(token) > r.maxBody {
		return nil, "", refuse(CodeInvalidRequest, autherr.ErrTooLarge, "SET is %d bytes (limit %d)", len(token), r.maxBody)
	}
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		switch {
		case errors.As(err, &alg) && (alg.Got == "" || strings.EqualFold(string(alg.Got), "none")):
			return nil, "", refuse(CodeAuthenticationFailed, autherr.ErrUnsupportedAlg, "SET is unsigned (alg %q); signed SETs are required", alg.Got)
		case errors.As(err, &alg):
			return nil, "", refuse(CodeInvalidKey, autherr.ErrUnsupportedAlg, "algorithm %q is not accepted (accepted: %v)", truncate(string(alg.Got), 32), algs)
		}
		return nil, "", refuse(CodeInvalidRequest, autherr.ErrMalformed, "not a compact JWS: %v", err)
	}
	hdr := jws.Signatures[0].Protected
	typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string)
	if !strings.EqualFold(typ, "secevent+jwt") && !strings.EqualFold(typ, "application/secevent+jwt") {
		return nil, "", refuse(CodeInvalidRequest, autherr.ErrMalformed, "typ is %q, want secevent+jwt", truncate(typ, 64))
	}
	var unverified struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil || unverified.Iss == "" {
		return nil, "", refuse(CodeInvalidRequest, autherr.ErrMalformed, "payload is not a JSON object with an iss")
	}
	return jws, unverified.Iss, nil
}

// transmitterFor returns the configured transmitter iss, after checking a push delivery's Authorization header
// (pushAuth; nil for a poll) against it.
func (ts *transmitterSet) transmitterFor(iss string, pushAuth *string) (*transmitter, error) {
	t := ts.byIssuer[iss]
	if t == nil {
		return nil, refuse(CodeInvalidIssuer, autherr.ErrUntrustedIssuer, "issuer %q is not a configured transmitter", truncate(iss, 256))
	}
	if pushAuth != nil && t.PushAuthorization != "" {
		switch {
		case *pushAuth == "":
			return nil, refuse(CodeAuthenticationFailed, autherr.ErrMissing, "push from %s has no Authorization header", t.Issuer)
		case subtle.ConstantTimeCompare([]byte(*pushAuth), []byte(t.PushAuthorization)) != 1:
			return nil, refuse(CodeAuthenticationFailed, autherr.ErrMismatch, "push from %s has the wrong Authorization header", t.Issuer)
		}
	}
	return t, nil
}

// verifySignature verifies jws with one of t's keys for its kid and alg and returns the payload.
func (t *transmitter) verifySignature(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	hdr := jws.Signatures[0].Protected
	alg := jose.SignatureAlgorithm(hdr.Algorithm)
	if !slices.Contains(t.AllowedAlgs, alg) {
		return nil, refuse(CodeInvalidKey, autherr.ErrUnsupportedAlg, "algorithm %s is not accepted from %s", alg, t.Issuer)
	}
	keys, err := t.keys.Keys(ctx, hdr.KeyID, alg)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, refuse(CodeInvalidKey, autherr.ErrUntrustedIssuer, "%s has no %s key with kid %q", t.Issuer, alg, truncate(hdr.KeyID, 128))
	}
	for _, k := range keys {
		if p, err := jws.Verify(k); err == nil {
			return p, nil
		}
	}
	return nil, refuse(CodeInvalidKey, autherr.ErrBadSignature, "signature does not verify with %s key %q", t.Issuer, truncate(hdr.KeyID, 128))
}

// checkClaims checks a verified SET's audience, times and events against what t may send.
func (r *Receiver) checkClaims(set *SET, t *transmitter) error {
	if !slices.ContainsFunc(set.Audience, func(a string) bool { return slices.Contains(t.Audience, a) }) {
		return refuse(CodeInvalidAudience, autherr.ErrWrongAudience, "aud %q does not name this receiver (%v)", set.Audience, t.Audience)
	}
	now := r.now()
	switch {
	case now.Sub(set.IssuedAt) > t.MaxIATAge:
		return refuse(CodeInvalidRequest, autherr.ErrExpired, "iat %s is more than %s ago", set.IssuedAt.Format(time.RFC3339), t.MaxIATAge)
	case set.IssuedAt.Sub(now) > t.MaxIATFuture:
		return refuse(CodeInvalidRequest, autherr.ErrNotYetValid, "iat %s is more than %s ahead", set.IssuedAt.Format(time.RFC3339), t.MaxIATFuture)
	case !set.Expires.IsZero() && !now.Before(set.Expires):
		return refuse(CodeInvalidRequest, autherr.ErrExpired, "exp %s has passed", set.Expires.Format(time.RFC3339))
	}
	if len(t.AllowedEvents) > 0 {
		for _, ev := range set.Events {
			_, known := EventURI(ev.Type)
			control := ev.Type == EventVerification || ev.Type == EventStreamUpdated
			if known && !control && !slices.Contains(t.AllowedEvents, ev.Type) {
				return refuse(CodeAccessDenied, autherr.ErrDenied, "%s may not send %s", t.Issuer, ShortEventName(ev.Type))
			}
		}
	}
	return nil
}

// apply de-duplicates, maps and applies a verified SET, then marks it seen.
func (r *Receiver) apply(ctx context.Context, set *SET, t *transmitter) (*Result, error) {
	res := &Result{Issuer: set.Issuer, JTI: set.JTI}
	seen, err := r.dedup.Seen(ctx, set.Issuer, set.JTI)
	if err != nil {
		return nil, fmt.Errorf("signals: de-duplication check of %s: %w", set.JTI, err)
	}
	if seen {
		res.Duplicate = true
		r.log.Info("SET already applied", zap.String("iss", set.Issuer), zap.String("jti", set.JTI))
		return res, nil
	}
	if err := r.checkControl(set); err != nil {
		return nil, err
	}
	res.Changes, res.Ignored = r.mapper.Map(set)
	if len(res.Changes) > 0 {
		if err := r.sink.Apply(ctx, res.Changes); err != nil {
			return nil, fmt.Errorf("signals: applying SET %s: %w", set.JTI, err)
		}
	}
	// An older SET is refused by the iat check, so the mark need not outlive the iat window.
	keepUntil := set.IssuedAt.Add(t.MaxIATAge + t.MaxIATFuture)
	if err := r.dedup.Mark(ctx, set.Issuer, set.JTI, keepUntil); err != nil && !errors.Is(err, autherr.ErrReplay) {
		return nil, fmt.Errorf("signals: marking SET %s applied: %w", set.JTI, err)
	}
	r.completeVerification(set)
	r.logApplied(set, res)
	return res, nil
}

func (r *Receiver) logApplied(set *SET, res *Result) {
	types := make([]string, len(set.Events))
	for i, ev := range set.Events {
		types[i] = ShortEventName(ev.Type)
	}
	r.log.Info("SET applied", zap.String("iss", set.Issuer), zap.String("jti", set.JTI), zap.String("txn", set.TXN),
		zap.Strings("events", types), zap.Int("changes", len(res.Changes)))
	for _, c := range res.Changes {
		if rv := c.Revocation; rv != nil {
			r.log.Info("revocation", zap.String("id", rv.GetId()), zap.String("subject", rv.GetSubject().Key()),
				zap.Bool("withheld", rv.GetNotBefore() == nil), zap.String("reason", rv.GetReason()))
			if !Matchable(rv.GetSubject().GetKind()) {
				r.log.Warn("revocation names a subject no sidecar can match; it is kept for the record and refuses nothing",
					zap.String("id", rv.GetId()), zap.String("subject", rv.GetSubject().Key()))
			}
		} else {
			r.log.Info("risk change", zap.String("subject", c.Risk.GetSubject().Key()),
				zap.String("risk_level", c.Risk.GetRiskLevel()), zap.String("assurance_level", c.Risk.GetAssuranceLevel()))
		}
	}
	for _, ig := range res.Ignored {
		r.log.Info("event ignored", zap.String("jti", set.JTI), zap.String("event", ig.EventType), zap.String("why", ig.Reason))
	}
	for _, ev := range set.Events {
		if ev.Type == EventStreamUpdated {
			r.log.Warn("transmitter changed the stream status", zap.String("iss", set.Issuer),
				zap.String("stream", streamID(set)), zap.String("status", ev.Status), zap.String("reason", ev.Reason))
		}
	}
}

// streamID is the stream a control event is about: its opaque sub_id.
func streamID(set *SET) string {
	if set.Subject != nil && set.Subject.Format == FormatOpaque {
		return set.Subject.ID
	}
	return ""
}

// checkControl checks SSF control events: they name their stream by an opaque sub_id, and a verification event
// for a stream we asked to verify must echo our state (SSF §8.1.4.1: otherwise invalid_state). A verification
// with no state is one the transmitter sent on its own, which SSF allows.
func (r *Receiver) checkControl(set *SET) error {
	for _, ev := range set.Events {
		if ev.Type != EventVerification && ev.Type != EventStreamUpdated {
			continue
		}
		id := streamID(set)
		if id == "" {
			return refuse(CodeInvalidRequest, autherr.ErrMalformed, "%s event needs an opaque sub_id naming the stream", ShortEventName(ev.Type))
		}
		if ev.Type != EventVerification || ev.State == "" {
			continue
		}
		r.verifyMu.Lock()
		p := r.pending[streamKey{set.Issuer, id}]
		r.verifyMu.Unlock()
		if p != nil && subtle.ConstantTimeCompare([]byte(p.state), []byte(ev.State)) != 1 {
			return refuse(CodeInvalidState, autherr.ErrMismatch, "verification state for stream %q does not match the one requested", truncate(id, 128))
		}
	}
	return nil
}

// completeVerification wakes the Verify call waiting for this verification event, if any.
func (r *Receiver) completeVerification(set *SET) {
	for _, ev := range set.Events {
		if ev.Type != EventVerification || ev.State == "" {
			continue
		}
		key := streamKey{set.Issuer, streamID(set)}
		r.verifyMu.Lock()
		if p := r.pending[key]; p != nil && p.state == ev.State {
			delete(r.pending, key)
			close(p.done)
		}
		r.verifyMu.Unlock()
	}
}

// expectVerification registers the state of a verification request for (iss, stream); the returned channel
// closes when the matching event was processed. cancel forgets the request.
func (r *Receiver) expectVerification(iss, stream, state string) (done <-chan struct{}, cancel func()) {
	key := streamKey{iss, stream}
	p := &pendingVerification{state: state, done: make(chan struct{})}
	r.verifyMu.Lock()
	r.pending[key] = p
	r.verifyMu.Unlock()
	return p.done, func() {
		r.verifyMu.Lock()
		if r.pending[key] == p {
			delete(r.pending, key)
		}
		r.verifyMu.Unlock()
	}
}
