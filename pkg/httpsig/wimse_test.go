package httpsig

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// The worked example of draft-ietf-wimse-http-signature-06 Section 7 (shared/specs/wimse-http-signatures.md).
const (
	exWITA = "eyJhbGciOiJFZERTQSIsImtpZCI6Imlzc3Vlci1rZXkiLCJ0eXAiOiJ3aXQrand0In0.eyJjbmYiOnsiandrIjp7ImFsZyI6IkVkRFNBIiwiY3J2IjoiRWQyNTUxOSIsImtpZCI6InN2Yy1hLWtleSIsImt0eSI6Ik9LUCIsIngiOiJaamxWVDRDT3NDa1FPOUhJbzZ0RFdBWGF5UTBNeW1vRlVLSlJJUTdTOFI4In19LCJleHAiOjE3ODUxNTYwOTcsImlhdCI6MTc4NTE1NTc5NywiaXNzIjoiaHR0cHM6Ly9leGFtcGxlLmNvbS9pc3N1ZXIiLCJqdGkiOiJ3aXQtMTc4NTE1NTc5NzIxNjU0NTcxOSIsInN1YiI6IndpbXNlOi8vZXhhbXBsZS5jb20vc3ZjQSJ9.BqJfcsbrYlS9GSQ7NpFBBVz4CeszShqleIyr2sSnd0Ic6l2HXX27giZcdAOGnXjtv_7h-9vV16GZbVcrQt6hCg"
	exWITB = "eyJhbGciOiJFZERTQSIsImtpZCI6Imlzc3Vlci1rZXkiLCJ0eXAiOiJ3aXQrand0In0.eyJjbmYiOnsiandrIjp7ImFsZyI6IkVkRFNBIiwiY3J2IjoiRWQyNTUxOSIsImtpZCI6InN2Yy1iLWtleSIsImt0eSI6Ik9LUCIsIngiOiJsQnRMUzhjTnRfN3BXc2RpMnhneDc2MGxXcHpFdnFZZTJEcFNrOUVMSDJ3In19LCJleHAiOjE3ODUxNTYwOTksImlhdCI6MTc4NTE1NTc5OSwiaXNzIjoiaHR0cHM6Ly9leGFtcGxlLmNvbS9pc3N1ZXIiLCJqdGkiOiJ3aXQtMTc4NTE1NTc5NzIxNjY3MDUxOCIsInN1YiI6IndpbXNlOi8vZXhhbXBsZS5jb20vc3ZjQiJ9.HIAU2288ryXoym1M9fnKZqd0p2Vl7spOh-FY2jCFY-05H74-WPUFWrg5lH5f2rHl47TfxEGri3fmMP4zhYzeAw"
	exKeyA = "HQdG2ekHF4COyoHNYvCh2fMHhIaKvkrStjmyfndFyGI"
	exKeyB = "nn132WU82duEPtUbQtoQLqWoC1hKl8zeWavCDIR0VeI"

	exReqInput = `wimse=("@method" "@request-target" "workload-identity-token");created=1785155797;expires=1785156097;nonce="abcd1111";tag="wimse-workload-to-workload";wimse-aud="https://svcb.example.com/gimme-ice-cream";wimse-sign-response`
	exReqSig   = `wimse=:zSK+kx5EnoZct9FZ6LMYzfx0mk32oI/hHpB7y4rgHxkRDcAA72yBW5xgzA03nKviXLjL7nphq840Uwznp6IKAw==:`
	exRespIn   = `wimse=("@status" "workload-identity-token" "content-type" "content-digest" "@method";req "@request-target";req);created=1785155797;expires=1785156099;nonce="abcd2222";tag="wimse-workload-to-workload";wimse-req-nonce="abcd1111"`
	exRespSig  = `wimse=:57ZChndLoz5toS+/0RGeQJG53gLrZD/bBterOWnHF1vb0cdceeUOKH/t4A+/bvquC/0VCb5DYFRdFNz4CW8yBQ==:`
	exRespBody = "No ice cream today.\n\n"
	exAud      = "https://svcb.example.com/gimme-ice-cream"
)

