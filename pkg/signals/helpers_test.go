package signals

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
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
	"go.uber.org/zap/zaptest"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/store"
)

const (
	testIssuer   = "https://idp.example.com"
	testAudience = "https://controller.example.com"
)

// testNow is the fixed instant tests run at.
var testNow = time.Unix(1_760_000_000, 0).UTC()

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(testNow.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newKey makes a private signing JWK with the given kid and algorithm.
func newKey(t testing.TB, kid string, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	t.Helper()
	var priv any
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.RS256, jose.PS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("newKey: unsupported %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(alg), Use: "sig"}
}

// jwksOf is the public JWK Set of keys.
func jwksOf(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Public())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordingSink records every Apply; err, when set, makes Apply fail.
type recordingSink struct {
	mu    sync.Mutex
	calls [][]Change
	err   error
}

func (s *recordingSink) Apply(_ context.Context, changes []Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.calls = append(s.calls, changes)
	return nil
}

func (s *recordingSink) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *recordingSink) Calls() [][]Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]Change(nil), s.calls...)
}

// openStore opens (or reopens) a bbolt store at path and closes it when the test ends.
func openStore(t testing.TB, path string) *store.Store {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// fixture is a receiver for one transmitter whose keys are in a JWKS file, with a recording sink and a
// store-backed de-duplication.
type fixture struct {
	key   jose.JSONWebKey
	clock *clock
	sink  *recordingSink
	st    *store.Store
	recv  *Receiver
}

type fixtureOpt func(*ReceiverConfig)

func newFixture(t testing.TB, opts ...fixtureOpt) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{key: newKey(t, "k1", jose.ES256), clock: newClock(), sink: &recordingSink{}}
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwksOf(t, f.key), 0o600); err != nil {
		t.Fatal(err)
	}
	f.st = openStore(t, filepath.Join(dir, "state.db"))
	cfg := ReceiverConfig{
		Transmitters: []TransmitterConfig{{Issuer: testIssuer, Audience: []string{testAudience}, JWKSFile: jwksPath}},
		Sink:         f.sink,
		Dedup:        NewStoreDedup(f.st, f.clock.Now),
		Logger:       zaptest.NewLogger(t),
		Now:          f.clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	var err error
	if f.recv, err = NewReceiver(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// claims is a valid SET for the fixture's transmitter: a CAEP session-revoked for an agent.
func (f *fixture) claims() SETClaims {
	return SETClaims{
		Issuer:   testIssuer,
		Audience: []string{testAudience},
		IssuedAt: f.clock.Now(),
		Subject:  SubjectID{Format: FormatURI, URI: "spiffe://example.org/agent/a"},
		Events:   map[string]map[string]any{EventSessionRevoked: {"event_timestamp": f.clock.Now().Add(-time.Minute).Unix()}},
	}
}

func (f *fixture) sign(t testing.TB, c SETClaims) string {
	t.Helper()
	tok, err := Sign(f.key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pushTo posts body to h as a push delivery and returns the status and decoded error body.
func pushTo(t testing.TB, h http.Handler, body string, hdr map[string]string) (int, setErrorBody) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/ssf/push", strings.NewReader(body))
	req.Header.Set("Content-Type", MediaTypeSET)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var eb setErrorBody
	if rec.Code == http.StatusBadRequest {
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
			t.Fatalf("400 body %q is not RFC 8935 JSON: %v", rec.Body.String(), err)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("400 Content-Type %q", ct)
		}
	}
	if rec.Code == http.StatusAccepted && rec.Body.Len() != 0 {
		t.Fatalf("202 with a body: %q", rec.Body.String())
	}
	return rec.Code, eb
}

func errorsIsMalformed(err error) bool { return errors.Is(err, autherr.ErrMalformed) }

// openStoreNoCleanup opens a store the test closes itself (to reopen it, as after a restart).
func openStoreNoCleanup(path string) (*store.Store, error) { return store.Open(path, store.Options{}) }
