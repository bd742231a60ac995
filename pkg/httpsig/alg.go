package httpsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"

	"github.com/agentauth/agentauth/internal/ecdsasig"
	ijose "github.com/agentauth/agentauth/internal/jose"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Algorithm names a signature algorithm: an RFC 9421 registered name, or a JWS algorithm name (RFC 9421 Section
// 3.3.7) for the JWS algorithms that have no registered equivalent (ES512, PS256, PS384, RS384, RS512).
// HMAC and "none" are never accepted.
type Algorithm string

// RFC 9421 Section 3.3 algorithms this package signs and verifies.
const (
	AlgEd25519         Algorithm = "ed25519"
	AlgECDSAP256SHA256 Algorithm = "ecdsa-p256-sha256"
	AlgECDSAP384SHA384 Algorithm = "ecdsa-p384-sha384"
	AlgRSAPSSSHA512    Algorithm = "rsa-pss-sha512"
	AlgRSAV15SHA256    Algorithm = "rsa-v1_5-sha256"
)

type algKind uint8

const (
	kindEd25519 algKind = iota + 1
	kindECDSA
	kindRSAPSS
	kindRSAPKCS1
)

type algSpec struct {
	jws  string // the JWS name of the same algorithm, whose key fit internal/jose checks
	kind algKind
	hash crypto.Hash
	size int // ECDSA: bytes of r and of s
}

func (a Algorithm) spec() (algSpec, error) {
	switch a {
	case AlgEd25519, "EdDSA":
		return algSpec{jws: "EdDSA", kind: kindEd25519}, nil
	case AlgECDSAP256SHA256, "ES256":
		return algSpec{jws: "ES256", kind: kindECDSA, hash: crypto.SHA256, size: 32}, nil
	case AlgECDSAP384SHA384, "ES384":
		return algSpec{jws: "ES384", kind: kindECDSA, hash: crypto.SHA384, size: 48}, nil
	case "ES512":
		return algSpec{jws: "ES512", kind: kindECDSA, hash: crypto.SHA512, size: 66}, nil
	case AlgRSAPSSSHA512, "PS512":
		return algSpec{jws: "PS512", kind: kindRSAPSS, hash: crypto.SHA512}, nil
	case "PS256":
		return algSpec{jws: "PS256", kind: kindRSAPSS, hash: crypto.SHA256}, nil
	case "PS384":
		return algSpec{jws: "PS384", kind: kindRSAPSS, hash: crypto.SHA384}, nil
	case AlgRSAV15SHA256, "RS256":
		return algSpec{jws: "RS256", kind: kindRSAPKCS1, hash: crypto.SHA256}, nil
	case "RS384":
		return algSpec{jws: "RS384", kind: kindRSAPKCS1, hash: crypto.SHA384}, nil
	case "RS512":
		return algSpec{jws: "RS512", kind: kindRSAPKCS1, hash: crypto.SHA512}, nil
	}
	return algSpec{}, fmt.Errorf("httpsig: %w: signature algorithm %q", autherr.ErrUnsupportedAlg, string(a))
}

// AlgorithmFromJWS maps a JWS "alg" (a WIT's cnf.jwk.alg) to the algorithm the WIMSE profile signs with: EdDSA,
// ES256, ES384, PS512 and RS256 become their RFC 9421 names; ES512, PS256, PS384, RS384 and RS512 are computed per
// JWA under their JWS names. "none", HS* and anything else fail with autherr.ErrUnsupportedAlg.
func AlgorithmFromJWS(alg string) (Algorithm, error) {
	switch alg {
	case "EdDSA":
		return AlgEd25519, nil
	case "ES256":
		return AlgECDSAP256SHA256, nil
	case "ES384":
		return AlgECDSAP384SHA384, nil
	case "PS512":
		return AlgRSAPSSSHA512, nil
	case "RS256":
		return AlgRSAV15SHA256, nil
	case "ES512", "PS256", "PS384", "RS384", "RS512":
		return Algorithm(alg), nil
	}
	return "", fmt.Errorf("httpsig: %w: JWS algorithm %q is not an asymmetric signature algorithm this package supports",
		autherr.ErrUnsupportedAlg, alg)
}

// digest hashes msg with h, one of the hashes algSpec names, into d (no hash.Hash per call) and returns it.
func digest(h crypto.Hash, msg []byte, d *[sha512.Size]byte) []byte {
	switch h {
	case crypto.SHA256:
		*(*[sha256.Size]byte)(d[:]) = sha256.Sum256(msg)
		return d[:sha256.Size]
	case crypto.SHA384:
		*(*[sha512.Size384]byte)(d[:]) = sha512.Sum384(msg)
		return d[:sha512.Size384]
	}
	*d = sha512.Sum512(msg)
	return d[:]
}

// Sign signs the signature base with key. ECDSA signatures are returned as fixed-size r‖s, as RFC 9421 and JWS
// require. The key's public half must fit the algorithm (curve, RSA size).
func (a Algorithm) Sign(key crypto.Signer, base []byte) ([]byte, error) {
	return a.appendSign(nil, key, base)
}

// appendSign is Sign, appending the signature to dst.
func (a Algorithm) appendSign(dst []byte, key crypto.Signer, base []byte) ([]byte, error) {
	s, err := a.spec()
	if err != nil {
		return dst, err
	}
	if err := s.checkKey(a, key.Public()); err != nil {
		return dst, err
	}
	var sig []byte
	// key.Sign is an interface call, so d escapes: it is declared where it is needed, not for Ed25519.
	switch s.kind {
	case kindEd25519:
		sig, err = key.Sign(rand.Reader, base, crypto.Hash(0))
	case kindECDSA:
		var d [sha512.Size]byte
		der, err := key.Sign(rand.Reader, digest(s.hash, base, &d), s.hash)
		if err != nil {
			return dst, err
		}
		out, ok := ecdsasig.AppendRaw(dst, der, s.size)
		if !ok {
			return dst, fmt.Errorf("httpsig: signer returned a malformed ECDSA signature, or one for another curve")
		}
		return out, nil
	case kindRSAPSS:
		var d [sha512.Size]byte
		sig, err = key.Sign(rand.Reader, digest(s.hash, base, &d), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: s.hash})
	default:
		var d [sha512.Size]byte
		sig, err = key.Sign(rand.Reader, digest(s.hash, base, &d), s.hash)
	}
	if err != nil {
		return dst, err
	}
	if dst == nil {
		return sig, nil
	}
	return append(dst, sig...), nil
}

