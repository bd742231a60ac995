package signals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"
	"github.com/agentauth/agentauth/pkg/autherr"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// JWKSCacheConfig tunes how transmitter key sets are cached. Zero fields take the defaults shown.
type JWKSCacheConfig struct {
	// MinTTL and MaxTTL bound the lifetime a JWKS response asks for with Cache-Control max-age (1m, 24h).
	MinTTL, MaxTTL time.Duration
	// DefaultTTL applies when the response gives no max-age (1h).
	DefaultTTL time.Duration
	// RefetchInterval is the least time between two fetches caused by a SET signed with an unknown kid (30s), so
	// a flood of SETs with made-up kids cannot turn into a flood of requests to the transmitter. It also spaces
	// retries after a failed refresh, and re-reads of a JWKS file.
	RefetchInterval time.Duration
}

func (c JWKSCacheConfig) withDefaults() JWKSCacheConfig {
	if c.MinTTL <= 0 {
		c.MinTTL = time.Minute
	}
	if c.MaxTTL <= 0 {
		c.MaxTTL = 24 * time.Hour
	}
	if c.MaxTTL < c.MinTTL {
		c.MaxTTL = c.MinTTL
	}
	if c.DefaultTTL <= 0 {
		c.DefaultTTL = time.Hour
	}
	if c.RefetchInterval <= 0 {
		c.RefetchInterval = 30 * time.Second
	}
	return c
}

// Limits on a key set, so a transmitter (or whoever answers at its jwks_uri) cannot make us allocate without bound.
const (
	maxJWKSBytes = 1 << 20
	maxJWKSKeys  = 64
)

// keySet is one transmitter's signing keys, from a URL or a file. Fetched keys are kept until their TTL passes;
// a failed refresh keeps the last good keys (fail-static) and is retried after RefetchInterval. A kid not in
// the set causes one refetch at most every RefetchInterval (key rotation).
type keySet struct {
	source string
	load   func(ctx context.Context) ([]jose.JSONWebKey, time.Duration, error) // TTL 0: never expires
	cfg    JWKSCacheConfig
	now    func() time.Time
	log    *zap.Logger

	// mu also serialises loads, so concurrent SETs with an unknown kid cause one fetch, not one each.
	mu       sync.Mutex
	keys     []jose.JSONWebKey
	loaded   bool
	expires  time.Time // zero: never
	lastLoad time.Time
}

func newURLKeySet(url string, client *http.Client, cfg JWKSCacheConfig, now func() time.Time, log *zap.Logger) *keySet {
	return &keySet{source: url, cfg: cfg, now: now, log: log,
		load: func(ctx context.Context) ([]jose.JSONWebKey, time.Duration, error) {
			return fetchJWKS(ctx, client, url, cfg)
		}}
}

// newFileKeySet reads the file now, so a bad file fails configuration rather than the first SET.
func newFileKeySet(path string, cfg JWKSCacheConfig, now func() time.Time, log *zap.Logger) (*keySet, error) {
	k := &keySet{source: path, cfg: cfg, now: now, log: log,
		load: func(context.Context) ([]jose.JSONWebKey, time.Duration, error) {
			keys, err := readJWKSFile(path)
			return keys, 0, err
		}}
	if err := k.refresh(context.Background()); err != nil {
		return nil, err
	}
	return k, nil
}

// lookup returns the keys that may have signed a JWS with kid and alg (kid "" matches every key). An empty
// result means no such key; an error means no keys could be obtained at all (our problem, not the SET's).
func (k *keySet) lookup(ctx context.Context, kid string, alg jose.SignatureAlgorithm) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if !k.loaded || (!k.expires.IsZero() && !now.Before(k.expires)) {
		if err := k.refresh(ctx); err != nil {
			if !k.loaded {
				return nil, err
			}
			k.log.Warn("keeping the last good JWKS after a failed refresh", zap.String("jwks", k.source), zap.Error(err))
			k.expires = now.Add(k.cfg.RefetchInterval)
		}
	}
	if match := selectKeys(k.keys, kid, alg); len(match) > 0 || now.Sub(k.lastLoad) < k.cfg.RefetchInterval {
		return match, nil
	}
	if err := k.refresh(ctx); err != nil {
		k.log.Warn("JWKS refetch for an unknown kid failed", zap.String("jwks", k.source), zap.String("kid", kid), zap.Error(err))
	}
	return selectKeys(k.keys, kid, alg), nil
}

