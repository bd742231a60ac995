package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"
	"github.com/agentauth/agentauth/pkg/autherr"

	"github.com/go-jose/go-jose/v4"
)

// KeySource gives the verification keys of one token issuer (the token service, or a user-token issuer). It is
// consulted on every verification, so a key removed from its source stops being honoured at once.
type KeySource interface {
	// Keys returns the public keys with this key id; with an empty kid, all keys. An unknown kid returns no keys
	// and no error; an error means the keys could not be obtained at all.
	Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
}

// MaxJWKSSize bounds a JWKS document read from a file or URL.
const MaxJWKSSize = 1 << 20

// StaticKeys is a fixed key set.
type StaticKeys struct{ set jose.JSONWebKeySet }

// NewStaticKeys returns a KeySource of keys, which must be asymmetric; only their public halves are kept.
func NewStaticKeys(keys ...jose.JSONWebKey) (*StaticKeys, error) {
	set, err := publicSet(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		return nil, err
	}
	return &StaticKeys{set: set}, nil
}

// Keys implements KeySource.
func (s *StaticKeys) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	return lookup(&s.set, kid), nil
}

// JWKSFile is a JWKS document in a file, re-read by Reload. A failed reload keeps the keys loaded before.
type JWKSFile struct {
	path string
	set  atomic.Pointer[jose.JSONWebKeySet]
	mu   sync.Mutex // serialises Reload
	mod  time.Time
	size int64
}

// NewJWKSFile reads path, which must hold a JWKS ({"keys":[...]}) of asymmetric keys.
func NewJWKSFile(path string) (*JWKSFile, error) {
	f := &JWKSFile{path: path}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload re-reads the file. On error the previous keys stay in use.
func (f *JWKSFile) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloadLocked()
}

func (f *JWKSFile) reloadLocked() error {
	fh, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("oauth: JWKS file: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("oauth: JWKS file: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(fh, MaxJWKSSize+1))
	if err != nil {
		return fmt.Errorf("oauth: JWKS file %s: %w", f.path, err)
	}
	set, err := parseJWKS(b)
	if err != nil {
		return fmt.Errorf("oauth: JWKS file %s: %w", f.path, err)
	}
	f.set.Store(&set)
	f.mod, f.size = st.ModTime(), st.Size()
	return nil
}

// Watch re-reads the file whenever its modification time or size changes, polling every interval until ctx
// ends; failed reloads go to onError (may be nil) and keep the old keys.
func (f *JWKSFile) Watch(ctx context.Context, interval time.Duration, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := os.Stat(f.path)
		f.mu.Lock()
		if err == nil && (!st.ModTime().Equal(f.mod) || st.Size() != f.size) {
			err = f.reloadLocked()
		}
		f.mu.Unlock()
		if err != nil && onError != nil {
			onError(err)
		}
	}
}

// Keys implements KeySource.
func (f *JWKSFile) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	return lookup(f.set.Load(), kid), nil
}

