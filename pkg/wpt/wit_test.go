package wpt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
)

func TestVerifyWIT(t *testing.T) {
	e := newEnv(t, "EdDSA")
	otherIssuer := mustP256(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wk := e.workloadKey.Public()
	with := func(mod func(m map[string]any)) map[string]any {
		m := e.witClaimsMap(t)
		mod(m)
		return m
	}
	sign := func(claims map[string]any) string {
		return signJWT(t, e.issuerKey, jose.ES256, testKID, witHeader, claims)
	}

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"minted", e.wit, nil},
		{"hand-built", sign(e.witClaimsMap(t)), nil},
		{"wimse subject", sign(with(func(m map[string]any) { m["sub"] = "wimse://example.org/specific-workload" })), nil},
		{"typ long form", signJWT(t, e.issuerKey, jose.ES256, testKID, map[jose.HeaderKey]any{"typ": "Application/WIT+JWT"}, e.witClaimsMap(t)), nil},
		{"typ wrong", signJWT(t, e.issuerKey, jose.ES256, testKID, map[jose.HeaderKey]any{"typ": "JWT"}, e.witClaimsMap(t)), autherr.ErrMalformed},
		{"typ wpt", signJWT(t, e.issuerKey, jose.ES256, testKID, map[jose.HeaderKey]any{"typ": "wpt+jwt"}, e.witClaimsMap(t)), autherr.ErrMalformed},
		{"typ missing", signJWT(t, e.issuerKey, jose.ES256, testKID, nil, e.witClaimsMap(t)), autherr.ErrMalformed},
		{"alg none", unsignedJWT(t, map[string]any{"alg": "none", "typ": "wit+jwt", "kid": testKID}, e.witClaimsMap(t)), autherr.ErrUnsupportedAlg},
		{"alg HS256", signJWT(t, []byte(strings.Repeat("k", 32)), jose.HS256, testKID, witHeader, e.witClaimsMap(t)), autherr.ErrUnsupportedAlg},
		{"alg ES384 with a P-256 bundle key", signJWT(t, p384, jose.ES384, testKID, witHeader, e.witClaimsMap(t)), autherr.ErrUnsupportedAlg},
		{"alg not allowed", unsignedJWT(t, map[string]any{"alg": "ES512", "typ": "wit+jwt", "kid": testKID}, e.witClaimsMap(t)), autherr.ErrUnsupportedAlg},
		{"wrong issuer key", signJWT(t, otherIssuer, jose.ES256, testKID, witHeader, e.witClaimsMap(t)), autherr.ErrBadSignature},
		{"tampered payload", tamper(e.wit, sign(with(func(m map[string]any) { m["sub"] = "spiffe://example.org/admin" }))), autherr.ErrBadSignature},
		{"unknown kid", signJWT(t, e.issuerKey, jose.ES256, "k2", witHeader, e.witClaimsMap(t)), autherr.ErrUntrustedIssuer},
		{"no kid, one key", signJWT(t, e.issuerKey, jose.ES256, "", witHeader, e.witClaimsMap(t)), nil},
		{"untrusted trust domain", sign(with(func(m map[string]any) { m["sub"] = "spiffe://evil.example/agent" })), autherr.ErrUntrustedIssuer},
		{"expired", e.mintWIT(t, WITClaims{IssuedAt: testNow.Add(-2 * time.Hour), Expiry: testNow.Add(-time.Minute)}), autherr.ErrExpired},
		{"expired within skew", e.mintWIT(t, WITClaims{IssuedAt: testNow.Add(-2 * time.Hour), Expiry: testNow.Add(-20 * time.Second)}), nil},
		{"nbf in future", sign(with(func(m map[string]any) { m["nbf"] = testNow.Add(time.Minute).Unix() })), autherr.ErrNotYetValid},
		{"nbf within skew", sign(with(func(m map[string]any) { m["nbf"] = testNow.Add(20 * time.Second).Unix() })), nil},
		{"no exp", sign(with(func(m map[string]any) { delete(m, "exp") })), autherr.ErrMalformed},
		{"exp a string", sign(with(func(m map[string]any) { m["exp"] = "soon" })), autherr.ErrMalformed},
		{"exp huge", sign(with(func(m map[string]any) { m["exp"] = 1e300 })), autherr.ErrMalformed},
		{"no sub", sign(with(func(m map[string]any) { delete(m, "sub") })), autherr.ErrMalformed},
		{"sub uppercase trust domain", sign(with(func(m map[string]any) { m["sub"] = "spiffe://Example.org/x" })), autherr.ErrMalformed},
		{"sub with port", sign(with(func(m map[string]any) { m["sub"] = "wimse://example.org:8443/x" })), autherr.ErrMalformed},
		{"sub with userinfo", sign(with(func(m map[string]any) { m["sub"] = "wimse://u@example.org/x" })), autherr.ErrMalformed},
		{"sub with query", sign(with(func(m map[string]any) { m["sub"] = "wimse://example.org/x?a=b" })), autherr.ErrMalformed},
		{"sub with fragment", sign(with(func(m map[string]any) { m["sub"] = "wimse://example.org/x#f" })), autherr.ErrMalformed},
		{"sub relative", sign(with(func(m map[string]any) { m["sub"] = "example.org/x" })), autherr.ErrMalformed},
		{"sub opaque", sign(with(func(m map[string]any) { m["sub"] = "urn:example.org:x" })), autherr.ErrMalformed},
		{"sub too long", sign(with(func(m map[string]any) { m["sub"] = "wimse://example.org/" + strings.Repeat("a", 2048) })), autherr.ErrMalformed},
		{"sub case-folded duplicate", sign(with(func(m map[string]any) { delete(m, "sub"); m["SUB"] = testSub })), autherr.ErrMalformed},
		{"aud in WIT-SVID", sign(with(func(m map[string]any) { m["aud"] = "x" })), autherr.ErrMalformed},
		{"aud in wimse WIT", sign(with(func(m map[string]any) { m["sub"] = "wimse://example.org/w"; m["aud"] = "x" })), nil},
		{"no cnf", sign(with(func(m map[string]any) { delete(m, "cnf") })), autherr.ErrMalformed},
		{"no cnf.jwk", sign(with(func(m map[string]any) { m["cnf"] = map[string]any{"jkt": "abc"} })), autherr.ErrMalformed},
		{"cnf.jwk without alg", sign(with(func(m map[string]any) { m["cnf"] = map[string]any{"jwk": publicJWK(t, wk, "")} })), autherr.ErrMalformed},
		{"cnf.jwk alg mismatch", sign(with(func(m map[string]any) { m["cnf"] = map[string]any{"jwk": publicJWK(t, wk, "ES256")} })), autherr.ErrUnsupportedAlg},
		{"cnf.jwk ES384 on P-256", sign(with(func(m map[string]any) {
			m["cnf"] = map[string]any{"jwk": publicJWK(t, otherIssuer.Public(), "ES384")}
		})), autherr.ErrUnsupportedAlg},
		{"cnf.jwk alg HS256", sign(with(func(m map[string]any) { m["cnf"] = map[string]any{"jwk": publicJWK(t, wk, "HS256")} })), autherr.ErrUnsupportedAlg},
		{"cnf.jwk symmetric", sign(with(func(m map[string]any) {
			m["cnf"] = map[string]any{"jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "alg": "HS256"}}
		})), autherr.ErrUnsupportedAlg},
		{"cnf.jwk private", sign(with(func(m map[string]any) {
			m["cnf"] = map[string]any{"jwk": privateJWK(t, e.workloadKey, "EdDSA")}
		})), autherr.ErrMalformed},
		{"cnf.jwk garbage", sign(with(func(m map[string]any) { m["cnf"] = map[string]any{"jwk": map[string]any{"kty": "EC"}} })), autherr.ErrMalformed},
		{"claims not an object", signJWT(t, e.issuerKey, jose.ES256, testKID, witHeader, []string{"x"}), autherr.ErrMalformed},
		{"oversize", e.wit + strings.Repeat("A", MaxTokenSize), autherr.ErrTooLarge},
		{"garbage", "not a token", autherr.ErrMalformed},
		{"empty", "", autherr.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := e.verifier(t, nil)
			w, err := v.VerifyWIT(context.Background(), tt.token)
			autherrtest.Check(t, err, tt.want)
			if tt.want != nil && w != nil {
				t.Fatal("a WIT was returned with an error")
			}
			if tt.want == nil && (w.Raw != tt.token || w.TrustDomain != testTD || w.Key.Key == nil) {
				t.Fatalf("unexpected WIT %+v", w)
			}
		})
	}
}

