package wpt

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
	"github.com/agentauth/agentauth/pkg/replay"
)

// Test vectors of draft-ietf-wimse-workload-creds / draft-ietf-wimse-wpt (specs/wimse-wit-wpt.md §4).
const (
	specIssuerJWK = `{"kty":"EC","kid":"June 5","crv":"P-256","x":"kXqnA2Op7hgd4zRMbw0iFcc_hDxUxhojxOFVGjE2gks","y":"n__VndPMR021-59UAs0b9qDTFT-EZtT6xSNs_xFskLo"}`
	specWorkloadD = "sdLX8yCYKqo_XvGBLn-ZWeKT7llYeeQpgeCaXVxb5kY"
	specWIT       = "eyJhbGciOiJFUzI1NiIsImtpZCI6Ikp1bmUgNSIsInR5cCI6IndpdCtqd3QifQ.eyJjbmYiOnsiandrIjp7ImFsZyI6IkVkRFNBIiwiY3J2IjoiRWQyNTUxOSIsImt0eSI6Ik9LUCIsIngiOiIxQ1hYdmZsTl9MVlZzSXNZWHNVdkIwM0ptbEdXZUNIcVFWdW91Q0Y5MmJnIn19LCJleHAiOjE3NDU1MTI1MTAsImlhdCI6MTc0NTUwODkxMCwianRpIjoieC1fMUNUTDJjY2EzQ1NFNGN3Yl9sIiwic3ViIjoid2ltc2U6Ly9leGFtcGxlLmNvbS9zcGVjaWZpYy13b3JrbG9hZCJ9.6KraSQUxWdl9dxFQ3Fj6dPY0Vi88OkwFwZpAIOhLeq6AbXAnLLQgOp8U9UDGcBuYF3KiNv6oKQD1ZWAzrMZOJw"
	specWPT       = "eyJhbGciOiJFZERTQSIsInR5cCI6IndwdCtqd3QifQ.eyJhdGgiOiJDTDR3amZwUm1OZi1iZFlJYllMblY5ZDVyTUFSR3dLWUUxMHdVd3pDMGpJIiwiYXVkIjoiaHR0cHM6Ly93b3JrbG9hZC5leGFtcGxlLmNvbS9wYXRoIiwiZXhwIjoxNzQ1NTEwMDE2LCJqdGkiOiJfX2J3YzRFU0MzYWNjMkxUQzEtX3giLCJ3dGgiOiJBYVlVZkMzNEQxZGkyRnhRTHBpSUpKN1NnOFZaNm84T0Nkd1NmOUlUb0xnIn0.PI7d9AcYhLoEgPgbJvcM132lkBKnM1NXU-5hZUzVTIyj2dRJaTLFs6e5NYv5gg6AqcV7NvkYCwfgMgWasWQzCA"
	specAud       = "https://workload.example.com/path"
	specBearer    = "16_mAd0GiwaZokU26_0902100"
)

