package wpt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
)

// opaqueSigner hides the concrete key type, as a TPM- or KMS-backed key would.
type opaqueSigner struct{ crypto.Signer }

// TestProofAlgorithms mints and verifies WPTs for every supported workload algorithm, with the key held natively and
// behind an opaque crypto.Signer, and checks that proofs signed by go-jose directly verify the same way.
func TestProofAlgorithms(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]crypto.Signer{
		"ES256": mustP256(t), "ES384": p384, "ES512": p521, "EdDSA": mustEd25519(t),
		"RS256": rsaKey, "RS384": rsaKey, "RS512": rsaKey, "PS256": rsaKey, "PS384": rsaKey, "PS512": rsaKey,
	}
	e := newEnv(t, "EdDSA")
	algs := []jose.SignatureAlgorithm{}
	for alg, key := range keys {
		t.Run(alg, func(t *testing.T) {
			algs := append(algs, jose.SignatureAlgorithm(alg))
			wit := e.mintWIT(t, WITClaims{Key: key.Public(), KeyAlg: alg})
			v := e.verifier(t, func(c *VerifierConfig) { c.AllowedAlgs = []string{"ES256", alg} })
			for _, signer := range []crypto.Signer{key, opaqueSigner{key}} {
				p, err := NewProver(wit, signer)
				if err != nil {
					t.Fatal(err)
				}
				ours, err := p.Mint(ProofParams{Audience: testAud, Now: testNow})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := v.VerifyRequest(context.Background(), Request{WIT: wit, WPT: ours, Audiences: []string{testAud}}); err != nil {
					t.Fatalf("%T: %v", signer, err)
				}
				claims := map[string]any{"aud": testAud, "jti": "x"}
				theirs := signJWT(t, key, jose.SignatureAlgorithm(alg), "", map[jose.HeaderKey]any{"typ": typWPT}, claims)
				for _, tok := range []string{ours, theirs} {
					payload, typ, err := verifyProofJWS(tok, algs, key.Public())
					var c map[string]any
					if err != nil || typ != typWPT || json.Unmarshal(payload, &c) != nil || c["aud"] != testAud {
						t.Fatalf("verifyProofJWS(%s) = %v, %q, %q", tok, err, typ, payload)
					}
					parts := strings.Split(tok, ".")
					sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
					sig[len(sig)/2] ^= 1
					bad := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
					_, _, err = verifyProofJWS(bad, algs, key.Public())
					autherrtest.Check(t, err, autherr.ErrBadSignature)
				}
			}
		})
	}
}

