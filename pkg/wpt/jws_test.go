package wpt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// opaqueSigner hides the concrete key type, as a TPM- or KMS-backed key would.
type opaqueSigner struct{ crypto.Signer }

// TestCompactAgainstGoJose checks the WPT signer and verifier against go-jose in both directions, for every
// supported algorithm.
func TestCompactAgainstGoJose(t *testing.T) {
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
	payload := []byte(`{"aud":"https://tool.example.org/mcp","exp":1800000060,"jti":"x"}`)
	for alg, key := range keys {
		t.Run(alg, func(t *testing.T) {
			s, err := newCompactSigner(alg, typWPT, opaqueSigner{key})
			if err != nil {
				t.Fatal(err)
			}
			ours, err := s.sign(payload)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSignedCompact(ours, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := jws.Verify(key.Public()); err != nil || string(got) != string(payload) {
				t.Fatalf("go-jose does not verify ours: %v", err)
			}
			if jws.Signatures[0].Header.ExtraHeaders[jose.HeaderType] != typWPT {
				t.Fatalf("typ = %v", jws.Signatures[0].Header.ExtraHeaders)
			}

			theirs := signJWT(t, key, jose.SignatureAlgorithm(alg), "", map[jose.HeaderKey]any{"typ": typWPT}, payload)
			for _, tok := range []string{ours, theirs} {
				hdr, got, err := verifyCompact(tok, alg, key.Public())
				if err != nil || string(got) != string(payload) || hdr.Typ != typWPT {
					t.Fatalf("verifyCompact(%s) = %v, %q", tok, err, got)
				}
				parts := strings.Split(tok, ".")
				sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
				sig[len(sig)/2] ^= 1
				bad := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
				_, _, err = verifyCompact(bad, alg, key.Public())
				wantErr(t, err, ErrBadSignature)
			}
		})
	}
}

func TestVerifyCompactRejects(t *testing.T) {
	key := mustEd25519(t)
	pub := key.Public()
	enc := base64.RawURLEncoding.EncodeToString
	payload := enc([]byte(`{}`))
	signed := func(hdr string) string {
		input := enc([]byte(hdr)) + "." + payload
		sig, err := key.Sign(rand.Reader, []byte(input), crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		return input + "." + enc(sig)
	}
	good := signed(`{"alg":"EdDSA","typ":"wpt+jwt"}`)
	tests := []struct {
		name, token string
		want        error
	}{
		{"good", good, nil},
		{"extra members ignored", signed(`{"alg":"EdDSA","typ":"wpt+jwt","kid":"x","jwk":{"kty":"oct"}}`), nil},
		{"crit", signed(`{"alg":"EdDSA","typ":"wpt+jwt","crit":["exp"],"exp":1}`), ErrMalformed},
		{"b64", signed(`{"alg":"EdDSA","typ":"wpt+jwt","b64":false}`), ErrMalformed},
		{"duplicate alg", signed(`{"alg":"ES256","alg":"EdDSA","typ":"wpt+jwt"}`), ErrMalformed},
		{"alg case", signed(`{"alg":"eddsa","typ":"wpt+jwt"}`), ErrUnsupportedAlg},
		{"alg none", signed(`{"alg":"none","typ":"wpt+jwt"}`), ErrUnsupportedAlg},
		{"alg other", signed(`{"alg":"ES256","typ":"wpt+jwt"}`), ErrUnsupportedAlg},
		{"header not JSON", signed(`alg`), ErrMalformed},
		{"header array", signed(`["EdDSA"]`), ErrMalformed},
		{"two parts", good[:strings.LastIndexByte(good, '.')], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"padded signature", good + "==", ErrMalformed},
		{"non-canonical signature", good[:len(good)-1] + "B", ErrMalformed},
		{"bad payload base64", func() string {
			p := strings.Split(good, ".")
			return p[0] + ".!!." + p[2]
		}(), ErrBadSignature},
		{"empty", "", ErrMalformed},
		{"dots", "..", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := verifyCompact(tt.token, "EdDSA", pub)
			wantErr(t, err, tt.want)
		})
	}
}