// tamper puts the payload of b into a: a's header and signature over b's claims.
func tamper(a, b string) string {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	return pa[0] + "." + pb[1] + "." + pa[2]
}

func privateJWK(t *testing.T, key crypto.Signer, alg string) map[string]any {
	t.Helper()
	m := publicJWK(t, key.Public(), alg)
	priv := publicJWK(t, key, alg)
	m["d"] = priv["d"]
	return m
}

func TestVerifyWITFields(t *testing.T) {
	e := newEnv(t, "ES256")
	wit := e.mintWIT(t, WITClaims{Subject: "wimse://example.org/w", Issuer: "https://issuer.example.org", ID: "j1",
		Extra: map[string]any{"example.org/team": "search"}})
	w, err := e.verifier(t, nil).VerifyWIT(context.Background(), wit)
	if err != nil {
		t.Fatal(err)
	}
	if w.Subject != "wimse://example.org/w" || w.Issuer != "https://issuer.example.org" || w.ID != "j1" ||
		!w.IssuedAt.Equal(testNow.Add(-time.Minute)) || !w.Expiry.Equal(testNow.Add(time.Hour)) || !w.NotBefore.IsZero() ||
		w.Key.Algorithm != "ES256" || !publicKeyEqual(w.Key.Key, e.workloadKey.Public()) ||
		w.Extra["example.org/team"] != "search" || len(w.Extra) != 1 {
		t.Fatalf("WIT = %+v", w)
	}
}