// TestProverConcurrent shares one Prover (and so one go-jose Signer) between goroutines, for the race detector.
func TestProverConcurrent(t *testing.T) {
	e := newEnv(t, "ES256")
	p := e.prover(t)
	v := e.verifier(t, nil)
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			wpt, err := p.Mint(ProofParams{Audience: testAud, Now: testNow})
			if err == nil {
				_, err = v.VerifyRequest(context.Background(), Request{WIT: e.wit, WPT: wpt, Audiences: []string{testAud}})
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyProofJWSRejects(t *testing.T) {
	key := mustEd25519(t)
	pub := key.Public()
	enc := base64.RawURLEncoding.EncodeToString
	payload := enc([]byte(`{}`))
	sign := func(input string) string {
		sig, err := key.Sign(rand.Reader, []byte(input), crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		return input + "." + enc(sig)
	}
	signed := func(hdr string) string { return sign(enc([]byte(hdr)) + "." + payload) }
	good := signed(`{"alg":"EdDSA","typ":"wpt+jwt"}`)
	parts := strings.Split(good, ".")
	// An RFC 7797 unencoded-payload JWS, signed over header.{} with "e30" as the payload part: go-jose verifies it
	// (see below), so only parseCompact's refusal of b64 keeps it out.
	unencHdr := enc([]byte(`{"alg":"EdDSA","typ":"wpt+jwt","b64":false,"crit":["b64"]}`))
	unencoded := unencHdr + ".e30." + enc(ed25519Sign(t, key, unencHdr+".{}"))
	if jws, err := jose.ParseSignedCompact(unencoded, []jose.SignatureAlgorithm{jose.EdDSA}); err != nil {
		t.Fatalf("go-jose does not parse the unencoded-payload JWS: %v", err)
	} else if _, err := jws.Verify(pub); err != nil {
		t.Fatalf("go-jose does not verify the unencoded-payload JWS: %v", err)
	}
	// The same signature with non-zero unused trailing bits: go-jose verifies it, parseCompact refuses it.
	if jws, err := jose.ParseSignedCompact(bumpLast(good), []jose.SignatureAlgorithm{jose.EdDSA}); err != nil {
		t.Fatalf("go-jose does not parse the non-canonical JWS: %v", err)
	} else if _, err := jws.Verify(pub); err != nil {
		t.Fatalf("go-jose does not verify the non-canonical JWS: %v", err)
	}
	tests := []struct {
		name, token string
		want        error
	}{
		{"good", good, nil},
		{"extra members ignored", signed(`{"alg":"EdDSA","typ":"wpt+jwt","kid":"x","jwk":{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}`), nil},
		{"crit", signed(`{"alg":"EdDSA","typ":"wpt+jwt","crit":["exp"],"exp":1}`), autherr.ErrMalformed},
		{"b64", signed(`{"alg":"EdDSA","typ":"wpt+jwt","b64":false}`), autherr.ErrMalformed},
		{"b64 true", signed(`{"alg":"EdDSA","typ":"wpt+jwt","b64":true}`), autherr.ErrMalformed},
		{"unencoded payload", unencoded, autherr.ErrMalformed},
		{"duplicate alg", signed(`{"alg":"ES256","alg":"EdDSA","typ":"wpt+jwt"}`), autherr.ErrMalformed},
		{"duplicate typ", signed(`{"alg":"EdDSA","typ":"jwt","typ":"wpt+jwt"}`), autherr.ErrMalformed},
		{"header invalid UTF-8", signed("{\"alg\":\"EdDSA\",\"typ\":\"wpt+jwt\",\"x\":\"\xff\"}"), autherr.ErrMalformed},
		{"alg case", signed(`{"alg":"eddsa","typ":"wpt+jwt"}`), autherr.ErrUnsupportedAlg},
		{"alg none", signed(`{"alg":"none","typ":"wpt+jwt"}`), autherr.ErrUnsupportedAlg},
		{"alg other", signed(`{"alg":"ES256","typ":"wpt+jwt"}`), autherr.ErrUnsupportedAlg},
		{"no alg", signed(`{"typ":"wpt+jwt"}`), autherr.ErrUnsupportedAlg},
		{"header not JSON", signed(`alg`), autherr.ErrMalformed},
		{"header array", signed(`["EdDSA"]`), autherr.ErrMalformed},
		{"two parts", good[:strings.LastIndexByte(good, '.')], autherr.ErrMalformed},
		{"four parts", good + ".x", autherr.ErrMalformed},
		{"padded signature", good + "==", autherr.ErrMalformed},
		{"non-canonical signature", bumpLast(good), autherr.ErrMalformed},
		{"non-canonical payload", sign(parts[0] + "." + bumpLast(payload)), autherr.ErrMalformed},
		{"non-canonical header", sign(bumpLast(parts[0]) + "." + payload), autherr.ErrMalformed},
		// Go's base64 skips CR and LF, and go-jose signs over what it decoded, so these verify in go-jose.
		{"line break in signature", good[:len(good)-4] + "\n" + good[len(good)-4:], autherr.ErrMalformed},
		{"line break in payload", parts[0] + ".e3\r\n0." + parts[2], autherr.ErrMalformed},
		{"line break in header", parts[0][:4] + "\n" + parts[0][4:] + "." + parts[1] + "." + parts[2], autherr.ErrMalformed},
		// go-jose decodes every part before anything is verified, so a payload that is not base64url is malformed.
		{"bad payload base64", parts[0] + ".!!." + parts[2], autherr.ErrMalformed},
		{"signature of wrong length", parts[0] + "." + parts[1] + "." + enc([]byte("short")), autherr.ErrBadSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", autherr.ErrBadSignature},
		{"empty", "", autherr.ErrMalformed},
		{"dots", "..", autherr.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := verifyProofJWS(tt.token, []jose.SignatureAlgorithm{jose.EdDSA}, pub)
			autherrtest.Check(t, err, tt.want)
		})
	}
}

// bumpLast sets the lowest unused bit of the last character of canonical unpadded base64url s (whose length is not a
// multiple of 4): the same bytes, spelled differently.
func bumpLast(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return s[:len(s)-1] + string(alphabet[strings.IndexByte(alphabet, s[len(s)-1])+1])
}

func ed25519Sign(t *testing.T, key crypto.Signer, input string) []byte {
	t.Helper()
	sig, err := key.Sign(rand.Reader, []byte(input), crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
