package wpt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// proverFor returns a Prover for a WIT of e's issuer binding key under alg.
func proverFor(t *testing.T, e *env, key crypto.Signer, alg string) *Prover {
	t.Helper()
	p, err := NewProver(e.mintWIT(t, WITClaims{Key: key.Public(), KeyAlg: alg}), key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCompactSignerMatchesGoJose mints the same WPT twice from the same random source (which also draws the jti):
// once through the direct signer, once through go-jose. The tokens must be the same bytes. ES512's r and s often
// have fewer than 66 significant bytes, so the zero padding of RFC 7518 §3.4 is exercised too.
func TestCompactSignerMatchesGoJose(t *testing.T) {
	e := newEnv(t, "EdDSA")
	for _, tc := range []struct {
		alg string
		key crypto.Signer
	}{
		{"ES256", ecKey(t, elliptic.P256())},
		{"ES384", ecKey(t, elliptic.P384())},
		{"ES512", ecKey(t, elliptic.P521())},
		{"EdDSA", mustEd25519(t)},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			p := proverFor(t, e, tc.key, tc.alg)
			if p.direct == nil {
				t.Fatal("no direct signer")
			}
			viaJose := *p
			viaJose.direct = nil
			pp := ProofParams{Audience: testAud, AccessToken: "at", TxnToken: "txn",
				Other: map[string]string{"X-Extra": "v"}, Now: testNow}
			for seed := range uint64(8) {
				cryptotest.SetGlobalRandom(t, seed)
				direct, err := p.Mint(pp)
				if err != nil {
					t.Fatal(err)
				}
				cryptotest.SetGlobalRandom(t, seed)
				jose, err := viaJose.Mint(pp)
				if err != nil {
					t.Fatal(err)
				}
				if direct != jose {
					t.Fatalf("seed %d:\ndirect  %s\ngo-jose %s", seed, direct, jose)
				}
			}
		})
	}
}

// TestCompactSignerFallback: keys only go-jose signs here keep the go-jose path.
func TestCompactSignerFallback(t *testing.T) {
	e := newEnv(t, "ES256")
	p, err := NewProver(e.wit, opaqueSigner{e.workloadKey})
	if err != nil {
		t.Fatal(err)
	}
	if p.direct != nil {
		t.Fatal("an opaque crypto.Signer got the direct signer")
	}
	wpt, err := p.Mint(ProofParams{Audience: testAud, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.verifier(t, nil).VerifyRequest(context.Background(), Request{WIT: e.wit, WPT: wpt, Audiences: []string{testAud}}); err != nil {
		t.Fatal(err)
	}
}

// TestProofFastPath checks when the fast path is taken: only for a header that passed the full checks with the
// WIT's key, and never for a header it has not seen.
func TestProofFastPath(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, alg)
			v := e.verifier(t, nil)
			p := e.prover(t)
			mint := func() string {
				w, err := p.Mint(ProofParams{Audience: testAud, Now: testNow})
				if err != nil {
					t.Fatal(err)
				}
				return w
			}
			vw, err := v.verifyWIT(e.wit)
			if err != nil {
				t.Fatal(err)
			}
			first := mint()
			if _, handled, _ := vw.verifyFast(first); handled {
				t.Fatal("fast path taken before any header passed the full checks")
			}
			// A header that fails the full checks (wrong typ) is not remembered.
			wrongTyp := signJWT(t, e.workloadKey, jose.SignatureAlgorithm(alg), "", map[jose.HeaderKey]any{jose.HeaderType: "jwt"},
				map[string]any{"aud": testAud})
			if _, err := v.VerifyRequest(context.Background(), Request{WIT: e.wit, WPT: wrongTyp, Audiences: []string{testAud}}); !errors.Is(err, autherr.ErrMalformed) {
				t.Fatalf("wrong typ: %v", err)
			}
			if vw.proofHeader.Load() != nil {
				t.Fatal("a header that failed the typ check was remembered")
			}
			if _, err := v.VerifyRequest(context.Background(), Request{WIT: e.wit, WPT: first, Audiences: []string{testAud}}); err != nil {
				t.Fatal(err)
			}
			second := mint()
			payload, handled, err := vw.verifyFast(second)
			if !handled || err != nil || !strings.Contains(string(payload), `"aud":"`+testAud+`"`) {
				t.Fatalf("fast path: handled %v, err %v, payload %s", handled, err, payload)
			}
			// Same header, other signature: refused by the fast path with the full path's reason.
			bad := second[:strings.LastIndexByte(second, '.')+1] + strings.Repeat("A", len(second)-strings.LastIndexByte(second, '.')-1)
			if _, handled, err := vw.verifyFast(bad); !handled || !errors.Is(err, autherr.ErrBadSignature) {
				t.Fatalf("bad signature: handled %v, err %v", handled, err)
			}
			// Another header with the same key: full path.
			other := signJWT(t, e.workloadKey, jose.SignatureAlgorithm(alg), "kid-1", map[jose.HeaderKey]any{jose.HeaderType: "wpt+jwt"},
				map[string]any{"aud": testAud})
			if _, handled, _ := vw.verifyFast(other); handled {
				t.Fatal("fast path taken for an unseen header")
			}
		})
	}
}

