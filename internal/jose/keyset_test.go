package jose

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/autherr"
)

func p256Key(t testing.TB, kid string) (*ecdsa.PrivateKey, jose.JSONWebKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"}
}

func setJSON(t testing.TB, keys ...any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseKeySet(t *testing.T) {
	priv, ec := p256Key(t, "ec")
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privEC := jose.JSONWebKey{Key: priv, KeyID: "p", Algorithm: "ES256"}
	privEd := jose.JSONWebKey{Key: ed, KeyID: "pe"}
	encEC := ec
	encEC.Use, encEC.KeyID = "enc", "enc"
	many := func(n int) []any {
		keys := make([]any, n)
		for i := range keys {
			keys[i] = ec
		}
		return keys
	}
	tests := []struct {
		name    string
		doc     []byte
		kids    string
		skipped int
		err     error
	}{
		{"public key", setJSON(t, ec), "ec", 0, nil},
		{"unusable keys skipped and counted", setJSON(t,
			map[string]string{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "hs"},
			map[string]string{"kty": "XYZ", "kid": "new"},
			map[string]string{"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad", "kid": "broken"},
			encEC, ec), "ec", 4, nil},
		{"unsupported alg skipped", []byte(strings.Replace(string(setJSON(t, ec, ec)), `"ES256"`, `"ES256K"`, 1)), "ec", 1, nil},
		{"private EC key refuses the set", setJSON(t, ec, privEC), "", 0, ErrPrivateKey},
		{"private Ed25519 key refuses the set", setJSON(t, privEd), "", 0, ErrPrivateKey},
		{"private key of an unknown kty refuses the set", setJSON(t, ec, map[string]string{"kty": "XYZ", "d": "AAAA"}), "", 0, ErrPrivateKey},
		{"64 keys", setJSON(t, many(64)...), strings.Repeat("ec,", 63) + "ec", 0, nil},
		{"65 keys", setJSON(t, many(65)...), "", 0, autherr.ErrTooLarge},
		{"over the size limit", append(setJSON(t, ec), make([]byte, MaxKeySetBytes)...), "", 0, autherr.ErrTooLarge},
		{"only unusable keys", setJSON(t, encEC), "", 0, autherr.ErrMalformed},
		{"no keys", []byte(`{"keys":[]}`), "", 0, autherr.ErrMalformed},
		{"not JSON", []byte(`<html>`), "", 0, autherr.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := ParseKeySet(tc.doc)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || set != nil {
					t.Fatalf("ParseKeySet = %v, %v; want %v", set, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, k := range set.Keys {
				kids = append(kids, k.KeyID)
			}
			if strings.Join(kids, ",") != tc.kids || len(set.Skipped) != tc.skipped {
				t.Fatalf("kids %v, skipped %q; want %s and %d skipped", kids, set.Skipped, tc.kids, tc.skipped)
			}
		})
	}
}

// jwksServer is a TLS JWKS endpoint that counts fetches and serves what the test sets.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	body    []byte
	status  int
	cc      string
	gate    chan struct{} // when set, each fetch waits for it to close
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		body, status, cc, gate := s.body, s.status, s.cc, s.gate
		s.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if status != http.StatusOK {
			http.Error(w, "down", status)
			return
		}
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte, status int, cc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if body != nil {
		s.body = body
	}
	s.status, s.cc = status, cc
}

type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *testClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *testClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func (s *jwksServer) n() int             { return int(s.fetches.Load()) }
func (s *jwksServer) cfg(c *testClock) RemoteKeySetConfig {
	return RemoteKeySetConfig{URL: s.URL + "/jwks", Client: s.Client(), Now: c.now}
}

func newRemote(t *testing.T, cfg RemoteKeySetConfig) *RemoteKeySet {
	t.Helper()
	r, err := NewRemoteKeySet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// lookup asks r for kid and checks how many keys came back and how many fetches the server has seen.
func lookup(t *testing.T, r *RemoteKeySet, s *jwksServer, kid string, wantKeys, wantFetches int) {
	t.Helper()
	keys, err := r.Keys(context.Background(), kid, jose.ES256)
	if err != nil || len(keys) != wantKeys || s.n() != wantFetches {
		t.Fatalf("Keys(%q) = %d keys, %v after %d fetches; want %d keys after %d fetches", kid, len(keys), err, s.n(), wantKeys, wantFetches)
	}
}

func TestRemoteKeySetMaxAge(t *testing.T) {
	_, a := p256Key(t, "a")
	for _, tc := range []struct {
		header string
		keep   time.Duration
	}{
		{"", DefaultMaxAge},
		{"public, max-age=120", 2 * time.Minute},
		{"max-age=5", DefaultMinRefresh},
		{"max-age=99999999999999999", DefaultMaxAge},
		{"max-age=nope", DefaultMaxAge},
		{"no-store", DefaultMinRefresh},
		{"max-age=200, no-cache", DefaultMinRefresh},
	} {
		t.Run(tc.header, func(t *testing.T) {
			s := newJWKSServer(t, setJSON(t, a))
			s.set(nil, http.StatusOK, tc.header)
			c := newTestClock()
			r := newRemote(t, s.cfg(c))
			lookup(t, r, s, "a", 1, 1)
			c.add(tc.keep - time.Second)
			lookup(t, r, s, "a", 1, 1)
			c.add(time.Second)
			lookup(t, r, s, "a", 1, 2)
		})
	}
}

func TestRemoteKeySetKidMissRefetch(t *testing.T) {
	_, a := p256Key(t, "a")
	_, b := p256Key(t, "b")
	s := newJWKSServer(t, setJSON(t, a))
	c := newTestClock()
	r := newRemote(t, s.cfg(c))
	lookup(t, r, s, "a", 1, 1)
	s.set(setJSON(t, b), http.StatusOK, "")
	// Right after a fetch, an unknown kid does not cause another, however often it is asked for.
	for range 5 {
		lookup(t, r, s, "b", 0, 1)
	}
	c.add(DefaultMinRefresh)
	lookup(t, r, s, "b", 1, 2)
	lookup(t, r, s, "a", 0, 2) // retired, and the last fetch was just now
	c.add(DefaultMinRefresh - time.Second)
	lookup(t, r, s, "zz", 0, 2)
	c.add(time.Second)
	lookup(t, r, s, "zz", 0, 3)
	lookup(t, r, s, "zz", 0, 3)

	// A token without kid whose alg no key fits is a miss too.
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.set(setJSON(t, b, jose.JSONWebKey{Key: edPub, KeyID: "ed"}), http.StatusOK, "")
	c.add(DefaultMinRefresh)
	if keys, err := r.Keys(context.Background(), "", jose.EdDSA); err != nil || len(keys) != 1 || s.n() != 4 {
		t.Fatalf("no-kid EdDSA lookup: %d keys, %v, %d fetches", len(keys), err, s.n())
	}
}

func TestRemoteKeySetFirstFetchFailure(t *testing.T) {
	_, a := p256Key(t, "a")
	s := newJWKSServer(t, setJSON(t, a))
	s.set(nil, http.StatusServiceUnavailable, "")
	c := newTestClock()
	r := newRemote(t, s.cfg(c))
	for range 3 {
		if _, err := r.Keys(context.Background(), "a", jose.ES256); !errors.Is(err, autherr.ErrUntrustedIssuer) || s.n() != 1 {
			t.Fatalf("Keys = %v after %d fetches; want ErrUntrustedIssuer after 1", err, s.n())
		}
	}
	c.add(DefaultMinRefresh - time.Second)
	if _, err := r.Keys(context.Background(), "a", jose.ES256); err == nil || s.n() != 1 {
		t.Fatalf("Keys = %v after %d fetches", err, s.n())
	}
	c.add(time.Second)
	s.set(nil, http.StatusOK, "")
	lookup(t, r, s, "a", 1, 2)
}

func TestRemoteKeySetStaleWhileFailing(t *testing.T) {
	_, a := p256Key(t, "a")
	s := newJWKSServer(t, setJSON(t, a))
	c := newTestClock()
	r := newRemote(t, s.cfg(c))
	lookup(t, r, s, "a", 1, 1)
	s.set(nil, http.StatusInternalServerError, "")
	c.add(DefaultMaxAge)
	lookup(t, r, s, "a", 1, 2) // refresh failed: the keys held are served
	c.add(DefaultMinRefresh / 2)
	lookup(t, r, s, "a", 1, 2) // no retry within MinRefresh
	c.add(DefaultMinRefresh / 2)
	// MaxAge plus one MinRefresh past the fetch: the keys are too old, and the retry fails.
	if _, err := r.Keys(context.Background(), "a", jose.ES256); !errors.Is(err, autherr.ErrUntrustedIssuer) || s.n() != 3 {
		t.Fatalf("Keys = %v after %d fetches; want ErrUntrustedIssuer after 3", err, s.n())
	}
	if _, err := r.Keys(context.Background(), "a", jose.ES256); err == nil || s.n() != 3 {
		t.Fatalf("Keys = %v after %d fetches", err, s.n())
	}
	s.set(nil, http.StatusOK, "")
	c.add(DefaultMinRefresh)
	lookup(t, r, s, "a", 1, 4)
}

func TestRemoteKeySetRefusesPrivateKeys(t *testing.T) {
	priv, a := p256Key(t, "a")
	s := newJWKSServer(t, setJSON(t, a))
	c := newTestClock()
	r := newRemote(t, s.cfg(c))
	lookup(t, r, s, "a", 1, 1)
	// The issuer publishes its private key: the new set is refused, the old keys stay until they are too old.
	s.set(setJSON(t, jose.JSONWebKey{Key: priv, KeyID: "b", Algorithm: "ES256"}), http.StatusOK, "")
	c.add(DefaultMinRefresh)
	lookup(t, r, s, "b", 0, 2)
	fresh := newRemote(t, s.cfg(c))
	if _, err := fresh.Keys(context.Background(), "b", jose.ES256); !errors.Is(err, ErrPrivateKey) {
		t.Fatalf("Keys = %v, want ErrPrivateKey", err)
	}
}

func TestRemoteKeySetConcurrentLookupsFetchOnce(t *testing.T) {
	_, a := p256Key(t, "a")
	s := newJWKSServer(t, setJSON(t, a))
	gate := make(chan struct{})
	s.mu.Lock()
	s.gate = gate
	s.mu.Unlock()
	r := newRemote(t, s.cfg(newTestClock()))
	const n = 32
	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			keys, err := r.Keys(context.Background(), "a", jose.ES256)
			if err == nil && len(keys) != 1 {
				err = errors.New("no key")
			}
			errs <- err
		}()
	}
	started.Wait()
	close(gate)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.n() != 1 {
		t.Fatalf("%d fetches for %d concurrent lookups", s.n(), n)
	}
}