func TestVerifyWITNoKidAmbiguous(t *testing.T) {
	e := newEnv(t, "EdDSA")
	e.bundles.Add(witbundle.FromWITAuthorities(testTD, map[string]crypto.PublicKey{
		testKID: e.issuerKey.Public(), "k2": mustP256(t).Public()}))
	tok := signJWT(t, e.issuerKey, jose.ES256, "", witHeader, e.witClaimsMap(t))
	_, err := e.verifier(t, nil).VerifyWIT(context.Background(), tok)
	autherrtest.Check(t, err, autherr.ErrUntrustedIssuer)
	// With a kid the rotation set works.
	_, err = e.verifier(t, nil).VerifyWIT(context.Background(), e.wit)
	autherrtest.Check(t, err, nil)
}

func TestWITCache(t *testing.T) {
	e := newEnv(t, "EdDSA")
	v := e.verifier(t, nil)
	ctx := context.Background()
	w1, err := v.VerifyWIT(ctx, e.wit)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := v.VerifyWIT(ctx, e.wit)
	if err != nil || w1 != w2 {
		t.Fatalf("second verify: %v, same = %v", err, w1 == w2)
	}
	// A cached entry is never returned for different bytes: the same WIT with its signature re-encoded
	// differently (a trailing base64 bit flipped) is a different token.
	if v.cache.get(e.wit[:len(e.wit)-1]+"x") != nil {
		t.Fatal("cache returned an entry for different bytes")
	}
	// A hit re-checks exp against now.
	*e.clock = testNow.Add(2 * time.Hour)
	_, err = v.VerifyWIT(ctx, e.wit)
	autherrtest.Check(t, err, autherr.ErrExpired)
	*e.clock = testNow
	// A hit notices that the issuer key left the bundle (rotation or compromise).
	e.bundles.Add(witbundle.FromWITAuthorities(testTD, map[string]crypto.PublicKey{"k2": mustP256(t).Public()}))
	_, err = v.VerifyWIT(ctx, e.wit)
	autherrtest.Check(t, err, autherr.ErrUntrustedIssuer)
	e.bundles.Remove(testTD)
	_, err = v.VerifyWIT(ctx, e.wit)
	autherrtest.Check(t, err, autherr.ErrUntrustedIssuer)
}

func TestWITCacheBound(t *testing.T) {
	e := newEnv(t, "EdDSA")
	v := e.verifier(t, func(c *VerifierConfig) { c.WITCacheSize = 3 })
	for i := range 10 {
		w := e.mintWIT(t, WITClaims{ID: string(rune('a' + i))})
		if _, err := v.VerifyWIT(context.Background(), w); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(v.cache.m); n != 3 {
		t.Fatalf("cache holds %d, want 3", n)
	}
	v = e.verifier(t, func(c *VerifierConfig) { c.WITCacheSize = -1 })
	if _, err := v.VerifyWIT(context.Background(), e.wit); err != nil || v.cache != nil {
		t.Fatalf("uncached verifier: %v", err)
	}
}

func TestParseSubject(t *testing.T) {
	for sub, td := range map[string]string{
		"spiffe://example.org/a/b":         "example.org",
		"spiffe://example.org":             "example.org",
		"wimse://example.com/specific":     "example.com",
		"WIMSE://example.com/specific":     "example.com",
		"https://svc.example.com/workload": "svc.example.com",
	} {
		got, err := parseSubject(sub)
		if err != nil || got != spiffeid.RequireTrustDomainFromString(td) {
			t.Errorf("parseSubject(%q) = %v, %v; want %s", sub, got, err, td)
		}
	}
}

func TestNewVerifierConfig(t *testing.T) {
	e := newEnv(t, "EdDSA")
	for name, mod := range map[string]func(*VerifierConfig){
		"no bundles":      func(c *VerifierConfig) { c.Bundles = nil },
		"no replay cache": func(c *VerifierConfig) { c.Replay = nil },
		"HS256 allowed":   func(c *VerifierConfig) { c.AllowedAlgs = []string{"ES256", "HS256"} },
		"none allowed":    func(c *VerifierConfig) { c.AllowedAlgs = []string{"none"} },
		"negative skew":   func(c *VerifierConfig) { c.ClockSkew = -time.Second },
	} {
		cfg := VerifierConfig{Bundles: FromWITBundles(e.bundles), Replay: e.verifier(t, nil).replay}
		mod(&cfg)
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("%s: NewVerifier accepted it", name)
		}
	}
}