// FuzzProofFastPath is the differential check of the fast path: every input goes to a Verifier that has remembered
// a header for the WIT (fast path) and to one without a WIT cache (every WPT through go-jose). Both must accept
// the same inputs, with the same result, and refuse the same inputs for the same reason.
func FuzzProofFastPath(f *testing.F) {
	envs := map[bool]*env{false: newEnv(f, "EdDSA"), true: newEnv(f, "ES256")}
	warm := map[bool]string{}
	for es, e := range envs {
		p := e.prover(f)
		mint := func(pp ProofParams) string {
			pp.Now = testNow
			w, err := p.Mint(pp)
			if err != nil {
				f.Fatal(err)
			}
			return w
		}
		warm[es] = mint(ProofParams{Audience: testAud})
		good := mint(ProofParams{Audience: testAud, TxnToken: "txn"})
		dot := strings.LastIndexByte(good, '.')
		hdrEnd := strings.IndexByte(good, '.')
		f.Add(es, good, "txn")
		f.Add(es, good, "")
		f.Add(es, mint(ProofParams{Audience: "https://elsewhere.example/"}), "")
		f.Add(es, good[:dot+1]+strings.Repeat("A", len(good)-dot-1), "txn") // bad signature
		f.Add(es, good[:dot-1]+"B"+good[dot:], "txn")                       // payload changed
		f.Add(es, good[:len(good)-1]+"B", "txn")                            // last signature character changed
		f.Add(es, good+"=", "txn")                                          // padding
		f.Add(es, good[:dot+3]+"\n"+good[dot+3:], "txn")                    // newline in the signature
		f.Add(es, good[:hdrEnd+3]+"\r\n"+good[hdrEnd+3:], "txn")            // in the payload
		f.Add(es, good+".x", "txn")                                         // four segments
		f.Add(es, good[:hdrEnd]+"."+good[dot:], "txn")                      // empty payload
		f.Add(es, good[:dot], "txn")                                        // two segments
		f.Add(es, good[:hdrEnd+1]+"e30"+good[dot:], "txn")                  // {} under the old signature
		alg := jose.SignatureAlgorithm(map[bool]string{true: "ES256", false: "EdDSA"}[es])
		f.Add(es, signJWT(f, e.workloadKey, alg, "", map[jose.HeaderKey]any{jose.HeaderType: "wpt+jwt"},
			[]byte(`{"aud":"`+testAud+`"}`)), "") // unseen header
		// Claims of other shapes under the minted header, so the flat claims decoder meets the strict one here too.
		hdr := good[:hdrEnd+1]
		exp, wth := fmt.Sprint(testNow.Add(time.Minute).Unix()), hashB64(e.wit)
		for _, claims := range []string{
			`{"aud":"` + testAud + `","exp":` + exp + `,"jti":"j1","wth":"` + wth + `"}`,
			` { "aud" : "` + testAud + `" ,"exp":` + exp + `,"jti":"j2","wth":"` + wth + `","iat":` + exp + `} `,
			`{"aud":"https:\/\/tool.example.org\/mcp","exp":` + exp + `,"jti":"j3","wth":"` + wth + `"}`,
			`{"aud":["` + testAud + `"],"exp":` + exp + `,"jti":"j4","wth":"` + wth + `"}`,
			`{"aud":"` + testAud + `","exp":` + exp + `.0,"jti":"j5","wth":"` + wth + `"}`,
			`{"aud":"` + testAud + `","exp":` + exp + `,"jti":"j6","jti":"j7","wth":"` + wth + `"}`,
			`{"aud":"` + testAud + `","exp":` + exp + `,"jti":"j8","wth":"` + wth + `","ath":null}`,
			`{"aud":"` + testAud + `","exp":` + exp + `,"jti":"j9","wth":"` + wth + `","x":{}}`,
			`{"aud":"` + testAud + `","exp":` + exp + `,"jti":"j10","wth":"` + wth + `","nbf":` + exp + `00}`,
		} {
			input := hdr + base64.RawURLEncoding.EncodeToString([]byte(claims))
			f.Add(es, input+"."+base64.RawURLEncoding.EncodeToString(signInput(f, e.workloadKey, input)), "")
		}
	}
	f.Fuzz(func(t *testing.T, es bool, wpt, txn string) {
		e := envs[es]
		fast := e.verifier(t, nil)
		if _, err := fast.VerifyRequest(context.Background(), Request{WIT: e.wit, WPT: warm[es], Audiences: []string{testAud}}); err != nil {
			t.Fatal(err)
		}
		full := e.verifier(t, func(c *VerifierConfig) { c.WITCacheSize = -1 })
		full.strictClaims = true
		req := Request{WIT: e.wit, WPT: wpt, TxnToken: txn, Audiences: []string{testAud}}
		if wpt == warm[es] {
			return // its jti is spent in the fast verifier
		}
		rf, errF := fast.VerifyRequest(context.Background(), req)
		rs, errS := full.VerifyRequest(context.Background(), req)
		if reason(errF) != reason(errS) {
			t.Fatalf("fast path: %v\nfull path: %v", errF, errS)
		}
		if errF == nil && (rf.JTI != rs.JTI || rf.Audience != rs.Audience || !rf.Expiry.Equal(rs.Expiry) || rf.WIT.Raw != rs.WIT.Raw) {
			t.Fatalf("results differ: %+v / %+v", rf, rs)
		}
	})
}

// signInput signs a JWS signing input with an Ed25519 or P-256 key as JWS does (ECDSA as r||s).
func signInput(t testing.TB, key crypto.Signer, input string) []byte {
	t.Helper()
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, []byte(input))
	case *ecdsa.PrivateKey:
		d := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
	t.Fatalf("no signer for %T", key)
	return nil
}

func reason(err error) string {
	if err == nil {
		return "accepted"
	}
	if r := autherr.Of(err); r != nil {
		return r.Error()
	}
	return "untyped: " + err.Error()
}