func specVerifier(t *testing.T, now time.Time) *Verifier {
	t.Helper()
	var jwk jose.JSONWebKey
	if err := json.Unmarshal([]byte(specIssuerJWK), &jwk); err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("example.com")
	clock := func() time.Time { return now }
	v, err := NewVerifier(VerifierConfig{
		Bundles: FromWITBundles(witbundle.FromWITAuthorities(td, map[string]crypto.PublicKey{jwk.KeyID: jwk.Key})),
		Replay:  replay.New(replay.Options{Now: clock}),
		Now:     clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSpecVectors(t *testing.T) {
	now := time.Unix(1745509800, 0) // after the WIT's iat, within 5 minutes of the WPT's exp
	v := specVerifier(t, now)
	res, err := v.VerifyRequest(context.Background(), Request{WIT: specWIT, WPT: specWPT,
		Audiences: []string{specAud}, AccessToken: specBearer})
	if err != nil {
		t.Fatal(err)
	}
	if res.WIT.Subject != "wimse://example.com/specific-workload" || res.WIT.ID != "x-_1CTL2cca3CSE4cwb_l" ||
		res.JTI != "__bwc4ESC3acc2LTC1-_x" || res.Audience != specAud || res.Expiry.Unix() != 1745510016 ||
		res.WIT.Key.Algorithm != "EdDSA" {
		t.Fatalf("result = %+v, WIT = %+v", res, res.WIT)
	}
	_, err = v.VerifyRequest(context.Background(), Request{WIT: specWIT, WPT: specWPT,
		Audiences: []string{specAud}, AccessToken: specBearer})
	autherrtest.Check(t, err, autherr.ErrReplay)

	// Without the bearer token, or with another, the ath binding fails.
	v = specVerifier(t, now)
	_, err = v.VerifyRequest(context.Background(), Request{WIT: specWIT, WPT: specWPT, Audiences: []string{specAud}})
	autherrtest.Check(t, err, autherr.ErrMismatch)
	_, err = v.VerifyRequest(context.Background(), Request{WIT: specWIT, WPT: specWPT, Audiences: []string{specAud}, AccessToken: "x"})
	autherrtest.Check(t, err, autherr.ErrMismatch)

	// Our Prover, holding the spec's workload key, makes proofs the verifier accepts.
	d, err := base64.RawURLEncoding.DecodeString(specWorkloadD)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProver(specWIT, ed25519.NewKeyFromSeed(d))
	if err != nil {
		t.Fatal(err)
	}
	wpt, err := p.Mint(ProofParams{Audience: specAud, AccessToken: specBearer, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyRequest(context.Background(), Request{WIT: specWIT, WPT: wpt, Audiences: []string{specAud}, AccessToken: specBearer})
	autherrtest.Check(t, err, nil)

	// After the WIT's exp (plus skew) nothing verifies, and the Prover refuses to use the key.
	late := time.Unix(1745512510+31, 0)
	_, err = specVerifier(t, late).VerifyWIT(context.Background(), specWIT)
	autherrtest.Check(t, err, autherr.ErrExpired)
	_, err = p.Mint(ProofParams{Audience: specAud, Now: late})
	autherrtest.Check(t, err, autherr.ErrExpired)
}

func TestVerifyRequest(t *testing.T) {
	for _, alg := range []string{"EdDSA", "ES256"} {
		t.Run(alg, func(t *testing.T) { testVerifyRequest(t, alg) })
	}
}

func testVerifyRequest(t *testing.T, alg string) {
	e := newEnv(t, alg)
	p := e.prover(t)
	otherKey := newEnv(t, alg).workloadKey
	mint := func(pp ProofParams) string {
		if pp.Audience == "" {
			pp.Audience = testAud
		}
		pp.Now = testNow
		w, err := p.Mint(pp)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	claims := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"aud": testAud, "exp": testNow.Add(time.Minute).Unix(), "jti": "j-1", "wth": hashB64(e.wit)}
		if mod != nil {
			mod(m)
		}
		return m
	}
	wptHdr := map[jose.HeaderKey]any{jose.HeaderType: "wpt+jwt"}
	sign := func(m map[string]any) string {
		return signJWT(t, e.workloadKey, jose.SignatureAlgorithm(alg), "", wptHdr, m)
	}
	base := Request{WIT: e.wit, Audiences: []string{"https://alias.example.org", testAud}}
	req := func(wpt string, mod func(r *Request)) Request {
		r := base
		r.WPT = wpt
		if mod != nil {
			mod(&r)
		}
		return r
	}
	const at, txn = "access-token-1", "txn-token-1"
	other := map[string]string{"X-Delegation": " deleg-1 "}
	wrongAlg, wrongAlgKey := jose.ES256, any(mustP256(t))
	if alg == "ES256" {
		wrongAlg, wrongAlgKey = jose.EdDSA, mustEd25519(t)
	}
	otherWIT := e.mintWIT(t, WITClaims{ID: "another"})
	// The WIT is ES256-signed by the issuer: as a WPT its alg matches an ES256 cnf.jwk but not its key.
	witAsWPT := autherr.ErrUnsupportedAlg
	if alg == "ES256" {
		witAsWPT = autherr.ErrBadSignature
	}

	tests := []struct {
		name string
		req  Request
		want error
	}{
		{"minted", req(mint(ProofParams{}), nil), nil},
		{"hand-built", req(sign(claims(nil)), nil), nil},
		{"all bindings", req(mint(ProofParams{AccessToken: at, TxnToken: txn, Other: other}), func(r *Request) {
			r.AccessToken, r.TxnToken, r.Other = at, txn, map[string]string{"x-delegation": "deleg-1"}
		}), nil},
		{"aud as one-element array", req(sign(claims(func(m map[string]any) { m["aud"] = []string{testAud} })), nil), nil},
		{"aud two values", req(sign(claims(func(m map[string]any) { m["aud"] = []string{testAud, "https://b"} })), nil), autherr.ErrMalformed},
		{"aud missing", req(sign(claims(func(m map[string]any) { delete(m, "aud") })), nil), autherr.ErrMalformed},
		{"aud wrong", req(mint(ProofParams{Audience: "https://other.example.org/mcp"}), nil), autherr.ErrWrongAudience},
		{"aud with query", req(mint(ProofParams{Audience: testAud + "?x=1"}), nil), autherr.ErrWrongAudience},
		{"typ wrong", req(signJWT(t, e.workloadKey, jose.SignatureAlgorithm(alg), "", map[jose.HeaderKey]any{"typ": "wit+jwt"}, claims(nil)), nil), autherr.ErrMalformed},
		{"typ missing", req(signJWT(t, e.workloadKey, jose.SignatureAlgorithm(alg), "", nil, claims(nil)), nil), autherr.ErrMalformed},
		{"typ long form", req(signJWT(t, e.workloadKey, jose.SignatureAlgorithm(alg), "", map[jose.HeaderKey]any{"typ": "application/wpt+jwt"}, claims(nil)), nil), nil},
		{"alg none", req(unsignedJWT(t, map[string]any{"alg": "none", "typ": "wpt+jwt"}, claims(nil)), nil), autherr.ErrUnsupportedAlg},
		{"alg HS256", req(signJWT(t, []byte(strings.Repeat("k", 32)), jose.HS256, "", wptHdr, claims(nil)), nil), autherr.ErrUnsupportedAlg},
		{"alg differs from cnf.jwk.alg", req(signJWT(t, wrongAlgKey, wrongAlg, "", wptHdr, claims(nil)), nil), autherr.ErrUnsupportedAlg},
		{"signed by another key", req(signJWT(t, otherKey, jose.SignatureAlgorithm(alg), "", wptHdr, claims(nil)), nil), autherr.ErrBadSignature},
		{"tampered payload", req(tamper(mint(ProofParams{}), sign(claims(func(m map[string]any) { m["aud"] = "https://x" }))), nil), autherr.ErrBadSignature},
		{"expired", req(sign(claims(func(m map[string]any) { m["exp"] = testNow.Add(-time.Minute).Unix() })), nil), autherr.ErrExpired},
		{"expired within skew", req(sign(claims(func(m map[string]any) { m["exp"] = testNow.Add(-10 * time.Second).Unix() })), nil), nil},
		{"lifetime too long", req(mint(ProofParams{Lifetime: 10 * time.Minute}), nil), autherr.ErrExpired},
		{"lifetime at the limit", req(mint(ProofParams{Lifetime: 5 * time.Minute}), nil), nil},
		{"no exp", req(sign(claims(func(m map[string]any) { delete(m, "exp") })), nil), autherr.ErrMalformed},
		{"nbf in future", req(sign(claims(func(m map[string]any) { m["nbf"] = testNow.Add(time.Minute).Unix() })), nil), autherr.ErrNotYetValid},
		{"iat in future", req(sign(claims(func(m map[string]any) { m["iat"] = testNow.Add(time.Minute).Unix() })), nil), autherr.ErrNotYetValid},
		{"iat within skew", req(sign(claims(func(m map[string]any) { m["iat"] = testNow.Add(10 * time.Second).Unix() })), nil), nil},
		{"wth for another WIT", req(sign(claims(func(m map[string]any) { m["wth"] = hashB64(otherWIT) })), nil), autherr.ErrMismatch},
		{"wth missing", req(sign(claims(func(m map[string]any) { delete(m, "wth") })), nil), autherr.ErrMismatch},
		{"other WIT of the same key, wth of the first", req(mint(ProofParams{}), func(r *Request) { r.WIT = otherWIT }), autherr.ErrMismatch},
		{"ath missing", req(mint(ProofParams{}), func(r *Request) { r.AccessToken = at }), autherr.ErrMismatch},
		{"ath wrong", req(mint(ProofParams{AccessToken: "other"}), func(r *Request) { r.AccessToken = at }), autherr.ErrMismatch},
		{"ath without access token", req(mint(ProofParams{AccessToken: at}), nil), autherr.ErrMismatch},
		{"tth missing", req(mint(ProofParams{}), func(r *Request) { r.TxnToken = txn }), autherr.ErrMismatch},
		{"tth wrong", req(mint(ProofParams{TxnToken: "other"}), func(r *Request) { r.TxnToken = txn }), autherr.ErrMismatch},
		{"tth without Txn-Token", req(mint(ProofParams{TxnToken: txn}), nil), autherr.ErrMismatch},
		{"oth missing", req(mint(ProofParams{}), func(r *Request) { r.Other = other }), autherr.ErrMismatch},
		{"oth wrong", req(mint(ProofParams{Other: map[string]string{"x-delegation": "x"}}), func(r *Request) { r.Other = other }), autherr.ErrMismatch},
		{"oth unknown key", req(mint(ProofParams{Other: map[string]string{"x-unknown": "x"}}), nil), autherr.ErrMismatch},
		{"oth partly known", req(mint(ProofParams{Other: map[string]string{"x-delegation": "deleg-1", "x-unknown": "x"}}), func(r *Request) { r.Other = other }), autherr.ErrMismatch},
		{"oth not lower-case", req(sign(claims(func(m map[string]any) { m["oth"] = map[string]string{"X-Delegation": hashB64("deleg-1")} })), func(r *Request) { r.Other = other }), autherr.ErrMismatch},
		{"no jti", req(sign(claims(func(m map[string]any) { delete(m, "jti") })), nil), autherr.ErrMalformed},
		{"jti too long", req(sign(claims(func(m map[string]any) { m["jti"] = strings.Repeat("j", 300) })), nil), autherr.ErrMalformed},
		{"case-variant claim is not aud", req(sign(claims(func(m map[string]any) { m["AUD"] = "https://x" })), nil), nil},
		{"duplicate claim", req(signJWT(t, e.workloadKey, jose.SignatureAlgorithm(alg), "", wptHdr,
			[]byte(`{"aud":"https://x","aud":"`+testAud+`","exp":`+fmt.Sprint(testNow.Unix()+60)+`,"jti":"d","wth":"`+hashB64(e.wit)+`"}`)), nil), autherr.ErrMalformed},
		{"claims not JSON object", req(signJWT(t, e.workloadKey, jose.SignatureAlgorithm(alg), "", wptHdr, "str"), nil), autherr.ErrMalformed},
		{"WIT expired", req(mint(ProofParams{}), func(r *Request) {
			r.WIT = e.mintWIT(t, WITClaims{IssuedAt: testNow.Add(-2 * time.Hour), Expiry: testNow.Add(-time.Hour)})
		}), autherr.ErrExpired},
		{"WIT from another issuer under our kid", req(mint(ProofParams{}), func(r *Request) { r.WIT = newEnv(t, alg).wit }), autherr.ErrBadSignature},
		{"no WIT", req(mint(ProofParams{}), func(r *Request) { r.WIT = "" }), autherr.ErrMissing},
		{"no WPT", req("", nil), autherr.ErrMissing},
		{"WPT oversize", req(strings.Repeat("a", MaxTokenSize+1), nil), autherr.ErrTooLarge},
		{"WPT garbage", req("a.b.c", nil), autherr.ErrMalformed},
		{"WIT as WPT", req(e.wit, nil), witAsWPT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := e.verifier(t, nil)
			res, err := v.VerifyRequest(context.Background(), tt.req)
			autherrtest.Check(t, err, tt.want)
			if tt.want != nil {
				if res != nil {
					t.Fatal("a Result was returned with an error")
				}
				return
			}
			if res.WIT.Subject != testSub || res.JTI == "" || res.Audience != testAud {
				t.Fatalf("result %+v", res)
			}
			// The same proof a second time is a replay.
			_, err = v.VerifyRequest(context.Background(), tt.req)
			autherrtest.Check(t, err, autherr.ErrReplay)
		})
	}
}

func TestReplayCheckedLast(t *testing.T) {
	e := newEnv(t, "EdDSA")
	v := e.verifier(t, nil)
	wpt, err := e.prover(t).Mint(ProofParams{Audience: testAud, AccessToken: "at", Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Failures on aud or on a binding must not consume the jti.
	_, err = v.VerifyRequest(ctx, Request{WIT: e.wit, WPT: wpt, Audiences: []string{"https://elsewhere"}, AccessToken: "at"})
	autherrtest.Check(t, err, autherr.ErrWrongAudience)
	_, err = v.VerifyRequest(ctx, Request{WIT: e.wit, WPT: wpt, Audiences: []string{testAud}, AccessToken: "forged"})
	autherrtest.Check(t, err, autherr.ErrMismatch)
	_, err = v.VerifyRequest(ctx, Request{WIT: e.wit, WPT: wpt, Audiences: []string{testAud}, AccessToken: "at"})
	autherrtest.Check(t, err, nil)
	// jti is scoped by subject: another workload may use the same jti value.
	e2 := newEnv(t, "EdDSA")
	e2.issuer, e2.bundles = e.issuer, e.bundles
	e2.wit = e2.mintWIT(t, WITClaims{Subject: "spiffe://example.org/other"})
	m := map[string]any{"aud": testAud, "exp": testNow.Add(time.Minute).Unix(), "jti": "same", "wth": hashB64(e.wit)}
	m2 := map[string]any{"aud": testAud, "exp": testNow.Add(time.Minute).Unix(), "jti": "same", "wth": hashB64(e2.wit)}
	hdr := map[jose.HeaderKey]any{jose.HeaderType: "wpt+jwt"}
	_, err = v.VerifyRequest(ctx, Request{WIT: e.wit, WPT: signJWT(t, e.workloadKey, jose.EdDSA, "", hdr, m), Audiences: []string{testAud}})
	autherrtest.Check(t, err, nil)
	_, err = v.VerifyRequest(ctx, Request{WIT: e2.wit, WPT: signJWT(t, e2.workloadKey, jose.EdDSA, "", hdr, m2), Audiences: []string{testAud}})
	autherrtest.Check(t, err, nil)
}

func TestNewProver(t *testing.T) {
	e := newEnv(t, "ES256")
	if _, err := NewProver(e.wit, mustP256(t)); err == nil {
		t.Error("a key that does not match cnf.jwk was accepted")
	}
	if _, err := NewProver("garbage", e.workloadKey); err == nil {
		t.Error("garbage WIT accepted")
	}
	p := e.prover(t)
	if p.WIT() != e.wit || !p.Expiry().Equal(testNow.Add(time.Hour)) {
		t.Fatalf("WIT/Expiry = %q, %v", p.WIT(), p.Expiry())
	}
	if _, err := p.Mint(ProofParams{Now: testNow}); err == nil {
		t.Error("Mint without audience succeeded")
	}
	if _, err := p.Mint(ProofParams{Audience: testAud, Now: testNow,
		Other: map[string]string{"X-A": "1", "x-a": "2"}}); err == nil {
		t.Error("Mint with a header twice succeeded")
	}
}