// RemoteJWKSConfig configures a RemoteJWKS.
type RemoteJWKSConfig struct {
	// URL is the https URL of the JWKS (required).
	URL string
	// Client fetches it; nil means a client with a 10 s timeout.
	Client *http.Client
	// MaxAge is how long a fetched set is used before it is fetched again; 0 means 5 minutes.
	MaxAge time.Duration
	// MinRefresh is the shortest interval between fetches triggered by an unknown kid; 0 means 30 seconds.
	MinRefresh time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// RemoteJWKS is a JWKS fetched over HTTPS, cached for MaxAge and re-fetched early (at most every MinRefresh) when
// a token names a kid it does not hold, which is how an issuer's key rotation reaches us. A failed fetch keeps
// the keys fetched before; with none, Keys fails (and verification with it).
type RemoteJWKS struct {
	cfg     RemoteJWKSConfig
	mu      sync.Mutex // serialises fetches; guards lastErr
	lastErr error
	set     atomic.Pointer[jose.JSONWebKeySet]
	fetched atomic.Int64 // unix nanoseconds of the last fetch attempt
}

// NewRemoteJWKS checks cfg; the first fetch happens on first use.
func NewRemoteJWKS(cfg RemoteJWKSConfig) (*RemoteJWKS, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("oauth: JWKS URL %q must be an absolute https URL", cfg.URL)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 5 * time.Minute
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &RemoteJWKS{cfg: cfg}, nil
}

// Keys implements KeySource.
func (r *RemoteJWKS) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	now := r.cfg.Now()
	set := r.set.Load()
	lastNS := r.fetched.Load()
	last := time.Unix(0, lastNS)
	if set == nil && lastNS != 0 && now.Sub(last) < r.cfg.MinRefresh {
		// Never fetched successfully and tried just now: do not hammer a failing endpoint on every request.
		r.mu.Lock()
		err := r.lastErr
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	stale := set == nil || now.Sub(last) >= r.cfg.MaxAge
	unknown := set != nil && kid != "" && len(set.Key(kid)) == 0 && now.Sub(last) >= r.cfg.MinRefresh
	if stale || unknown {
		if err := r.refresh(ctx, last); err != nil && r.set.Load() == nil {
			return nil, err
		}
		set = r.set.Load()
	}
	return lookup(set, kid), nil
}

// refresh fetches the set unless another goroutine did so since last.
func (r *RemoteJWKS) refresh(ctx context.Context, last time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fetched.Load() != last.UnixNano() {
		return r.lastErr // fetched meanwhile
	}
	r.fetched.Store(r.cfg.Now().UnixNano())
	r.lastErr = r.fetch(ctx)
	return r.lastErr
}

func (r *RemoteJWKS) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL, nil)
	if err != nil {
		return fmt.Errorf("oauth: JWKS %s: %w", r.cfg.URL, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("oauth: %w: fetching JWKS %s: %v", autherr.ErrUntrustedIssuer, r.cfg.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oauth: %w: fetching JWKS %s: status %d", autherr.ErrUntrustedIssuer, r.cfg.URL, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return fmt.Errorf("oauth: %w: reading JWKS %s: %v", autherr.ErrUntrustedIssuer, r.cfg.URL, err)
	}
	set, err := parseJWKS(b)
	if err != nil {
		return fmt.Errorf("oauth: JWKS %s: %w", r.cfg.URL, err)
	}
	r.set.Store(&set)
	return nil
}

// parseJWKS parses a JWKS document and keeps only the public halves of its asymmetric keys.
func parseJWKS(b []byte) (jose.JSONWebKeySet, error) {
	if len(b) > MaxJWKSSize {
		return jose.JSONWebKeySet{}, fmt.Errorf("%w: JWKS is over %d bytes", autherr.ErrTooLarge, MaxJWKSSize)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("%w: JWKS: %v", autherr.ErrMalformed, err)
	}
	for i, k := range set.Keys {
		if !k.IsPublic() {
			// A published key set with private keys in it is a leak somewhere; trust nothing it says.
			return jose.JSONWebKeySet{}, fmt.Errorf("%w: JWKS key %d (kid %q) carries private key material", autherr.ErrMalformed, i, k.KeyID)
		}
	}
	return publicSet(set)
}

// publicSet checks that every key is an asymmetric signature key and keeps its public half.
func publicSet(in jose.JSONWebKeySet) (jose.JSONWebKeySet, error) {
	out := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(in.Keys))}
	for i, k := range in.Keys {
		switch k.Key.(type) {
		case *ecdsa.PublicKey, *ecdsa.PrivateKey, ed25519.PublicKey, ed25519.PrivateKey, *rsa.PublicKey, *rsa.PrivateKey:
		default:
			return jose.JSONWebKeySet{}, fmt.Errorf("%w: JWKS key %d (kid %q) is a %s, not an asymmetric signature key", autherr.ErrUnsupportedAlg, i, k.KeyID, ijose.KeyDescription(k.Key))
		}
		if k.Use != "" && k.Use != "sig" {
			continue // encryption keys are no business of a verifier
		}
		pub := k.Public()
		if !pub.Valid() {
			return jose.JSONWebKeySet{}, fmt.Errorf("%w: JWKS key %d (kid %q) is not a valid key", autherr.ErrMalformed, i, k.KeyID)
		}
		out.Keys = append(out.Keys, pub)
	}
	return out, nil
}

func lookup(set *jose.JSONWebKeySet, kid string) []jose.JSONWebKey {
	if set == nil {
		return nil
	}
	if kid == "" {
		return set.Keys
	}
	return set.Key(kid)
}

var (
	_ KeySource = (*StaticKeys)(nil)
	_ KeySource = (*JWKSFile)(nil)
	_ KeySource = (*RemoteJWKS)(nil)
	_ KeySource = jwtBundleKeys{}
)
