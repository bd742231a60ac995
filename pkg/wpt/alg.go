package wpt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// supportedAlgs are the asymmetric JWS algorithms this package can verify. Symmetric (HS*) and "none" are
// deliberately absent: a WIT binds a public key, and a shared secret could not prove possession.
var supportedAlgs = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

// DefaultAllowedAlgs is the algorithm allow-list when VerifierConfig.AllowedAlgs is empty. ES256 is the WIMSE
// mandatory-to-implement algorithm; EdDSA is what the drafts' examples use for workload keys; ES384 and PS256 are
// common issuer choices. RS256 is included because SPIRE signs with RS256 when its JWT key is RSA, and the
// WIT-SVID profile allows it; Go verifies PKCS#1 v1.5 signatures strictly, so it carries no known forgery risk.
var DefaultAllowedAlgs = []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"}

// minRSABits is the smallest RSA modulus accepted for signing or verifying.
const minRSABits = 2048

func isSupported(alg string) bool {
	for _, a := range supportedAlgs {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// CheckAlgKey returns an error wrapping ErrUnsupportedAlg when the JWS algorithm alg cannot be used with key: ES256 needs P-256, ES384
// P-384, ES512 P-521, EdDSA Ed25519, RS*/PS* an RSA key of at least 2048 bits.
func CheckAlgKey(alg string, key crypto.PublicKey) error {
	ok := false
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			ok = k.Curve == elliptic.P256()
		case "ES384":
			ok = k.Curve == elliptic.P384()
		case "ES512":
			ok = k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		ok = alg == "EdDSA" && len(k) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			ok = k.N != nil && k.N.BitLen() >= minRSABits
		}
	}
	if !ok {
		return fmt.Errorf("%w: alg %q does not fit a %s", ErrUnsupportedAlg, alg, keyDesc(key))
	}
	return nil
}

func keyDesc(key crypto.PublicKey) string {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name + " key"
	case ed25519.PublicKey:
		return "Ed25519 key"
	case *rsa.PublicKey:
		if k.N == nil {
			return "RSA key"
		}
		return fmt.Sprintf("%d-bit RSA key", k.N.BitLen())
	case []byte:
		return "symmetric key"
	default:
		return fmt.Sprintf("%T", key)
	}
}

// publicKeyEqual reports whether a and b are the same public key. The same pointer is answered first: a WIT cache
// hit compares the bundle's key with the one that verified the WIT, usually the very same value, and ECDSA's Equal
// allocates. (Interface == is not usable: ed25519.PublicKey is a slice.)
func publicKeyEqual(a, b crypto.PublicKey) bool {
	switch ka := a.(type) {
	case *ecdsa.PublicKey:
		if kb, ok := b.(*ecdsa.PublicKey); ok && ka != nil && ka == kb {
			return true
		}
	case *rsa.PublicKey:
		if kb, ok := b.(*rsa.PublicKey); ok && ka != nil && ka == kb {
			return true
		}
	}
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
