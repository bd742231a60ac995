package jose

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Defaults of RemoteKeySetConfig.
const (
	DefaultMinRefresh = 30 * time.Second
	DefaultMaxAge     = 5 * time.Minute
	defaultTimeout    = 10 * time.Second
	// fetchTimeout bounds a fetch whatever the caller's client allows.
	fetchTimeout = 30 * time.Second
)

// RemoteKeySetConfig configures NewRemoteKeySet and NewFileKeySet.
type RemoteKeySetConfig struct {
	// URL is the JWKS URL: https, unless AllowHTTP (NewRemoteKeySet only).
	URL string
	// AllowHTTP accepts an http URL; for callers that checked it themselves (a loopback address in tests and demos).
	AllowHTTP bool
	// Client fetches the URL with the caller's TLS settings and timeouts; nil means a client with a 10 s timeout.
	Client *http.Client
	// MinRefresh is the least time between two fetches (default 30 s), and the shortest a set is kept.
	MinRefresh time.Duration
	// MaxAge is the longest a fetched set is kept before it is fetched again (default 5 m).
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger is told about skipped keys and failed refreshes; nil means no logging.
	Logger *zap.Logger
}

// RemoteKeySet is a JWK Set loaded from a URL (or a file), cached under one policy:
//
//   - Keys are kept for the Cache-Control max-age of the response, clamped to [MinRefresh, MaxAge]; a response
//     without max-age (or with no-cache or no-store) is kept for MaxAge or MinRefresh respectively. A file's keys
//     do not expire.
//   - A lookup that finds no key for its kid (or, without a kid, no key fitting its alg) fetches the set again, at
//     most once per MinRefresh: that is how an issuer's key rotation reaches us, and a flood of tokens with made-up
//     kids cannot become a flood of requests to the issuer.
//   - A failed first fetch returns its error, and the next attempt waits MinRefresh (no hammering of a down
//     endpoint). A failed refresh keeps serving the keys held until they are MaxAge past their fetch plus one
//     MinRefresh of grace (a file's: for ever), retrying at most once per MinRefresh; after that lookups fail.
//   - Lookups take no lock: the keys are an immutable snapshot behind an atomic pointer. A fetch holds a mutex
//     only the fetchers take, so concurrent lookups that need a fetch cause one. It is not cancelled with the
//     lookup that started it (the client's timeout, at most 30 s, bounds it).
//   - Sets are parsed by ParseKeySet: unusable keys are skipped (and logged), a set with a private key is refused.
type RemoteKeySet struct {
	source string
	load   func(ctx context.Context) (*KeySet, time.Duration, error) // TTL 0: never expires
	cfg    RemoteKeySetConfig
	state  atomic.Pointer[keyState]
	mu     sync.Mutex // held by the one goroutine fetching
}

// keyState is one immutable snapshot; every fetch attempt stores a new one.
type keyState struct {
	set     *KeySet   // nil until a fetch succeeds
	fetched time.Time // of set
	expires time.Time // set is fetched again from then; zero: never
	grace   time.Time // set is no longer served from then, while fetches fail; zero: never
	attempt time.Time // of the last fetch; zero: none yet
	err     error     // of the last fetch
}

// NewRemoteKeySet checks cfg; the first fetch happens on first use.
func NewRemoteKeySet(cfg RemoteKeySetConfig) (*RemoteKeySet, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && (u.Scheme != "http" || !cfg.AllowHTTP)) {
		return nil, fmt.Errorf("JWKS URL %q must be an absolute https URL", cfg.URL)
	}
	cfg = cfg.withDefaults()
	r := &RemoteKeySet{source: cfg.URL, cfg: cfg}
	r.load = r.fetch
	r.state.Store(&keyState{})
	return r, nil
}

// NewFileKeySet reads the JWK Set in the file at path now, so a bad file fails configuration rather than the first
// token. The file is read again when a lookup misses (at most once per MinRefresh); its keys do not expire.
func NewFileKeySet(path string, cfg RemoteKeySetConfig) (*RemoteKeySet, error) {
	cfg = cfg.withDefaults()
	return newLoadedKeySet(path, cfg, func(context.Context) (*KeySet, time.Duration, error) {
		set, err := ReadKeySetFile(path)
		return set, 0, err
	})
}

// NewStaticKeySet parses the JWK Set data now (a bad set fails here); its keys do not expire and do not change.
// source names where data came from, in errors and logs (e.g. the Secret holding it). A new document needs a new
// key set.
func NewStaticKeySet(source string, data []byte, cfg RemoteKeySetConfig) (*RemoteKeySet, error) {
	set, err := ParseKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", source, err)
	}
	return newLoadedKeySet(source, cfg.withDefaults(), func(context.Context) (*KeySet, time.Duration, error) {
		return set, 0, nil
	})
}

