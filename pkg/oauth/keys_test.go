package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
)

func jwksJSON(t *testing.T, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := jsonMarshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJWKSFile(t *testing.T) {
	k1, k2 := mustP256(t), mustP256(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksJSON(t, jose.JSONWebKey{Key: k1.Public(), KeyID: "a", Algorithm: "ES256"}), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := NewJWKSFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got, _ := f.Keys(ctx, "a"); len(got) != 1 {
		t.Fatalf("keys %v", got)
	}
	// A broken file keeps the old keys.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err == nil {
		t.Fatal("a broken JWKS reloaded")
	}
	if got, _ := f.Keys(ctx, "a"); len(got) != 1 {
		t.Fatal("old keys lost on a failed reload")
	}
	// Watch picks up a rotation.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go f.Watch(wctx, 5*time.Millisecond, nil)
	if err := os.WriteFile(path, jwksJSON(t, jose.JSONWebKey{Key: k2.Public(), KeyID: "b", Algorithm: "ES256"}), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { got, _ := f.Keys(ctx, "b"); return len(got) == 1 })
	if got, _ := f.Keys(ctx, "a"); len(got) != 0 {
		t.Error("rotated-out key still served")
	}
	// A JWKS with private key material is refused.
	if err := os.WriteFile(path, jwksJSON(t, jose.JSONWebKey{Key: k1, KeyID: "p", Algorithm: "ES256"}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); !errors.Is(err, autherr.ErrMalformed) {
		t.Fatalf("private JWKS: %v", err)
	}
	if _, err := NewJWKSFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestRemoteJWKS(t *testing.T) {
	k1, k2 := mustP256(t), mustP256(t)
	var (
		mu      sync.Mutex
		body    = jwksJSON(t, jose.JSONWebKey{Key: k1.Public(), KeyID: "a", Algorithm: "ES256"})
		fail    bool
		fetches atomic.Int32
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	c := newClock()
	r, err := NewRemoteJWKS(RemoteJWKSConfig{URL: srv.URL, Client: srv.Client(), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got, err := r.Keys(ctx, "a"); err != nil || len(got) != 1 {
		t.Fatalf("keys %v, %v", got, err)
	}
	// The issuer rotates: an unknown kid triggers a fetch, but at most once per MinRefresh.
	mu.Lock()
	body = jwksJSON(t, jose.JSONWebKey{Key: k2.Public(), KeyID: "b", Algorithm: "ES256"})
	mu.Unlock()
	if got, _ := r.Keys(ctx, "b"); len(got) != 0 {
		t.Fatal("refetched before MinRefresh")
	}
	c.Add(31 * time.Second)
	if got, _ := r.Keys(ctx, "b"); len(got) != 1 {
		t.Fatal("unknown kid did not trigger a refetch")
	}
	n := fetches.Load()
	if got, _ := r.Keys(ctx, "b"); len(got) != 1 || fetches.Load() != n {
		t.Fatal("a known kid caused a fetch")
	}
	// A failing endpoint keeps the keys fetched before.
	mu.Lock()
	fail = true
	mu.Unlock()
	c.Add(5 * time.Minute)
	if got, err := r.Keys(ctx, "b"); err != nil || len(got) != 1 {
		t.Fatalf("keys lost on a failed refresh: %v %v", got, err)
	}
	// ... but only until they are MaxAge plus MinRefresh old.
	c.Add(30 * time.Second)
	_, err = r.Keys(ctx, "b")
	autherrtest.Check(t, err, autherr.ErrUntrustedIssuer)
	// Without any keys, a failure is an error, and the endpoint is not asked again before MinRefresh.
	fresh, _ := NewRemoteJWKS(RemoteJWKSConfig{URL: srv.URL, Client: srv.Client(), Now: c.Now})
	_, err = fresh.Keys(ctx, "b")
	autherrtest.Check(t, err, autherr.ErrUntrustedIssuer)
	n = fetches.Load()
	_, err = fresh.Keys(ctx, "b")
	autherrtest.Check(t, err, autherr.ErrUntrustedIssuer)
	if fetches.Load() != n {
		t.Error("a failing JWKS endpoint was asked again at once")
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	c.Add(31 * time.Second)
	if got, err := fresh.Keys(ctx, "b"); err != nil || len(got) != 1 {
		t.Fatalf("no recovery after MinRefresh: %v %v", got, err)
	}
	if _, err := NewRemoteJWKS(RemoteJWKSConfig{URL: "http://127.0.0.1/jwks"}); err == nil {
		t.Error("a plain-http JWKS URL was accepted")
	}
}

func TestStaticKeysRefuseSymmetric(t *testing.T) {
	if _, err := NewStaticKeys(jose.JSONWebKey{Key: []byte("0123456789abcdef"), KeyID: "s"}); err == nil {
		t.Fatal("a symmetric key was accepted")
	}
}
