package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

var (
	testTD    = spiffeid.RequireTrustDomainFromString("example.org")
	agentID   = spiffeid.RequireFromString("spiffe://example.org/agent/planner")
	toolID    = spiffeid.RequireFromString("spiffe://example.org/tool/orders")
	userIss   = "https://idp.example.org"
	userAud   = "agentauth-tts"
	serviceKI = "tts-1"
	// legacyGrant is the test service's one access token grant.
	legacyGrant = AccessTokenGrant{Workloads: []string{agentID.String()}, Audience: "https://legacy.example.org", Scopes: []string{"orders.read"}}
)

// clock is a settable clock shared by every party of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// witSource serves one WIT-SVID as a WITSource.
type witSource struct{ w *testca.WITSVID }

func (s witSource) GetWIT() (*identity.WIT, error) {
	return &identity.WIT{Token: s.w.Token, Key: s.w.Key, Alg: s.w.Alg, Subject: s.w.ID.String(), Expiry: s.w.Expiry}, nil
}

// idp is a user-token issuer.
type idp struct {
	key  *ecdsa.PrivateKey
	kid  string
	iss  string
	keys *StaticKeys
}

func newIDP(t testing.TB, iss string) *idp {
	t.Helper()
	k := mustP256(t)
	keys, err := NewStaticKeys(jose.JSONWebKey{Key: k.Public(), KeyID: "idp-1", Algorithm: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	return &idp{key: k, kid: "idp-1", iss: iss, keys: keys}
}

// token signs claims as a user token; zero fields of std get defaults (iss, aud, sub alice, one hour).
func (p *idp) token(t testing.TB, now time.Time, mod func(m map[string]any)) string {
	t.Helper()
	m := map[string]any{
		"iss":   p.iss,
		"sub":   "alice",
		"aud":   userAud,
		"iat":   now.Add(-time.Minute).Unix(),
		"exp":   now.Add(time.Hour).Unix(),
		"scope": "orders.read orders.create",
	}
	if mod != nil {
		mod(m)
	}
	return signJWT(t, p.key, "ES256", p.kid, "JWT", m)
}

func mustP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signJWT signs claims with key under alg with kid and typ (either may be empty).
func signJWT(t testing.TB, key any, alg jose.SignatureAlgorithm, kid, typ string, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if kid != "" {
		key = jose.JSONWebKey{Key: key, KeyID: kid}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// env is a trust domain with a CA, a token service behind a real TLS server on 127.0.0.1, an IdP and an agent.
type env struct {
	t         testing.TB
	clock     *clock
	ca        *testca.CA
	idp       *idp
	svcKey    *ecdsa.PrivateKey
	svc       *TokenService
	srv       *httptest.Server
	endpoint  string
	agentWIT  *testca.WITSVID
	agentSVID *x509svid.SVID
	logs      *observer.ObservedLogs
	log       *zap.Logger
	revoked   map[string]bool
	// checkedAt is the issue time each kind of subject was last checked against revocations with.
	checkedAt map[string]time.Time
	policy    Policy
	// front, when set, serves /token instead of the service (e.g. to hold requests).
	front atomic.Pointer[http.Handler]
}

type envOption func(*TokenServiceConfig)

// newEnv starts a token service; opts adjust its config before it is built.
func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), ca: testca.New(t, testTD), revoked: map[string]bool{}, checkedAt: map[string]time.Time{}}
	e.idp = newIDP(t, userIss)
	e.svcKey = mustP256(t)
	core, logs := observer.New(zap.DebugLevel)
	e.log, e.logs = zap.New(core), logs
	e.agentWIT = e.ca.CreateWITSVID(agentID)
	e.agentSVID = e.ca.CreateX509SVID(agentID)

	mux := http.NewServeMux()
	e.srv = httptest.NewUnstartedServer(mux)
	e.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	e.endpoint = "https://" + e.srv.Listener.Addr().String() + "/token"

	witv, err := wpt.NewVerifier(wpt.VerifierConfig{
		Bundles: wpt.FromWITBundles(e.ca.WITBundle()),
		Replay:  replay.New(replay.Options{Now: e.clock.Now}),
		Now:     e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := TokenServiceConfig{
		TrustDomain: testTD,
		Endpoint:    e.endpoint,
		SigningKey:  e.svcKey, KeyID: serviceKI, Alg: "ES256",
		WITVerifier:    witv,
		X509Bundles:    e.ca.X509Bundle(),
		JWTBundles:     e.ca.JWTBundle(),
		SubjectIssuers: []TrustedIssuer{{Issuer: userIss, Keys: e.idp.keys, Audiences: []string{userAud}}},
		Revocations: RevocationsFunc(func(_ context.Context, kind, value string, issuedAt time.Time) (string, bool) {
			e.checkedAt[kind] = issuedAt
			return "rev-1", e.revoked[kind+"|"+value]
		}),
		Policy: PolicyFunc(func(ctx context.Context, req *ExchangeRequest) ([]string, error) {
			if e.policy != nil {
				return e.policy.Authorize(ctx, req)
			}
			return SameTrustDomain(testTD, legacyGrant).Authorize(ctx, req)
		}),
		Logger: e.log,
		Now:    e.clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if e.svc, err = NewTokenService(cfg); err != nil {
		t.Fatal(err)
	}
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		if h := e.front.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		e.svc.ServeHTTP(w, r)
	})
	mux.Handle("/jwks", e.svc.JWKSHandler())
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

// RevocationsFunc adapts a function to Revocations (test helper).
type RevocationsFunc func(ctx context.Context, kind, value string, issuedAt time.Time) (string, bool)

func (f RevocationsFunc) Revoked(ctx context.Context, kind, value string, at time.Time) (string, bool) {
	return f(ctx, kind, value, at)
}

// client returns an HTTPS client trusting the test server; with svid, it presents that client certificate.
func (e *env) client(svid *x509svid.SVID) *http.Client {
	c := e.srv.Client()
	if svid != nil {
		tr := c.Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{{
			Certificate: [][]byte{svid.Certificates[0].Raw},
			PrivateKey:  svid.PrivateKey,
		}}
		c = &http.Client{Transport: tr}
	}
	return c
}

// exchanger returns an Exchanger for the agent.
func (e *env) exchanger(mod func(*ExchangerConfig)) *Exchanger {
	e.t.Helper()
	cfg := ExchangerConfig{
		TokenEndpoint: e.endpoint,
		TrustDomain:   testTD,
		Source:        witSource{e.agentWIT},
		HTTPClient:    e.client(nil),
		Logger:        e.log,
		Now:           e.clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	x, err := NewExchanger(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

// verifier returns a TxnVerifier trusting the service's keys.
func (e *env) verifier(mod func(*TxnVerifierConfig)) *TxnVerifier {
	e.t.Helper()
	cfg := TxnVerifierConfig{Keys: e.svc, TrustDomain: testTD, Issuer: e.endpoint, Now: e.clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewTxnVerifier(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// wpt mints a WPT for w with aud.
func (e *env) wpt(w *testca.WITSVID, aud string) string {
	e.t.Helper()
	p, err := wpt.NewProver(w.Token, w.Key)
	if err != nil {
		e.t.Fatal(err)
	}
	proof, err := p.Mint(wpt.ProofParams{Audience: aud, Now: e.clock.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	return proof
}

// post sends a raw token request and returns the status and decoded body.
func (e *env) post(c *http.Client, form url.Values, hdr http.Header) (int, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c == nil {
		c = e.client(nil)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	var m map[string]any
	if err := jsonUnmarshal(b, &m); err != nil {
		e.t.Fatalf("response %d %q is not JSON: %v", resp.StatusCode, b, err)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		e.t.Errorf("Cache-Control = %q, want no-store", resp.Header.Get("Cache-Control"))
	}
	return resp.StatusCode, m
}

// txnForm is a valid Txn-Token request with the agent's WIT as actor and, when user != "", the user token.
func (e *env) txnForm(user string) url.Values {
	f := url.Values{
		"grant_type":           {GrantTypeTokenExchange},
		"requested_token_type": {TokenTypeTxnToken},
		"audience":             {testTD.Name()},
		"scope":                {"orders.create"},
		"actor_token":          {e.agentWIT.Token},
		"actor_token_type":     {TokenTypeWIT},
	}
	if user != "" {
		f.Set("subject_token", user)
		f.Set("subject_token_type", TokenTypeAccessToken)
	} else {
		f.Set("subject_token", e.agentWIT.Token)
		f.Set("subject_token_type", TokenTypeWIT)
	}
	return f
}

func (e *env) wptHeader(aud string) http.Header {
	return http.Header{wire.HeaderWPT: {e.wpt(e.agentWIT, aud)}}
}

// mintTxn signs arbitrary Txn-Token claims with the service key (or key), for verifier tests.
func (e *env) mintTxn(key crypto.Signer, kid, typ string, mod func(m map[string]any)) string {
	e.t.Helper()
	now := e.clock.Now()
	m := map[string]any{
		"iss":    e.endpoint,
		"iat":    now.Unix(),
		"exp":    now.Add(5 * time.Minute).Unix(),
		"aud":    testTD.Name(),
		"txn":    "97053963-771d-49cc-a4e3-20aad399c312",
		"sub":    "alice",
		"scope":  "orders.create",
		"req_wl": agentID.String(),
	}
	if mod != nil {
		mod(m)
	}
	if key == nil {
		key = e.svcKey
	}
	return signJWT(e.t, key, "ES256", kid, typ, m)
}

// claimsOf decodes a JWT's payload without verifying it (for assertions after verification elsewhere).
func claimsOf(t testing.TB, token string) (map[string]any, string) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, supportedAlgs)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := jsonUnmarshal(jws.UnsafePayloadWithoutVerification(), &m); err != nil {
		t.Fatal(err)
	}
	typ, _ := jws.Signatures[0].Header.ExtraHeaders[jose.HeaderType].(string)
	return m, typ
}