// refresh loads the keys; on failure the current keys stay. Callers hold mu (or own k exclusively).
func (k *keySet) refresh(ctx context.Context) error {
	now := k.now()
	k.lastLoad = now
	keys, ttl, err := k.load(ctx)
	if err != nil {
		return err
	}
	k.keys, k.loaded = keys, true
	k.expires = time.Time{}
	if ttl > 0 {
		k.expires = now.Add(ttl)
	}
	return nil
}

// selectKeys keeps the keys with the kid (when given) that can verify alg.
func selectKeys(keys []jose.JSONWebKey, kid string, alg jose.SignatureAlgorithm) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range keys {
		if (kid != "" && key.KeyID != kid) || (key.Algorithm != "" && key.Algorithm != string(alg)) {
			continue
		}
		if ijose.AlgFits(string(alg), key.Key) {
			out = append(out, key)
		}
	}
	return out
}

func fetchJWKS(ctx context.Context, client *http.Client, url string, cfg JWKSCacheConfig) ([]jose.JSONWebKey, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("signals: JWKS %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("signals: JWKS %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("signals: JWKS %s: HTTP %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("signals: JWKS %s: %w", url, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, 0, fmt.Errorf("signals: JWKS %s: %w: more than %d bytes", url, autherr.ErrTooLarge, maxJWKSBytes)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, 0, fmt.Errorf("signals: JWKS %s: %w", url, err)
	}
	return keys, cacheTTL(resp.Header.Get("Cache-Control"), cfg), nil
}

// CheckJWKSFile reads a transmitter's JWKS file as the receiver does, for a configuration check.
func CheckJWKSFile(path string) error {
	_, err := readJWKSFile(path)
	return err
}

func readJWKSFile(path string) ([]jose.JSONWebKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("signals: JWKS file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("signals: JWKS file %s: %w", path, err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("signals: JWKS file %s: %w: more than %d bytes", path, autherr.ErrTooLarge, maxJWKSBytes)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("signals: JWKS file %s: %w", path, err)
	}
	return keys, nil
}

// parseJWKS keeps the usable signature-verification keys of a JWK Set: asymmetric, not marked for encryption.
// A key that does not parse is skipped rather than failing the set, so one exotic key (another algorithm, a
// newer key type) does not lock out the rest. A private key is reduced to its public half.
func parseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%w: not a JWK Set: %v", autherr.ErrMalformed, err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("%w: %d keys (limit %d)", autherr.ErrTooLarge, len(set.Keys), maxJWKSKeys)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil || !key.Valid() || (key.Use != "" && key.Use != "sig") {
			continue
		}
		if !key.IsPublic() {
			key = key.Public()
		}
		if ijose.Asymmetric(key.Key) {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable signature verification key (RSA, EC or Ed25519, use sig)")
	}
	return keys, nil
}

// cacheTTL reads Cache-Control max-age, bounded by cfg; no-store and no-cache mean the shortest allowed TTL.
func cacheTTL(header string, cfg JWKSCacheConfig) time.Duration {
	ttl := cfg.DefaultTTL
	for _, d := range strings.Split(header, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return cfg.MinTTL
		case strings.HasPrefix(d, "max-age="):
			if n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64); err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(cfg.MaxTTL/time.Second))) * time.Second
			}
		}
	}
	return min(max(ttl, cfg.MinTTL), cfg.MaxTTL)
}