// A fetch serves every lookup waiting on it: the caller that started it going away does not fail it.
func TestRemoteKeySetFetchOutlivesCaller(t *testing.T) {
	_, a := p256Key(t, "a")
	s := newJWKSServer(t, setJSON(t, a))
	r := newRemote(t, s.cfg(newTestClock()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if keys, err := r.Keys(ctx, "a", jose.ES256); err != nil || len(keys) != 1 {
		t.Fatalf("Keys with a cancelled context: %d keys, %v", len(keys), err)
	}
}

func TestNewRemoteKeySetURL(t *testing.T) {
	for _, tc := range []struct {
		url       string
		allowHTTP bool
		ok        bool
	}{
		{"https://127.0.0.1/jwks", false, true},
		{"http://127.0.0.1/jwks", false, false},
		{"http://127.0.0.1/jwks", true, true},
		{"ftp://127.0.0.1/jwks", true, false},
		{"/jwks", false, false},
	} {
		_, err := NewRemoteKeySet(RemoteKeySetConfig{URL: tc.url, AllowHTTP: tc.allowHTTP})
		if (err == nil) != tc.ok {
			t.Errorf("NewRemoteKeySet(%q, allowHTTP %v): %v", tc.url, tc.allowHTTP, err)
		}
	}
}

func TestFileKeySet(t *testing.T) {
	_, a := p256Key(t, "a")
	_, b := p256Key(t, "b")
	path := filepath.Join(t.TempDir(), "jwks.json")
	write := func(data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(setJSON(t, a))
	c := newTestClock()
	r, err := NewFileKeySet(path, RemoteKeySetConfig{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	has := func(kid string) bool {
		keys, err := r.Keys(context.Background(), kid, jose.ES256)
		if err != nil {
			t.Fatal(err)
		}
		return len(keys) == 1
	}
	write(setJSON(t, b))
	if !has("a") || has("b") {
		t.Fatal("file re-read within MinRefresh of loading it")
	}
	c.add(DefaultMinRefresh)
	if !has("b") || has("a") {
		t.Fatal("unknown kid did not re-read the file")
	}
	// A broken file keeps the keys read before, for ever.
	write([]byte("{"))
	c.add(24 * time.Hour)
	if has("c") || !has("b") {
		t.Fatal("keys lost to a broken file")
	}
	if _, err := NewFileKeySet(filepath.Join(t.TempDir(), "missing"), RemoteKeySetConfig{}); err == nil {
		t.Fatal("a missing file loaded")
	}
}

func TestStaticKeySet(t *testing.T) {
	_, a := p256Key(t, "a")
	r, err := NewStaticKeySet("secret ns/x", setJSON(t, a), RemoteKeySetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := r.Keys(context.Background(), "a", jose.ES256); err != nil || len(keys) != 1 {
		t.Fatalf("keys %v, err %v", keys, err)
	}
	if keys, err := r.Keys(context.Background(), "b", jose.ES256); err != nil || len(keys) != 0 {
		t.Fatalf("unknown kid: keys %v, err %v", keys, err)
	}
	for _, bad := range []string{"", "{", `{"keys":[]}`} {
		if _, err := NewStaticKeySet("x", []byte(bad), RemoteKeySetConfig{}); err == nil {
			t.Fatalf("%q loaded", bad)
		}
	}
}