// newLoadedKeySet is a key set from load, which never expires, loaded once now.
func newLoadedKeySet(source string, cfg RemoteKeySetConfig, load func(context.Context) (*KeySet, time.Duration, error)) (*RemoteKeySet, error) {
	r := &RemoteKeySet{source: source, cfg: cfg, load: load}
	r.state.Store(&keyState{})
	if st := r.refresh(context.Background(), r.state.Load()); st.err != nil {
		return nil, st.err
	}
	return r, nil
}

func (c RemoteKeySetConfig) withDefaults() RemoteKeySetConfig {
	if c.Client == nil {
		c.Client = &http.Client{Timeout: defaultTimeout}
	}
	if c.MinRefresh <= 0 {
		c.MinRefresh = DefaultMinRefresh
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	c.MaxAge = max(c.MaxAge, c.MinRefresh)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Keys returns the keys that may have signed a JWS with kid and alg (see KeySet.Select; "" matches all). No keys
// and no error means no such key; an error means no keys could be obtained at all (our problem, not the token's).
func (r *RemoteKeySet) Keys(ctx context.Context, kid string, alg jose.SignatureAlgorithm) ([]jose.JSONWebKey, error) {
	now := r.cfg.Now()
	st := r.state.Load()
	match := st.set.Select(kid, alg)
	if r.wantFetch(st, now, len(match) == 0) {
		st = r.refresh(ctx, st)
		match = st.set.Select(kid, alg)
	}
	if st.set == nil {
		return nil, st.err
	}
	if !st.grace.IsZero() && !now.Before(st.grace) {
		return nil, fmt.Errorf("JWKS %s: keys fetched at %s are too old to use: %w", r.source,
			st.fetched.UTC().Format(time.RFC3339), st.err)
	}
	return match, nil
}

// wantFetch reports whether a lookup should fetch: nothing held, the set expired, or no key for its kid/alg
// (miss); and not within MinRefresh of the last attempt.
func (r *RemoteKeySet) wantFetch(st *keyState, now time.Time, miss bool) bool {
	if !st.attempt.IsZero() && now.Sub(st.attempt) < r.cfg.MinRefresh {
		return false
	}
	return st.set == nil || (!st.expires.IsZero() && !now.Before(st.expires)) || miss
}

// refresh fetches the set unless another goroutine did so since seen, and returns the newest state.
func (r *RemoteKeySet) refresh(ctx context.Context, seen *keyState) *keyState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.state.Load(); cur != seen {
		return cur // fetched meanwhile
	}
	// The fetch serves every lookup waiting on it, so one caller going away must not fail it for all (and stop
	// the next attempt for MinRefresh): it runs on its own deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	now := r.cfg.Now()
	set, ttl, err := r.load(ctx)
	next := *seen
	next.attempt, next.err = now, err
	if err != nil {
		if seen.set != nil {
			r.cfg.Logger.Warn("JWKS refresh failed; keeping the keys held", zap.String("jwks", r.source),
				zap.Time("fetched", seen.fetched), zap.Error(err))
		}
	} else {
		if len(set.Skipped) > 0 {
			r.cfg.Logger.Warn("JWKS keys skipped", zap.String("jwks", r.source), zap.Strings("skipped", set.Skipped))
		}
		next.set, next.fetched = set, now
		next.expires, next.grace = time.Time{}, time.Time{}
		if ttl > 0 {
			next.expires = now.Add(ttl)
			next.grace = now.Add(r.cfg.MaxAge + r.cfg.MinRefresh)
		}
	}
	r.state.Store(&next)
	return &next
}

func (r *RemoteKeySet) fetch(ctx context.Context) (*KeySet, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("JWKS %s: %w", r.cfg.URL, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: fetching JWKS %s: %v", autherr.ErrUntrustedIssuer, r.cfg.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%w: fetching JWKS %s: HTTP %d", autherr.ErrUntrustedIssuer, r.cfg.URL, resp.StatusCode)
	}
	set, err := ReadKeySet(resp.Body)
	if err != nil {
		if errors.Is(err, autherr.ErrTooLarge) || errors.Is(err, autherr.ErrMalformed) {
			return nil, 0, fmt.Errorf("JWKS %s: %w", r.cfg.URL, err)
		}
		return nil, 0, fmt.Errorf("%w: reading JWKS %s: %v", autherr.ErrUntrustedIssuer, r.cfg.URL, err)
	}
	return set, r.ttl(resp.Header.Get("Cache-Control")), nil
}

// ttl reads Cache-Control max-age, clamped to [MinRefresh, MaxAge]; absent, MaxAge; no-store and no-cache mean
// MinRefresh.
func (r *RemoteKeySet) ttl(header string) time.Duration {
	ttl := r.cfg.MaxAge
	for _, d := range strings.Split(header, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return r.cfg.MinRefresh
		case strings.HasPrefix(d, "max-age="):
			if n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64); err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(r.cfg.MaxAge/time.Second))) * time.Second
			}
		}
	}
	return min(max(ttl, r.cfg.MinRefresh), r.cfg.MaxAge)
}
