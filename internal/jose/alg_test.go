package jose

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
)

func TestAlgFits(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct {
		alg  string
		key  any
		want bool
	}{
		{"ES256", &p256.PublicKey, true},
		{"ES256", p256, false}, // a private key is not what a verifier can use
		{"ES384", &p384.PublicKey, true},
		{"ES512", &p521.PublicKey, true},
		{"EdDSA", edPub, true},
		{"EdDSA", edPriv, false},
		{"RS256", &rsa2048.PublicKey, true},
		{"PS512", &rsa2048.PublicKey, true},
		// The wrong curve for the alg: the prefix is right, the key is not.
		{"ES256", &p384.PublicKey, false},
		{"ES384", &p256.PublicKey, false},
		{"ES512", &p256.PublicKey, false},
		{"RS256", &rsa1024.PublicKey, false},
		{"PS256", &rsa.PublicKey{}, false},
		{"ES256", edPub, false},
		{"EdDSA", &p256.PublicKey, false},
		{"RS256", &p256.PublicKey, false},
		{"HS256", []byte("secret"), false},
		{"none", &p256.PublicKey, false},
		{"EdDSA", ed25519.PublicKey(edPub[:16]), false},
		{"ES256", nil, false},
	} {
		if got := AlgFits(tc.alg, tc.key); got != tc.want {
			t.Errorf("AlgFits(%s, %s) = %v, want %v", tc.alg, KeyDescription(tc.key), got, tc.want)
		}
		err := CheckAlgKey(tc.alg, tc.key)
		if (err == nil) != tc.want || (err != nil && !errors.Is(err, autherr.ErrUnsupportedAlg)) {
			t.Errorf("CheckAlgKey(%s, %s) = %v", tc.alg, KeyDescription(tc.key), err)
		}
	}
}

func TestAllowLists(t *testing.T) {
	for _, a := range DefaultAllowedAlgs() {
		if !Supported(a) {
			t.Errorf("default %q is not supported", a)
		}
	}
	for _, a := range []string{"HS256", "none", "", "es256"} {
		if Supported(a) {
			t.Errorf("%q is supported", a)
		}
	}
	// The lists are copies: a caller cannot change what everyone else accepts.
	DefaultAllowedAlgs()[0] = "HS256"
	SupportedAlgs()[0] = "HS256"
	if Supported("HS256") || DefaultAllowedAlgs()[0] != "ES256" {
		t.Fatal("allow-list changed through a returned slice")
	}
}

func TestKeyDescription(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		key  any
		want string
	}{
		{&p256.PublicKey, "ECDSA P-256 key"}, {p256, "ECDSA P-256 key"}, {edPub, "Ed25519 key"},
		{&rsa2048.PublicKey, "2048-bit RSA key"}, {rsa2048, "2048-bit RSA key"}, {&rsa.PublicKey{}, "RSA key"},
		{[]byte("k"), "symmetric key"}, {42, "int"},
	} {
		if got := KeyDescription(tc.key); got != tc.want {
			t.Errorf("KeyDescription(%T) = %q, want %q", tc.key, got, tc.want)
		}
	}
}