// Verify checks sig over the signature base with pub. A signature that does not verify is autherr.ErrBadSignature; a key
// that does not fit the algorithm is autherr.ErrUnsupportedAlg.
func (a Algorithm) Verify(pub crypto.PublicKey, base, sig []byte) error {
	s, err := a.spec()
	if err != nil {
		return err
	}
	if err := s.checkKey(a, pub); err != nil {
		return err
	}
	ok := false
	switch s.kind {
	case kindEd25519:
		ok = len(sig) == ed25519.SignatureSize && ed25519.Verify(pub.(ed25519.PublicKey), base, sig)
	case kindECDSA:
		// ecdsa.Verify with r and s as big.Ints, without them.
		ok = len(sig) == 2*s.size && ecdsasig.VerifyMessage(pub.(*ecdsa.PublicKey), s.hash, base, sig)
	case kindRSAPSS:
		var d [sha512.Size]byte
		ok = rsa.VerifyPSS(pub.(*rsa.PublicKey), s.hash, digest(s.hash, base, &d), sig,
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: s.hash}) == nil
	case kindRSAPKCS1:
		var d [sha512.Size]byte
		ok = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), s.hash, digest(s.hash, base, &d), sig) == nil
	}
	if !ok {
		return fmt.Errorf("httpsig: %w: %s signature does not verify", autherr.ErrBadSignature, string(a))
	}
	return nil
}

// checkKey refuses a key that does not fit the algorithm (internal/jose.AlgFits); Verify's type assertions rely
// on it.
func (s algSpec) checkKey(a Algorithm, pub crypto.PublicKey) error {
	if ijose.AlgFits(s.jws, pub) {
		return nil
	}
	if k, ok := pub.(*rsa.PublicKey); ok && k.N != nil && (s.kind == kindRSAPSS || s.kind == kindRSAPKCS1) {
		return fmt.Errorf("httpsig: %w: RSA key of %d bits, need at least %d",
			autherr.ErrUnsupportedAlg, k.N.BitLen(), ijose.MinRSABits)
	}
	return fmt.Errorf("httpsig: %w: a %T key cannot be used with %s", autherr.ErrUnsupportedAlg, pub, string(a))
}
