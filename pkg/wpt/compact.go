package wpt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/agentauth/agentauth/internal/ecdsasig"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/go-jose/go-jose/v4"
)

// A WPT has the same protected header on every request of a workload: only the payload changes. The two halves of
// this file use that to keep go-jose's header and JSON work off the per-request path without ever deciding on a
// header themselves.
//
// Egress: compactSigner takes the header segment from a JWS go-jose made for the key (so it is go-jose's bytes) and
// then builds header.payload.signature with crypto/ecdsa or crypto/ed25519 directly, ECDSA signatures as the
// fixed-size big-endian r||s of RFC 7518 §3.4, as go-jose does. TestCompactSignerMatchesGoJose holds the output
// byte-identical to go-jose's for the same claims, key and random source.
//
// Ingress: each verified WIT remembers the exact header segment of the last WPT whose JWS went through go-jose's full
// checks (parseCompact, the cnf.jwk alg, the signature, typ) with its cnf.jwk. A WPT with that very segment only
// differs in payload and signature, so verifyFast checks the signature over the bytes as sent and hands the payload
// on; any other header, or a segment that is not strict base64url, goes down the full path. FuzzProofFastPath holds
// that both paths answer every input alike, down to the refusal reason.

// compactSigner signs compact JWSs under one fixed protected header with one key.
type compactSigner struct {
	header string // the base64url protected header segment, as go-jose serializes it
	sign   func(input []byte) ([]byte, error)
}

// newCompactSigner returns a compactSigner for key under alg and the header s produces, or nil when key is of a kind
// only go-jose signs here (RSA, opaque crypto.Signers such as hardware keys). s must sign with key under alg.
func newCompactSigner(s jose.Signer, key crypto.Signer, alg string) (*compactSigner, error) {
	var sign func([]byte) ([]byte, error)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		h, ok := ecdsaHash(alg)
		if !ok {
			return nil, nil
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sign = func(input []byte) ([]byte, error) {
			// ecdsa.Sign is this with r and s parsed into big.Ints: the same signature from the same randomness.
			der, err := ecdsa.SignASN1(rand.Reader, k, digest(h, input))
			if err != nil {
				return nil, err
			}
			sig, ok := ecdsasig.AppendRaw(make([]byte, 0, 2*size), der, size)
			if !ok {
				return nil, fmt.Errorf("wpt: crypto/ecdsa returned a signature that is not DER")
			}
			return sig, nil
		}
	case ed25519.PrivateKey:
		if alg != string(jose.EdDSA) {
			return nil, nil
		}
		sign = func(input []byte) ([]byte, error) { return ed25519.Sign(k, input), nil }
	default:
		return nil, nil
	}
	jws, err := s.Sign([]byte("{}"))
	if err != nil {
		return nil, fmt.Errorf("wpt: signing a sample for the header: %w", err)
	}
	sample, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("wpt: encoding a sample for the header: %w", err)
	}
	cs := &compactSigner{header: sample[:strings.IndexByte(sample, '.')], sign: sign}
	// Once, so that a key go-jose would sign differently fails here rather than at the receiver.
	check, err := cs.compact([]byte("{}"))
	if err != nil {
		return nil, err
	}
	parsed, err := jose.ParseSignedCompact(check, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return nil, fmt.Errorf("wpt: direct signer self-check: %w", err)
	}
	if _, err := parsed.Verify(key.Public()); err != nil {
		return nil, fmt.Errorf("wpt: direct signer self-check: %w", err)
	}
	return cs, nil
}

// compact returns header.base64url(payload).base64url(signature over the first two).
func (cs *compactSigner) compact(payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(cs.header)+2+enc.EncodedLen(len(payload))+enc.EncodedLen(2*66))
	buf = append(buf, cs.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig, err := cs.sign(buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// digest is the hash h (SHA-256, -384 or -512) of msg.
func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// ecdsaHash is the hash of an ES* alg.
func ecdsaHash(alg string) (crypto.Hash, bool) {
	switch jose.SignatureAlgorithm(alg) {
	case jose.ES256:
		return crypto.SHA256, true
	case jose.ES384:
		return crypto.SHA384, true
	case jose.ES512:
		return crypto.SHA512, true
	}
	return 0, false
}

// rememberProofHeader records the header segment of token, a WPT whose JWS has just passed the full checks with
// vw's cnf.jwk, for verifyFast.
func (vw *verifiedWIT) rememberProofHeader(token string) {
	seg := token[:strings.IndexByte(token, '.')]
	if old := vw.proofHeader.Load(); old != nil && *old == seg {
		return
	}
	seg = strings.Clone(seg) // not the whole token
	vw.proofHeader.Store(&seg)
}

// verifyFast verifies token, a WPT, when its header segment is the one remembered for vw: handled reports whether it
// did. It then returns the payload, or autherr.ErrBadSignature when the signature does not verify — the answer go-jose gives
// for the same bytes. When handled is false nothing was decided and the full path must run.
func (vw *verifiedWIT) verifyFast(token string) (payload []byte, handled bool, err error) {
	hdr := vw.proofHeader.Load()
	if hdr == nil || len(token) <= len(*hdr) || token[len(*hdr)] != '.' || token[:len(*hdr)] != *hdr {
		return nil, false, nil
	}
	pseg, sseg, ok := strings.Cut(token[len(*hdr)+1:], ".")
	if !ok || strings.IndexByte(sseg, '.') >= 0 || strings.ContainsAny(pseg, "\r\n") || strings.ContainsAny(sseg, "\r\n") {
		return nil, false, nil
	}
	// Strict decoding refuses what the full path's canonical-base64url check refuses, and more (padding): those go
	// down the full path, which names the fault. It skips CR and LF, which is why they are sent there too.
	payload, err = b64Strict.DecodeString(pseg)
	if err != nil {
		return nil, false, nil
	}
	sig, err := b64Strict.DecodeString(sseg)
	if err != nil {
		return nil, false, nil
	}
	input := token[:len(*hdr)+1+len(pseg)]
	var good bool
	switch k := vw.cnfKey.(type) {
	case *ecdsa.PublicKey:
		h, ok := ecdsaHash(string(vw.cnfAlgs[0]))
		size := (k.Curve.Params().BitSize + 7) / 8
		if !ok || len(sig) != 2*size {
			return nil, false, nil
		}
		// As go-jose verifies it (ecdsa.Verify with r and s as big.Ints), so both paths agree on every signature.
		good = ecdsasig.VerifyMessage(k, h, []byte(input), sig)
	case ed25519.PublicKey:
		if vw.cnfAlgs[0] != jose.EdDSA {
			return nil, false, nil
		}
		good = ed25519.Verify(k, []byte(input), sig)
	default:
		return nil, false, nil
	}
	if !good {
		return nil, true, fmt.Errorf("wpt: %w: WPT signature does not verify with the WIT's cnf.jwk", autherr.ErrBadSignature)
	}
	return payload, true, nil
}
