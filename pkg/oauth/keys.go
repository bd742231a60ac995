package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"
	"github.com/agentauth/agentauth/pkg/autherr"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// KeySource gives the verification keys of one token issuer (the token service, or a user-token issuer). It is
// consulted on every verification, so a key removed from its source stops being honoured at once.
type KeySource interface {
	// Keys returns the public keys with this key id; with an empty kid, all keys. An unknown kid returns no keys
	// and no error; an error means the keys could not be obtained at all.
	Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
}

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
	set  atomic.Pointer[ijose.KeySet]
	mu   sync.Mutex // serialises Reload
	mod  time.Time
	size int64
}

// NewJWKSFile reads path, which must hold a JWKS ({"keys":[...]}) of public asymmetric keys (see
// internal/jose.ParseKeySet).
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
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("oauth: JWKS file: %w", err)
	}
	set, err := ijose.ReadKeySetFile(f.path)
	if err != nil {
		return fmt.Errorf("oauth: %w", err)
	}
	f.set.Store(set)
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
	return f.set.Load().Select(kid, ""), nil
}

// RemoteJWKSConfig configures a RemoteJWKS.
type RemoteJWKSConfig struct {
	// URL is the https URL of the JWKS (required).
	URL string
	// Client fetches it; nil means a client with a 10 s timeout.
	Client *http.Client
	// MaxAge is the longest a fetched set is used before it is fetched again (the response's Cache-Control
	// max-age, clamped to [MinRefresh, MaxAge]); 0 means 5 minutes.
	MaxAge time.Duration
	// MinRefresh is the shortest interval between fetches (after an unknown kid, or a failed fetch); 0 means
	// 30 seconds.
	MinRefresh time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger is told about skipped keys and failed refreshes; nil means no logging.
	Logger *zap.Logger
}

// RemoteJWKS is a token issuer's JWKS fetched over HTTPS and cached by internal/jose.RemoteKeySet: kept for the
// response's max-age within [MinRefresh, MaxAge], fetched again early (at most every MinRefresh) when a token
// names a kid it does not hold, which is how an issuer's key rotation reaches us. A failed fetch keeps the keys
// fetched before until they are MaxAge plus MinRefresh old; with none, Keys fails (and verification with it).
type RemoteJWKS struct{ keys *ijose.RemoteKeySet }

// NewRemoteJWKS checks cfg; the first fetch happens on first use.
func NewRemoteJWKS(cfg RemoteJWKSConfig) (*RemoteJWKS, error) {
	keys, err := ijose.NewRemoteKeySet(ijose.RemoteKeySetConfig{URL: cfg.URL, Client: cfg.Client,
		MinRefresh: cfg.MinRefresh, MaxAge: cfg.MaxAge, Now: cfg.Now, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	return &RemoteJWKS{keys: keys}, nil
}

// Keys implements KeySource.
func (r *RemoteJWKS) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	keys, err := r.keys.Keys(ctx, kid, "")
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	return keys, nil
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