func TestIssuerRefuses(t *testing.T) {
	e := newEnv(t, "EdDSA")
	if _, err := NewIssuer(e.issuerKey, "k", "ES384"); err == nil {
		t.Error("ES384 with a P-256 key accepted")
	}
	if _, err := NewIssuer(e.issuerKey, "k", "HS256"); err == nil {
		t.Error("HS256 accepted")
	}
	for name, c := range map[string]WITClaims{
		"bad subject":    {Subject: "not a uri", Expiry: testNow.Add(time.Hour), Key: e.workloadKey.Public(), KeyAlg: "EdDSA"},
		"no key":         {Subject: testSub, Expiry: testNow.Add(time.Hour)},
		"alg mismatch":   {Subject: testSub, Expiry: testNow.Add(time.Hour), Key: e.workloadKey.Public(), KeyAlg: "ES256"},
		"no expiry":      {Subject: testSub, Key: e.workloadKey.Public(), KeyAlg: "EdDSA"},
		"extra aud":      {Subject: testSub, Expiry: testNow.Add(time.Hour), Key: e.workloadKey.Public(), KeyAlg: "EdDSA", Extra: map[string]any{"aud": "x"}},
		"private in cnf": {Subject: testSub, Expiry: testNow.Add(time.Hour), Key: e.workloadKey, KeyAlg: "EdDSA"},
	} {
		if _, err := e.issuer.Mint(c); err == nil {
			t.Errorf("%s: Mint accepted it", name)
		}
	}
}

// TestIssuerAlgorithms covers issuer keys other than P-256, including a cache hit with an Ed25519 issuer key (a
// slice type, which must never be compared with ==).
func TestIssuerAlgorithms(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for alg, key := range map[string]crypto.Signer{"EdDSA": mustEd25519(t), "ES384": p384, "ES256": opaqueSigner{mustP256(t)}} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, "ES256")
			if e.issuer, err = NewIssuer(key, "k-"+alg, alg); err != nil {
				t.Fatal(err)
			}
			e.bundles.Add(witbundle.FromWITAuthorities(testTD, map[string]crypto.PublicKey{"k-" + alg: key.Public()}))
			wit := e.mintWIT(t, WITClaims{})
			v := e.verifier(t, nil)
			for range 2 { // miss, then hit
				if _, err := v.VerifyWIT(context.Background(), wit); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestWITExtraClaimsAtTopLevel: extra claims are minted as top-level claims and come back in WIT.Extra; with none,
// the payload holds only the registered claims (no empty "Extra" member); a claim that happens to be named
// "Extra" is an ordinary extra claim.
func TestWITExtraClaimsAtTopLevel(t *testing.T) {
	e := newEnv(t, "EdDSA")
	registered := []string{"sub", "iss", "jti", "exp", "iat", "nbf", "cnf"}
	tests := []struct {
		name  string
		extra map[string]any
	}{
		{"none", nil},
		{"empty", map[string]any{}},
		{"one", map[string]any{"tenant": "acme"}},
		{"named Extra", map[string]any{"Extra": "x", "tenant": "acme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wit := e.mintWIT(t, WITClaims{Extra: tt.extra})
			payload, err := base64.RawURLEncoding.DecodeString(strings.Split(wit, ".")[1])
			if err != nil {
				t.Fatal(err)
			}
			var claims map[string]any
			if err := json.Unmarshal(payload, &claims); err != nil {
				t.Fatal(err)
			}
			for name, v := range claims {
				if _, want := tt.extra[name]; !want && !slices.Contains(registered, name) {
					t.Errorf("payload has claim %q = %v that was not asked for: %s", name, v, payload)
				}
			}
			for name, v := range tt.extra {
				if claims[name] != v {
					t.Errorf("claim %q = %v in the payload, want %v at the top level: %s", name, claims[name], v, payload)
				}
			}
			got, err := e.verifier(t, nil).VerifyWIT(context.Background(), wit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Extra) != len(tt.extra) {
				t.Fatalf("verified Extra = %v, want %v", got.Extra, tt.extra)
			}
			for name, v := range tt.extra {
				if got.Extra[name] != v {
					t.Errorf("verified Extra[%q] = %v, want %v", name, got.Extra[name], v)
				}
			}
		})
	}
}
