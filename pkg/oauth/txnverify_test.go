package oauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
	"github.com/agentauth/agentauth/pkg/wire"
)

// mutableKeys is a KeySource whose keys a test can change.
type mutableKeys struct {
	mu  sync.Mutex
	set jose.JSONWebKeySet
}

func (m *mutableKeys) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return lookup(&m.set, kid), nil
}

func (m *mutableKeys) setKeys(keys ...jose.JSONWebKey) {
	m.mu.Lock()
	m.set = jose.JSONWebKeySet{Keys: keys}
	m.mu.Unlock()
}

func TestTxnVerifier(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	wrongKey := mustP256(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name   string
		token  func() string
		from   string // the authenticated workload; "" means Verify only
		want   error
		legacy bool
	}{
		{name: "valid", token: func() string { return e.mintTxn(nil, serviceKI, TypTxnToken, nil) }, from: agentID.String()},
		{name: "valid, media-type typ", token: func() string { return e.mintTxn(nil, serviceKI, "application/TxnToken+JWT", nil) }},
		{name: "valid, aud array", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { m["aud"] = []string{"x", testTD.Name()} })
		}},
		{name: "wrong signature", token: func() string { return e.mintTxn(wrongKey, serviceKI, TypTxnToken, nil) }, want: autherr.ErrBadSignature},
		{name: "unknown kid", token: func() string { return e.mintTxn(nil, "tts-9", TypTxnToken, nil) }, want: autherr.ErrUntrustedIssuer},
		{name: "no kid, one key", token: func() string { return e.mintTxn(nil, "", TypTxnToken, nil) }},
		{name: "EdDSA under an ES256 key", token: func() string { return signJWT(t, edKey, "EdDSA", serviceKI, TypTxnToken, map[string]any{}) }, want: autherr.ErrUnsupportedAlg},
		{name: "HS256", token: func() string {
			return signJWT(t, []byte("0123456789abcdef0123456789abcdef"), "HS256", serviceKI, TypTxnToken, map[string]any{})
		}, want: autherr.ErrUnsupportedAlg},
		{name: "alg none", token: func() string { return "eyJhbGciOiJub25lIiwidHlwIjoidHhudG9rZW4rand0In0.e30." }, want: autherr.ErrUnsupportedAlg},
		{name: "wrong typ", token: func() string { return e.mintTxn(nil, serviceKI, "JWT", nil) }, want: autherr.ErrMalformed},
		{name: "no typ", token: func() string { return e.mintTxn(nil, serviceKI, "", nil) }, want: autherr.ErrMalformed},
		{name: "wrong aud", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { m["aud"] = "other.example" })
		}, want: autherr.ErrWrongAudience},
		{name: "no aud", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { delete(m, "aud") })
		}, want: autherr.ErrMalformed},
		{name: "wrong iss", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { m["iss"] = "https://evil.example" })
		}, want: autherr.ErrUntrustedIssuer},
		{name: "expired", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) {
				m["iat"], m["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(-time.Minute).Unix()
			})
		}, want: autherr.ErrExpired},
		{name: "expired within skew", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { m["exp"] = now.Add(-10 * time.Second).Unix() })
		}},
		{name: "issued in the future", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) {
				m["iat"], m["exp"] = now.Add(5*time.Minute).Unix(), now.Add(10*time.Minute).Unix()
			})
		}, want: autherr.ErrNotYetValid},
		{name: "lifetime too long", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { m["exp"] = now.Add(24 * time.Hour).Unix() })
		}, want: autherr.ErrExpired},
		{name: "no iat", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { delete(m, "iat") })
		}, want: autherr.ErrMalformed},
		{name: "no txn", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { delete(m, "txn") })
		}, want: autherr.ErrMalformed},
		{name: "no sub", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { delete(m, "sub") })
		}, want: autherr.ErrMalformed},
		{name: "no scope", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { delete(m, "scope") })
		}, want: autherr.ErrMalformed},
		{name: "no req_wl", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { delete(m, "req_wl") })
		}, want: autherr.ErrMalformed},
		{name: "txn not a string", token: func() string { return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { m["txn"] = 7 }) }, want: autherr.ErrMalformed},
		{name: "act without sub", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { m["act"] = map[string]any{"iss": "x"} })
		}, want: autherr.ErrMalformed},
		{name: "req_wl mismatch", token: func() string { return e.mintTxn(nil, serviceKI, TypTxnToken, nil) }, from: toolID.String(), want: autherr.ErrMismatch},
		{name: "legacy names refused by default", token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) {
				m["purp"], m["rctx"] = m["scope"], map[string]any{"req_wl": m["req_wl"]}
				delete(m, "scope")
				delete(m, "req_wl")
			})
		}, want: autherr.ErrMalformed},
		{name: "legacy names accepted when configured", legacy: true, from: agentID.String(), token: func() string {
			return e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) {
				m["purp"], m["rctx"], m["azd"] = m["scope"], map[string]any{"req_wl": m["req_wl"]}, map[string]any{"action": "BUY"}
				delete(m, "scope")
				delete(m, "req_wl")
			})
		}},
		{name: "too large", token: func() string { return strings.Repeat("a", MaxTxnTokenSize) + ".b.c" }, want: autherr.ErrTooLarge},
		{name: "not a JWS", token: func() string { return "not a token" }, want: autherr.ErrMalformed},
		{name: "four parts", token: func() string { return "a.b.c.d" }, want: autherr.ErrMalformed},
		{name: "duplicate claim", token: func() string {
			return signRaw(t, e.svcKey, serviceKI, TypTxnToken, `{"sub":"alice","sub":"root"}`)
		}, want: autherr.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := e.verifier(func(cfg *TxnVerifierConfig) { cfg.AcceptLegacyClaims = c.legacy })
			var err error
			if c.from != "" {
				_, err = v.VerifyFrom(context.Background(), c.token(), c.from)
			} else {
				_, err = v.Verify(context.Background(), c.token())
			}
			autherrtest.Check(t, err, c.want)
		})
	}
}

