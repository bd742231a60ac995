package issuer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"

	ijose "github.com/agentauth/agentauth/internal/jose"
	"github.com/agentauth/agentauth/pkg/autherr"

	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/go-jose/go-jose/v4"
)

// Size caps on what a client sends; real CSRs and public keys are far smaller.
const (
	MaxCSRSize    = 16 << 10
	MaxWITKeySize = 8 << 10
)

// checkWorkloadKey accepts the key types an X.509-SVID may carry here: ECDSA P-256/P-384, Ed25519, RSA ≥ 2048.
func checkWorkloadKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return nil
		}
	case *rsa.PublicKey:
		if k.N != nil && k.N.BitLen() >= ijose.MinRSABits {
			return nil
		}
	}
	return fmt.Errorf("issuer: %w: workload key %s is not ECDSA P-256/P-384, Ed25519 or RSA ≥ %d bits", autherr.ErrUnsupportedAlg, ijose.KeyDescription(pub), ijose.MinRSABits)
}

// checkWITAlg reports whether alg is one a WIT may bind at all (wire.WIMSEWITAlgs) and fits pub. Whether this
// trust domain certifies it is the CA's policy (CA.checkWITPolicy).
func checkWITAlg(alg string, pub crypto.PublicKey) error {
	if !slices.Contains(wire.WIMSEWITAlgs, alg) {
		return fmt.Errorf("issuer: %w: WIT key alg %q is not one a WIT may bind (%v)", autherr.ErrUnsupportedAlg, alg, wire.WIMSEWITAlgs)
	}
	if err := ijose.CheckAlgKey(alg, pub); err != nil {
		return fmt.Errorf("issuer: WIT key: %w", err)
	}
	return nil
}

// ParseCSR parses a DER PKCS #10 request from a client and checks its self-signature, which proves the client
// holds the private key. Only the public key is used: names in the request are ignored, because the identity
// comes from attestation, never from what the client asks for.
func ParseCSR(der []byte) (crypto.PublicKey, error) {
	switch {
	case len(der) == 0:
		return nil, fmt.Errorf("issuer: %w: no CSR", autherr.ErrMalformed)
	case len(der) > MaxCSRSize:
		return nil, fmt.Errorf("issuer: %w: CSR is %d bytes, over %d", autherr.ErrTooLarge, len(der), MaxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w: CSR: %v", autherr.ErrMalformed, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("issuer: %w: CSR self-signature: %v", autherr.ErrBadSignature, err)
	}
	if err := checkWorkloadKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr.PublicKey, nil
}

// ParseWITKey parses the public key a client wants its WIT bound to: a JWK (JSON object) or a DER
// SubjectPublicKeyInfo. alg is the algorithm the client will sign its proofs with; it must be one a WIT may bind
// (wire.WIMSEWITAlgs) that fits the key, and equal the JWK's own "alg" when it has one; whether the trust domain
// certifies it is checked at issuance. A JWK holding private or symmetric key material is refused.
func ParseWITKey(data []byte, alg string) (crypto.PublicKey, error) {
	switch {
	case len(data) == 0:
		return nil, fmt.Errorf("issuer: %w: no WIT public key", autherr.ErrMalformed)
	case len(data) > MaxWITKeySize:
		return nil, fmt.Errorf("issuer: %w: WIT public key is %d bytes, over %d", autherr.ErrTooLarge, len(data), MaxWITKeySize)
	}
	var pub crypto.PublicKey
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("issuer: %w: WIT public key JWK: %v", autherr.ErrMalformed, err)
		}
		if !jwk.Valid() || !jwk.IsPublic() {
			return nil, fmt.Errorf("issuer: %w: WIT public key JWK must be a valid public key, without private or symmetric key material", autherr.ErrMalformed)
		}
		if jwk.Algorithm != "" && jwk.Algorithm != alg {
			return nil, fmt.Errorf("issuer: %w: WIT public key JWK says alg %q, request says %q", autherr.ErrUnsupportedAlg, jwk.Algorithm, alg)
		}
		pub = jwk.Key
	} else {
		k, err := x509.ParsePKIXPublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("issuer: %w: WIT public key is neither a JWK nor a DER SubjectPublicKeyInfo: %v", autherr.ErrMalformed, err)
		}
		pub = k
	}
	if err := checkWITAlg(alg, pub); err != nil {
		return nil, err
	}
	return pub, nil
}