func seedKey(t testing.TB, d string) ed25519.PrivateKey {
	t.Helper()
	seed, err := base64.RawURLEncoding.DecodeString(d)
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.NewKeyFromSeed(seed)
}

// unverifiedWITs returns a WIT's claims without checking its signature. Only the draft example needs it: the key
// of the issuer that signed WIT-A and WIT-B is not published.
type unverifiedWITs struct{}

func (unverifiedWITs) VerifyWIT(_ context.Context, token string) (*wpt.WIT, error) {
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c struct {
		Sub string `json:"sub"`
		Cnf struct {
			JWK jose.JSONWebKey `json:"jwk"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, err
	}
	return &wpt.WIT{Raw: token, Subject: c.Sub, Key: c.Cnf.JWK}, nil
}

func fixedClock(unix int64) func() time.Time { return func() time.Time { return time.Unix(unix, 0) } }

func fixedNonce(n string) func() (string, error) { return func() (string, error) { return n, nil } }

func TestWIMSEDraftExample(t *testing.T) {
	ctx := context.Background()
	signerA, err := NewSigner(exWITA, seedKey(t, exKeyA), SignerOptions{
		Now: fixedClock(1785155797), Nonce: fixedNonce("abcd1111"), Lifetime: 300 * time.Second,
		RequestSignedResponse: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://svcb.example.com/gimme-ice-cream?flavor=vanilla", nil)
	if err := signerA.SignRequest(req, nil); err != nil {
		t.Fatal(err)
	}
	// Ed25519 is deterministic: our request is the draft's, byte for byte.
	if got := req.Header.Get(wire.HeaderSignatureInput); got != exReqInput {
		t.Errorf("Signature-Input\n got %s\nwant %s", got, exReqInput)
	}
	if got := req.Header.Get(wire.HeaderSignature); got != exReqSig {
		t.Errorf("Signature\n got %s\nwant %s", got, exReqSig)
	}
	if req.Header.Get(wire.HeaderWIT) != exWITA || req.Header.Get(HeaderContentDigest) != "" {
		t.Errorf("headers: %v", req.Header)
	}
	wantBase := `"@method": GET` + "\n" +
		`"@request-target": /gimme-ice-cream?flavor=vanilla` + "\n" +
		`"workload-identity-token": ` + exWITA + "\n" +
		`"@signature-params": ` + strings.TrimPrefix(exReqInput, "wimse=")
	ins, _ := ParseSignatureInput(req.Header.Values(wire.HeaderSignatureInput))
	if base, err := SignatureBase(Message{Request: req}, &ins[0]); err != nil || string(base) != wantBase {
		t.Errorf("request base = %q, %v", base, err)
	}

	// The server side: the same request as received on the wire.
	srvReq := readRequest(t, "GET /gimme-ice-cream?flavor=vanilla HTTP/1.1\r\nHost: svcb.example.com\r\n"+
		"Signature: "+exReqSig+"\r\nSignature-Input: "+exReqInput+"\r\nWorkload-Identity-Token: "+exWITA+"\r\n\r\n")
	v, err := NewVerifier(VerifierConfig{WITs: unverifiedWITs{}, Replay: replay.New(replay.Options{Now: fixedClock(1785155800)}),
		Audiences: []string{exAud}, MaxAge: 10 * time.Minute, Now: fixedClock(1785155800)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.VerifyRequest(ctx, srvReq, nil)
	if err != nil {
		t.Fatalf("VerifyRequest: %v", err)
	}
	if res.WIT.Subject != "wimse://example.com/svcA" || res.Nonce != "abcd1111" || !res.SignResponse || res.Audience != exAud {
		t.Errorf("result = %+v", res)
	}

	signerB, err := NewSigner(exWITB, seedKey(t, exKeyB), SignerOptions{
		Now: fixedClock(1785155797), Nonce: fixedNonce("abcd2222"), Lifetime: 302 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	resp := &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{"Content-Type": {"text/plain"}}, Request: srvReq}
	if err := signerB.SignResponse(resp, []byte(exRespBody)); err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get(HeaderContentDigest); got != "sha-256=:UHKweBl9cpjdVqgTB65El8SexXlJYGG+XIslAYqC1mY=:" {
		t.Errorf("Content-Digest = %s", got)
	}
	if got := resp.Header.Get(wire.HeaderSignatureInput); got != exRespIn {
		t.Errorf("response Signature-Input\n got %s\nwant %s", got, exRespIn)
	}
	if got := resp.Header.Get(wire.HeaderSignature); got != exRespSig {
		t.Errorf("response Signature\n got %s\nwant %s", got, exRespSig)
	}

	// The client verifies the response against the request it sent.
	resp.Request = req
	res, err = v.VerifyResponse(ctx, resp, []byte(exRespBody))
	if err != nil {
		t.Fatalf("VerifyResponse: %v", err)
	}
	if res.WIT.Subject != "wimse://example.com/svcB" || len(res.Covered) != 6 {
		t.Errorf("result = %+v", res)
	}
}

// env is a trust domain with a WIT issuer, a wpt.Verifier over its bundle, and a clock.
type env struct {
	now     time.Time
	issuer  *wpt.Issuer
	witVer  *wpt.Verifier
	replay  *replay.Cache
	td      spiffeid.TrustDomain
	outside *wpt.Issuer // an issuer no bundle trusts
}

const (
	envAud = "https://tool.example.org/api/items"
	envSub = "spiffe://example.org/agent"
)

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{now: time.Unix(1_800_000_000, 0), td: spiffeid.RequireTrustDomainFromString("example.org")}
	issuerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var err error
	if e.issuer, err = wpt.NewIssuer(issuerKey, "k1", "ES256"); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if e.outside, err = wpt.NewIssuer(otherKey, "k1", "ES256"); err != nil {
		t.Fatal(err)
	}
	bundles := jwtbundle.NewSet(jwtbundle.FromJWTAuthorities(e.td, map[string]crypto.PublicKey{"k1": issuerKey.Public()}))
	e.replay = replay.New(replay.Options{Now: e.clock})
	if e.witVer, err = wpt.NewVerifier(wpt.VerifierConfig{Bundles: wpt.FromJWTBundles(bundles), Replay: replay.New(replay.Options{Now: e.clock}),
		Now: e.clock}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) clock() time.Time { return e.now }

// workload mints a WIT for a fresh key of alg ("EdDSA" or "ES256") and returns a Signer for it.
func (e *env) workload(t testing.TB, alg string, opts SignerOptions) (*Signer, crypto.Signer, string) {
	t.Helper()
	var key crypto.Signer
	if alg == "EdDSA" {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	} else {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	wit, err := e.issuer.Mint(wpt.WITClaims{Subject: envSub, IssuedAt: e.now.Add(-time.Minute),
		Expiry: e.now.Add(time.Hour), Key: key.Public(), KeyAlg: alg})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Now == nil {
		opts.Now = e.clock
	}
	s, err := NewSigner(wit, key, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, key, wit
}

func (e *env) verifier(t testing.TB, mod func(*VerifierConfig)) *Verifier {
	t.Helper()
	cfg := VerifierConfig{WITs: e.witVer, Replay: e.replay, Audiences: []string{envAud}, Now: e.clock}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newRequest(t testing.TB, method, url, body string, hdr map[string]string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

// resignWith re-signs r's WIMSE signature after mutate changes its input: how tests build signatures our Signer
// refuses to make.
func resignWith(t testing.TB, r *http.Request, key crypto.Signer, alg Algorithm, mutate func(*SignatureInput)) {
	t.Helper()
	ins, err := ParseSignatureInput(r.Header.Values(wire.HeaderSignatureInput))
	if err != nil {
		t.Fatal(err)
	}
	in := ins[0]
	mutate(&in)
	r.Header.Del(wire.HeaderSignatureInput)
	r.Header.Del(wire.HeaderSignature)
	if err := Sign(Message{Request: r}, &in, alg, key); err != nil {
		t.Fatal(err)
	}
}

func setParam(in *SignatureInput, key string, v any) {
	for i := range in.Params {
		if in.Params[i].Key == key {
			if v == nil {
				in.Params = append(in.Params[:i], in.Params[i+1:]...)
			} else {
				in.Params[i].Value = v
			}
			return
		}
	}
	in.Params = append(in.Params, Param{key, v})
}

func TestWIMSERoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, alg := range []string{"EdDSA", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t)
			s, _, _ := e.workload(t, alg, SignerOptions{})
			v := e.verifier(t, nil)
			body := `{"item":1}`
			r := newRequest(t, http.MethodPost, envAud+"?x=1", body, map[string]string{
				"Content-Type": "application/json", "Authorization": "Bearer abc", "Txn-Token": "txn"})
			if err := s.SignRequest(r, []byte(body)); err != nil {
				t.Fatal(err)
			}
			res, err := v.VerifyRequest(ctx, r, []byte(body))
			if err != nil {
				t.Fatalf("VerifyRequest: %v", err)
			}
			want := []string{`"@method"`, `"@request-target"`, `"workload-identity-token"`, `"content-type"`,
				`"authorization"`, `"txn-token"`, `"content-digest"`}
			if res.WIT.Subject != envSub || strings.Join(res.Covered, " ") != strings.Join(want, " ") ||
				res.Expires.Sub(res.Created) != DefaultLifetime || res.Audience != envAud {
				t.Errorf("result = %+v", res)
			}
			if _, err := v.VerifyRequest(ctx, r, []byte(body)); !errors.Is(err, autherr.ErrReplay) {
				t.Errorf("second VerifyRequest = %v, want autherr.ErrReplay", err)
			}
		})
	}
}

func TestWIMSEVerifyRequestRefusals(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s, key, wit := e.workload(t, "ES256", SignerOptions{})
	_, otherKey, otherWIT := e.workload(t, "EdDSA", SignerOptions{})
	alg := s.Algorithm()
	body := `{"a":1}`
	signed := func(t *testing.T, hdr map[string]string) *http.Request {
		r := newRequest(t, http.MethodPost, envAud, body, hdr)
		if err := s.SignRequest(r, []byte(body)); err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name   string
		build  func(t *testing.T) (*http.Request, []byte)
		verify func(*VerifierConfig)
		want   error
	}{
		{"no WIT", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.Header.Del(wire.HeaderWIT)
			return r, []byte(body)
		}, nil, autherr.ErrMissing},
		{"no signature", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.Header.Del(wire.HeaderSignature)
			return r, []byte(body)
		}, nil, autherr.ErrMissing},
		{"two WITs", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.Header.Add(wire.HeaderWIT, wit)
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"WIT swapped for another valid one", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.Header.Set(wire.HeaderWIT, otherWIT)
			return r, []byte(body)
		}, nil, autherr.ErrBadSignature},
		{"signed with a key the WIT does not bind", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, otherKey, AlgEd25519, func(*SignatureInput) {})
			return r, []byte(body)
		}, nil, autherr.ErrBadSignature},
		{"WIT signed by a key not in the bundle", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			w, err := e.outside.Mint(wpt.WITClaims{Subject: envSub, IssuedAt: e.now, Expiry: e.now.Add(time.Hour),
				Key: key.Public(), KeyAlg: "ES256"})
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set(wire.HeaderWIT, w)
			return r, []byte(body)
		}, nil, autherr.ErrBadSignature},
		{"method changed", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.Method = http.MethodPut
			return r, []byte(body)
		}, nil, autherr.ErrBadSignature},
		{"target changed", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.URL.RawQuery = "admin=1"
			return r, []byte(body)
		}, nil, autherr.ErrBadSignature},
		{"body changed", func(t *testing.T) (*http.Request, []byte) {
			return signed(t, nil), []byte(`{"a":2}`)
		}, nil, autherr.ErrMismatch},
		{"body and digest changed", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			d, _ := ContentDigest([]byte(`{"a":2}`))
			r.Header.Set(HeaderContentDigest, d)
			return r, []byte(`{"a":2}`)
		}, nil, autherr.ErrBadSignature},
		{"digest removed", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.Header.Del(HeaderContentDigest)
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"body added to a bodiless request", func(t *testing.T) (*http.Request, []byte) {
			r := newRequest(t, http.MethodGet, envAud, "", nil)
			if err := s.SignRequest(r, nil); err != nil {
				t.Fatal(err)
			}
			return r, []byte("smuggled")
		}, nil, autherr.ErrMalformed},
		{"content-type added", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.Header.Set("Content-Type", "text/plain")
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"authorization added", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.Header.Set("Authorization", "Bearer stolen")
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"txn-token changed", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, map[string]string{"Txn-Token": "a"})
			r.Header.Set("Txn-Token", "b")
			return r, []byte(body)
		}, nil, autherr.ErrBadSignature},
		{"wrong tag", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { setParam(in, "tag", "other") })
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"keyid present", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { setParam(in, "keyid", "k") })
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"alg present", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { setParam(in, "alg", "ecdsa-p256-sha256") })
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"no nonce", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { setParam(in, "nonce", nil) })
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"huge nonce", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { setParam(in, "nonce", strings.Repeat("n", 300)) })
			return r, []byte(body)
		}, nil, autherr.ErrTooLarge},
		{"no created", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { setParam(in, "created", nil) })
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"no wimse-aud", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { setParam(in, "wimse-aud", nil) })
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"@method not covered", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { in.Components = in.Components[1:] })
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"WIT covered only as bs", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { in.Components[2] = Comp(fieldWIT, "bs") })
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"wrong audience", func(t *testing.T) (*http.Request, []byte) {
			return signed(t, nil), []byte(body)
		}, func(c *VerifierConfig) { c.Audiences = []string{"https://other.example.org/"} }, autherr.ErrWrongAudience},
		{"created in the future", func(t *testing.T) (*http.Request, []byte) { return signed(t, nil), []byte(body) },
			func(c *VerifierConfig) { c.Now = func() time.Time { return e.now.Add(-time.Minute) } }, autherr.ErrNotYetValid},
		{"expired", func(t *testing.T) (*http.Request, []byte) { return signed(t, nil), []byte(body) },
			func(c *VerifierConfig) { c.Now = func() time.Time { return e.now.Add(2 * time.Minute) } }, autherr.ErrExpired},
		{"lifetime too long", func(t *testing.T) (*http.Request, []byte) { return signed(t, nil), []byte(body) },
			func(c *VerifierConfig) { c.MaxAge = 30 * time.Second }, autherr.ErrExpired},
		{"expires before created", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { setParam(in, "expires", e.now.Unix()-1) })
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"no wimse signature", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { in.Label = "other"; setParam(in, "tag", "x") })
			return r, []byte(body)
		}, nil, autherr.ErrMissing},
		{"two tagged signatures, none labelled wimse", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			resignWith(t, r, key, alg, func(in *SignatureInput) { in.Label = "a" })
			ins, _ := ParseSignatureInput(r.Header.Values(wire.HeaderSignatureInput))
			in := ins[0]
			in.Label = "b"
			if err := Sign(Message{Request: r}, &in, alg, key); err != nil {
				t.Fatal(err)
			}
			return r, []byte(body)
		}, nil, autherr.ErrMalformed},
		{"oversized Signature-Input", func(t *testing.T) (*http.Request, []byte) {
			r := signed(t, nil)
			r.Header.Add(wire.HeaderSignatureInput, "x=("+strings.Repeat(`"a" `, MaxFieldBytes/4)+")")
			return r, []byte(body)
		}, nil, autherr.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, b := tt.build(t)
			_, err := e.verifier(t, tt.verify).VerifyRequest(ctx, r, b)
			if !errors.Is(err, tt.want) || autherr.Of(err) != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWIMSEFailedRequestKeepsNonce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s, _, _ := e.workload(t, "EdDSA", SignerOptions{})
	r := newRequest(t, http.MethodGet, envAud, "", nil)
	if err := s.SignRequest(r, nil); err != nil {
		t.Fatal(err)
	}
	wrong := e.verifier(t, func(c *VerifierConfig) { c.Audiences = []string{"https://x.example/"} })
	if _, err := wrong.VerifyRequest(ctx, r, nil); !errors.Is(err, autherr.ErrWrongAudience) {
		t.Fatalf("err = %v", err)
	}
	if _, err := e.verifier(t, nil).VerifyRequest(ctx, r, nil); err != nil {
		t.Fatalf("after a refusal the nonce must still be fresh: %v", err)
	}
}

func TestWIMSEResponses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	client, _, _ := e.workload(t, "EdDSA", SignerOptions{RequestSignedResponse: true})
	plainClient, _, _ := e.workload(t, "EdDSA", SignerOptions{})
	server, serverKey, _ := e.workload(t, "ES256", SignerOptions{})
	v := e.verifier(t, nil)
	body := []byte("hello")
	exchange := func(t *testing.T, c *Signer) (*http.Request, *http.Response) {
		req := newRequest(t, http.MethodGet, envAud+"?q=1", "", nil)
		if err := c.SignRequest(req, nil); err != nil {
			t.Fatal(err)
		}
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Request: req}
		if err := server.SignResponse(resp, body); err != nil {
			t.Fatal(err)
		}
		return req, resp
	}
	_, resp := exchange(t, client)
	res, err := v.VerifyResponse(ctx, resp, body)
	if err != nil {
		t.Fatalf("VerifyResponse: %v", err)
	}
	if strings.Join(res.Covered, " ") != `"@status" "workload-identity-token" "content-type" "content-digest" "@method";req "@request-target";req` {
		t.Errorf("covered = %v", res.Covered)
	}
	if _, err := v.VerifyResponse(ctx, resp, body); !errors.Is(err, autherr.ErrReplay) {
		t.Errorf("replayed response: %v", err)
	}

	tests := []struct {
		name  string
		build func(t *testing.T) (*http.Response, []byte)
		want  error
	}{
		{"unsigned though asked", func(t *testing.T) (*http.Response, []byte) {
			req := newRequest(t, http.MethodGet, envAud, "", nil)
			if err := client.SignRequest(req, nil); err != nil {
				t.Fatal(err)
			}
			return &http.Response{StatusCode: 200, Header: http.Header{wire.HeaderWIT: {"x.y.z"}}, Request: req}, nil
		}, autherr.ErrMissing},
		{"answers another request", func(t *testing.T) (*http.Response, []byte) {
			_, resp := exchange(t, client)
			other, _ := exchange(t, client)
			resp.Request = other
			return resp, body
		}, autherr.ErrMismatch},
		{"request nonce not echoed", func(t *testing.T) (*http.Response, []byte) {
			req, resp := exchange(t, client)
			ins, _ := ParseSignatureInput(resp.Header.Values(wire.HeaderSignatureInput))
			in := ins[0]
			setParam(&in, paramReqNonce, nil)
			resp.Header.Del(wire.HeaderSignatureInput)
			resp.Header.Del(wire.HeaderSignature)
			if err := Sign(Message{Request: req, Response: resp}, &in, AlgECDSAP256SHA256, serverKey); err != nil {
				t.Fatal(err)
			}
			return resp, body
		}, autherr.ErrMalformed},
		{"status changed", func(t *testing.T) (*http.Response, []byte) {
			_, resp := exchange(t, client)
			resp.StatusCode = 500
			return resp, body
		}, autherr.ErrBadSignature},
		{"request target changed", func(t *testing.T) (*http.Response, []byte) {
			req, resp := exchange(t, plainClient)
			req.URL.RawQuery = "q=2"
			return resp, body
		}, autherr.ErrBadSignature},
		{"body changed", func(t *testing.T) (*http.Response, []byte) {
			_, resp := exchange(t, client)
			return resp, []byte("HELLO")
		}, autherr.ErrMismatch},
		{"req components not covered", func(t *testing.T) (*http.Response, []byte) {
			req, resp := exchange(t, client)
			ins, _ := ParseSignatureInput(resp.Header.Values(wire.HeaderSignatureInput))
			in := ins[0]
			in.Components = in.Components[:len(in.Components)-1]
			resp.Header.Del(wire.HeaderSignatureInput)
			resp.Header.Del(wire.HeaderSignature)
			if err := Sign(Message{Request: req, Response: resp}, &in, AlgECDSAP256SHA256, serverKey); err != nil {
				t.Fatal(err)
			}
			return resp, body
		}, autherr.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := tt.build(t)
			_, err := v.VerifyResponse(ctx, resp, b)
			if !errors.Is(err, tt.want) || autherr.Of(err) != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// A request without wimse-sign-response still gets a verifiable signed response carrying its nonce.
	_, resp = exchange(t, plainClient)
	if _, err := v.VerifyResponse(ctx, resp, body); err != nil {
		t.Errorf("unrequested signed response: %v", err)
	}
}

// TestWIMSEOverHTTP runs a signed exchange through a real client and server on loopback.
func TestWIMSEOverHTTP(t *testing.T) {
	e := newEnv(t)
	client, _, _ := e.workload(t, "ES256", SignerOptions{RequestSignedResponse: true})
	server, _, _ := e.workload(t, "EdDSA", SignerOptions{})
	var v *Verifier
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		res, err := v.VerifyRequest(r.Context(), r, body)
		if err != nil {
			http.Error(w, err.Error(), autherr.HTTPStatus(err))
			return
		}
		out := []byte("created " + string(body) + " for " + res.WIT.Subject)
		w.Header().Set("Content-Type", "text/plain")
		if err := server.SignResponse(&http.Response{StatusCode: http.StatusCreated, Header: w.Header(), Request: r}, out); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write(out)
	}))
	// The audience is this server's own URL, known once it listens (on 127.0.0.1).
	v = e.verifier(t, func(c *VerifierConfig) { c.Audiences = []string{"http://" + srv.Listener.Addr().String() + "/items"} })
	srv.Start()
	defer srv.Close()

	body := []byte(`{"name":"x"}`)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/items?dry_run=1", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := client.SignRequest(req, body); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	res, err := e.verifier(t, nil).VerifyResponse(context.Background(), resp, got)
	if err != nil {
		t.Fatalf("VerifyResponse: %v", err)
	}
	if res.WIT.Subject != envSub || !strings.HasPrefix(string(got), "created") {
		t.Errorf("got %q, %+v", got, res)
	}
}

func TestNewSignerErrors(t *testing.T) {
	e := newEnv(t)
	_, key, wit := e.workload(t, "ES256", SignerOptions{})
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := NewSigner(wit, otherKey, SignerOptions{}); !errors.Is(err, autherr.ErrMismatch) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := NewSigner("not.a.jwt", key, SignerOptions{}); !errors.Is(err, autherr.ErrMalformed) {
		t.Errorf("bad WIT: %v", err)
	}
	if _, err := NewSigner(wit, key, SignerOptions{DigestAlgorithm: "md5"}); !errors.Is(err, autherr.ErrUnsupportedAlg) {
		t.Errorf("md5: %v", err)
	}
	if _, err := NewSigner(wit, key, SignerOptions{Headers: []string{"X-Upper"}}); err == nil {
		t.Error("accepted an upper-case header name")
	}
	if _, err := NewSigner(wit, nil, SignerOptions{}); err == nil {
		t.Error("accepted a nil key")
	}
	late, err := NewSigner(wit, key, SignerOptions{Now: func() time.Time { return e.now.Add(2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := late.SignRequest(newRequest(t, http.MethodGet, envAud, "", nil), nil); !errors.Is(err, autherr.ErrExpired) {
		t.Errorf("expired WIT: %v", err)
	}
	if _, err := NewVerifier(VerifierConfig{}); err == nil {
		t.Error("NewVerifier accepted an empty config")
	}
	v := e.verifier(t, func(c *VerifierConfig) { c.Audiences = nil })
	if _, err := v.VerifyRequest(context.Background(), newRequest(t, http.MethodGet, envAud, "", nil), nil); err == nil ||
		autherr.Of(err) != nil {
		t.Errorf("no audiences: %v", err)
	}
}

func TestSignerHeadersOption(t *testing.T) {
	e := newEnv(t)
	s, _, _ := e.workload(t, "EdDSA", SignerOptions{Headers: []string{"x-request-id", "content-type"}, DigestAlgorithm: DigestSHA512})
	r := newRequest(t, http.MethodPut, envAud, "b", map[string]string{"X-Request-Id": "42", "Content-Type": "text/plain"})
	if err := s.SignRequest(r, []byte("b")); err != nil {
		t.Fatal(err)
	}
	res, err := e.verifier(t, nil).VerifyRequest(context.Background(), r, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(strings.Join(res.Covered, " "), `"content-type"`) != 1 || !strings.Contains(strings.Join(res.Covered, " "), `"x-request-id"`) ||
		!strings.HasPrefix(r.Header.Get(HeaderContentDigest), "sha-512=") {
		t.Errorf("covered %v, digest %q", res.Covered, r.Header.Get(HeaderContentDigest))
	}
}

// TestVerifyRequestFor: audiences given per request replace the configured ones, so a receiver can accept the
// draft's default audience (which includes the path) without listing every path up front.
func TestVerifyRequestFor(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s, _, _ := e.workload(t, "ES256", SignerOptions{})
	v := e.verifier(t, func(c *VerifierConfig) { c.Audiences = nil })
	r := newRequest(t, http.MethodGet, envAud+"?q=1", "", nil)
	if err := s.SignRequest(r, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyRequest(ctx, r, nil); err == nil {
		t.Fatal("VerifyRequest without configured audiences succeeded")
	}
	if _, err := v.VerifyRequestFor(ctx, r, nil, []string{"https://elsewhere.example/x"}); !errors.Is(err, autherr.ErrWrongAudience) {
		t.Fatalf("wrong audience: %v", err)
	}
	res, err := v.VerifyRequestFor(ctx, r, nil, []string{envAud})
	if err != nil || res.Audience != envAud {
		t.Fatalf("VerifyRequestFor = %+v, %v", res, err)
	}
}

func TestSignRequestFor(t *testing.T) {
	e := newEnv(t)
	s, _, _ := e.workload(t, "EdDSA", SignerOptions{Audience: "https://configured.example/"})
	v := e.verifier(t, nil)
	r := newRequest(t, http.MethodGet, "http://127.0.0.1:9443/path", "", nil)
	if err := s.SignRequestFor(r, nil, envAud); err != nil {
		t.Fatal(err)
	}
	res, err := v.VerifyRequest(context.Background(), r, nil)
	if err != nil || res.Audience != envAud {
		t.Fatalf("VerifyRequest = %+v, %v", res, err)
	}
}

// SignResponseRequested skips the parse when no Signature-Input line names wimse-sign-response; it must still answer
// as the parse does.
func TestSignResponseRequested(t *testing.T) {
	e := newEnv(t)
	asking, _, _ := e.workload(t, "EdDSA", SignerOptions{RequestSignedResponse: true})
	plain, _, _ := e.workload(t, "EdDSA", SignerOptions{})
	signed := func(s *Signer) http.Header {
		r := newRequest(t, http.MethodGet, envAud, "", nil)
		if err := s.SignRequest(r, nil); err != nil {
			t.Fatal(err)
		}
		return r.Header
	}
	tests := []struct {
		name string
		h    http.Header
		want bool
	}{
		{"asked", signed(asking), true},
		{"not asked", signed(plain), false},
		{"unsigned", http.Header{}, false},
		{"named in a value only", http.Header{wire.HeaderSignatureInput: {`wimse=("@method");nonce="wimse-sign-response"`},
			wire.HeaderSignature: {`wimse=:AA==:`}}, false},
		{"false", http.Header{wire.HeaderSignatureInput: {`wimse=("@method");wimse-sign-response=?0`},
			wire.HeaderSignature: {`wimse=:AA==:`}}, false},
		{"second line", http.Header{wire.HeaderSignatureInput: {`other=("@method")`, `wimse=("@method");wimse-sign-response`},
			wire.HeaderSignature: {`other=:AA==:, wimse=:AA==:`}}, true},
	}
	for _, tt := range tests {
		if got := SignResponseRequested(tt.h); got != tt.want {
			t.Errorf("%s: SignResponseRequested = %v, want %v", tt.name, got, tt.want)
		}
	}
}
