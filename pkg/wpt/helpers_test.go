package wpt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/replay"
)

var (
	testNow = time.Unix(1_800_000_000, 0)
	testTD  = spiffeid.RequireTrustDomainFromString("example.org")
)

const (
	testSub = "spiffe://example.org/ns/agents/sa/planner"
	testKID = "k1"
	testAud = "https://tool.example.org/mcp"
)

// env is a trust domain with one issuer key, a workload key and a WIT binding them.
type env struct {
	issuerKey   *ecdsa.PrivateKey
	issuer      *Issuer
	bundles     *witbundle.Set
	workloadKey crypto.Signer
	workloadAlg string
	wit         string
	clock       *time.Time
}

func mustP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustEd25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newEnv builds an env whose workload key uses alg ("EdDSA" or "ES256").
func newEnv(t testing.TB, alg string) *env {
	t.Helper()
	e := &env{issuerKey: mustP256(t), workloadAlg: alg}
	now := testNow
	e.clock = &now
	var err error
	if e.issuer, err = NewIssuer(e.issuerKey, testKID, "ES256"); err != nil {
		t.Fatal(err)
	}
	e.bundles = witbundle.NewSet(witbundle.FromWITAuthorities(testTD, map[string]crypto.PublicKey{testKID: e.issuerKey.Public()}))
	switch alg {
	case "EdDSA":
		e.workloadKey = mustEd25519(t)
	case "ES256":
		e.workloadKey = mustP256(t)
	default:
		t.Fatalf("alg %q", alg)
	}
	e.wit = e.mintWIT(t, WITClaims{})
	return e
}

// mintWIT mints a WIT for the env's workload key; zero fields of c get defaults.
func (e *env) mintWIT(t testing.TB, c WITClaims) string {
	t.Helper()
	if c.Subject == "" {
		c.Subject = testSub
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = testNow.Add(-time.Minute)
	}
	if c.Expiry.IsZero() {
		c.Expiry = testNow.Add(time.Hour)
	}
	if c.Key == nil {
		c.Key, c.KeyAlg = e.workloadKey.Public(), e.workloadAlg
	}
	w, err := e.issuer.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (e *env) verifier(t testing.TB, mod func(*VerifierConfig)) *Verifier {
	t.Helper()
	cfg := VerifierConfig{
		Bundles: FromWITBundles(e.bundles),
		Replay:  replay.New(replay.Options{Now: e.now}),
		Now:     e.now,
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *env) now() time.Time { return *e.clock }

func (e *env) prover(t testing.TB) *Prover {
	t.Helper()
	p, err := NewProver(e.wit, e.workloadKey)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// signJWT signs arbitrary claims with key under alg, with optional kid and extra header parameters; it is how tests
// build tokens our Issuer and Prover refuse to make.
func signJWT(t testing.TB, key any, alg jose.SignatureAlgorithm, kid string, hdr map[jose.HeaderKey]any, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{ExtraHeaders: hdr}
	if kid != "" {
		key = jose.JSONWebKey{Key: key, KeyID: kid}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, ok := claims.([]byte) // raw bytes let tests send JSON no encoder would produce
	if !ok {
		var err error
		if payload, err = json.Marshal(claims, json.Deterministic(true)); err != nil {
			t.Fatal(err)
		}
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unsignedJWT builds an alg=none token.
func unsignedJWT(t testing.TB, hdr map[string]any, claims any) string {
	t.Helper()
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

func publicJWK(t testing.TB, key crypto.PublicKey, alg string) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key, Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// witClaimsMap is a valid WIT payload for e, as a map tests can change.
func (e *env) witClaimsMap(t testing.TB) map[string]any {
	return map[string]any{
		"sub": testSub,
		"exp": testNow.Add(time.Hour).Unix(),
		"iat": testNow.Add(-time.Minute).Unix(),
		"jti": "wit-1",
		"cnf": map[string]any{"jwk": publicJWK(t, e.workloadKey.Public(), e.workloadAlg)},
	}
}

var witHeader = map[jose.HeaderKey]any{jose.HeaderType: "wit+jwt"}