// signRaw signs payload bytes as they are (ES256), for JSON no encoder would produce.
func signRaw(t testing.TB, key any, kid, typ, payload string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTxnVerifierCache: a cached token is re-checked for expiry and for its key still being trusted.
func TestTxnVerifierCache(t *testing.T) {
	e := newEnv(t)
	keys := &mutableKeys{}
	keys.setKeys(e.svc.JWKS().Keys...)
	v := e.verifier(func(c *TxnVerifierConfig) { c.Keys = keys })
	tok := e.mintTxn(nil, serviceKI, TypTxnToken, nil)
	a, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	b, err := v.Verify(context.Background(), tok)
	if err != nil || a != b {
		t.Fatalf("second verification not from the cache: %v", err)
	}
	if a.Hash != hashB64(tok) {
		t.Error("Hash is not the tth form of the token")
	}
	keys.setKeys()
	_, err = v.Verify(context.Background(), tok)
	autherrtest.Check(t, err, autherr.ErrUntrustedIssuer)
	keys.setKeys(e.svc.JWKS().Keys...)
	e.clock.Add(10 * time.Minute)
	_, err = v.Verify(context.Background(), tok)
	autherrtest.Check(t, err, autherr.ErrExpired)
}

func TestTxnTokenFromHeader(t *testing.T) {
	for name, c := range map[string]struct {
		vals []string
		want error
	}{
		"one":          {[]string{" a.b.c "}, nil},
		"none":         {nil, autherr.ErrMissing},
		"two":          {[]string{"a.b.c", "d.e.f"}, autherr.ErrMalformed},
		"comma-joined": {[]string{"a.b.c, d.e.f"}, autherr.ErrMalformed},
		"bearer":       {[]string{"Bearer a.b.c"}, autherr.ErrMalformed},
		"empty":        {[]string{""}, autherr.ErrMalformed},
		"too large":    {[]string{strings.Repeat("a", MaxTxnTokenSize) + ".b.c"}, autherr.ErrTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range c.vals {
				h.Add(wire.HeaderTxnToken, v)
			}
			got, err := TxnTokenFromHeader(h)
			autherrtest.Check(t, err, c.want)
			if c.want == nil && got != "a.b.c" {
				t.Errorf("got %q", got)
			}
		})
	}
}

func TestNewTxnVerifierConfigErrors(t *testing.T) {
	keys, _ := NewStaticKeys()
	for name, cfg := range map[string]TxnVerifierConfig{
		"no keys":          {TrustDomain: testTD},
		"no audience":      {Keys: keys},
		"symmetric alg":    {Keys: keys, TrustDomain: testTD, AllowedAlgs: []string{"HS256"}},
		"negative skew":    {Keys: keys, TrustDomain: testTD, ClockSkew: -1},
		"negative maxlife": {Keys: keys, TrustDomain: testTD, MaxLifetime: -1},
	} {
		if _, err := NewTxnVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestTxnSubjectKind: a Txn-Token naming the workload that presents it is the agent acting for itself, one naming
// another workload a system, anything else a user (the token service never names a user like a workload).
func TestTxnSubjectKind(t *testing.T) {
	const agent = "spiffe://example.org/agent/planner"
	for _, tc := range []struct{ sub, want string }{
		{agent, SubjectSelf},
		{"spiffe://example.org/agent/scheduler", SubjectSystem},
		{"corp:alice@example.com", SubjectUser},
		{"spiffe-fan@example.com", SubjectUser},
	} {
		if got := (&TxnInfo{Subject: tc.sub}).SubjectKind(agent); got != tc.want {
			t.Errorf("sub %q: %q, want %q", tc.sub, got, tc.want)
		}
	}
}
