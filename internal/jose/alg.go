package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"slices"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// supportedAlgs are the asymmetric JWS algorithms the project can verify. Symmetric (HS*) and "none" are
// deliberately absent: a shared secret proves nothing about who signed, and a WIT binds a public key.
var supportedAlgs = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

// defaultAllowedAlgs is the allow-list when a configuration names none. ES256 is the WIMSE mandatory-to-implement
// algorithm; EdDSA is what the drafts' examples use for workload keys; ES384 and PS256 are common issuer choices.
// RS256 is included because SPIRE signs with RS256 when its JWT key is RSA, and the WIT-SVID profile allows it;
// Go verifies PKCS#1 v1.5 signatures strictly, so it carries no known forgery risk.
var defaultAllowedAlgs = []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"}

// MinRSABits is the smallest RSA modulus accepted for signing or verifying.
const MinRSABits = 2048

// SupportedAlgs returns the asymmetric JWS algorithms that can be verified (what go-jose's parsers are given).
func SupportedAlgs() []jose.SignatureAlgorithm { return slices.Clone(supportedAlgs) }

// DefaultAllowedAlgs returns the algorithms accepted when a configuration lists none.
func DefaultAllowedAlgs() []string { return slices.Clone(defaultAllowedAlgs) }

// Supported reports whether alg is one of SupportedAlgs.
func Supported(alg string) bool { return slices.Contains(supportedAlgs, jose.SignatureAlgorithm(alg)) }

// AlgFits reports whether key can verify (or make) signatures under the JWS algorithm alg: ES256 needs P-256,
// ES384 P-384, ES512 P-521, EdDSA Ed25519, RS*/PS* an RSA key of at least MinRSABits. Only public keys fit:
// verifiers type-assert what passed.
func AlgFits(alg string, key any) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA" && len(k) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return k.N != nil && k.N.BitLen() >= MinRSABits
		}
	}
	return false
}

// CheckAlgKey is AlgFits as an error wrapping autherr.ErrUnsupportedAlg that says what the key is.
func CheckAlgKey(alg string, key crypto.PublicKey) error {
	if !AlgFits(alg, key) {
		return fmt.Errorf("%w: alg %q does not fit a %s", autherr.ErrUnsupportedAlg, alg, KeyDescription(key))
	}
	return nil
}

// Asymmetric reports whether key is an ECDSA, Ed25519 or RSA key (public or private): a key some supported
// algorithm could use.
func Asymmetric(key any) bool {
	switch key.(type) {
	case *ecdsa.PublicKey, *ecdsa.PrivateKey, ed25519.PublicKey, ed25519.PrivateKey, *rsa.PublicKey, *rsa.PrivateKey:
		return true
	}
	return false
}

// KeyDescription describes key for log and error messages ("ECDSA P-256 key", "3072-bit RSA key"), never
// showing key material.
func KeyDescription(key any) string {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name + " key"
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name + " key"
	case ed25519.PublicKey, ed25519.PrivateKey:
		return "Ed25519 key"
	case *rsa.PublicKey:
		return rsaDescription(k)
	case *rsa.PrivateKey:
		return rsaDescription(&k.PublicKey)
	case []byte:
		return "symmetric key"
	default:
		return fmt.Sprintf("%T", key)
	}
}

func rsaDescription(k *rsa.PublicKey) string {
	if k.N == nil {
		return "RSA key"
	}
	return fmt.Sprintf("%d-bit RSA key", k.N.BitLen())
}
