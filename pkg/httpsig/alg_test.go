package httpsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
)

func TestAlgorithmFromJWS(t *testing.T) {
	for jws, want := range map[string]Algorithm{
		"EdDSA": AlgEd25519, "ES256": AlgECDSAP256SHA256, "ES384": AlgECDSAP384SHA384, "PS512": AlgRSAPSSSHA512,
		"RS256": AlgRSAV15SHA256, "ES512": "ES512", "PS256": "PS256", "PS384": "PS384", "RS384": "RS384", "RS512": "RS512",
	} {
		if got, err := AlgorithmFromJWS(jws); err != nil || got != want {
			t.Errorf("AlgorithmFromJWS(%q) = %q, %v; want %q", jws, got, err, want)
		}
	}
	for _, bad := range []string{"none", "HS256", "hmac-sha256", "", "es256", "RSA-OAEP"} {
		if _, err := AlgorithmFromJWS(bad); !errors.Is(err, autherr.ErrUnsupportedAlg) {
			t.Errorf("AlgorithmFromJWS(%q) = %v", bad, err)
		}
	}
	if err := Algorithm("hmac-sha256").Verify([]byte("k"), nil, nil); !errors.Is(err, autherr.ErrUnsupportedAlg) {
		t.Errorf("hmac-sha256 verify: %v", err)
	}
}

func TestAlgorithmsRoundTrip(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	base := []byte("base")
	tests := []struct {
		alg     Algorithm
		key     crypto.Signer
		sigSize int
	}{
		{AlgEd25519, ed, 64},
		{AlgECDSAP256SHA256, p256, 64},
		{AlgECDSAP384SHA384, p384, 96},
		{"ES512", p521, 132},
		{AlgRSAPSSSHA512, rsaKey, 256},
		{"PS384", rsaKey, 256},
		{AlgRSAV15SHA256, rsaKey, 256},
		{"RS512", rsaKey, 256},
	}
	for _, tt := range tests {
		sig, err := tt.alg.Sign(tt.key, base)
		if err != nil || len(sig) != tt.sigSize {
			t.Fatalf("%s: Sign: %d bytes, %v", tt.alg, len(sig), err)
		}
		if err := tt.alg.Verify(tt.key.Public(), base, sig); err != nil {
			t.Fatalf("%s: Verify: %v", tt.alg, err)
		}
		if err := tt.alg.Verify(tt.key.Public(), []byte("other"), sig); !errors.Is(err, autherr.ErrBadSignature) {
			t.Errorf("%s: Verify(other base) = %v", tt.alg, err)
		}
		if err := tt.alg.Verify(tt.key.Public(), base, sig[:len(sig)-1]); !errors.Is(err, autherr.ErrBadSignature) {
			t.Errorf("%s: Verify(short sig) = %v", tt.alg, err)
		}
	}
	mismatch := []struct {
		alg Algorithm
		key crypto.Signer
	}{
		{AlgEd25519, p256}, {AlgECDSAP256SHA256, p384}, {AlgECDSAP384SHA384, ed}, {AlgRSAPSSSHA512, p256},
		{AlgRSAV15SHA256, small}, {AlgRSAPSSSHA512, small},
	}
	for _, tt := range mismatch {
		if _, err := tt.alg.Sign(tt.key, base); !errors.Is(err, autherr.ErrUnsupportedAlg) {
			t.Errorf("%s with %T: Sign = %v", tt.alg, tt.key.Public(), err)
		}
		if err := tt.alg.Verify(tt.key.Public(), base, make([]byte, 64)); !errors.Is(err, autherr.ErrUnsupportedAlg) {
			t.Errorf("%s with %T: Verify = %v", tt.alg, tt.key.Public(), err)
		}
	}
}
