package wpt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// This file signs and verifies the compact JWS of a WPT directly with the standard library. WPTs are made and
// checked once per request, and go-jose's general-purpose JWS code costs about as much again as an Ed25519
// verification (it decodes the protected header with its reflection-based JSON twice and re-encodes the payload
// before verifying). A WPT needs far less: one known alg (equal to cnf.jwk.alg, so there is no key or algorithm
// negotiation), no unprotected header, no crit, no b64. Everything else — WITs, JWKs, the Issuer — goes through
// go-jose, and tests check this code against go-jose in both directions.

var b64 = base64.RawURLEncoding.Strict()

// jwsHeader is the part of a WPT's protected header that is acted on. Other members (kid, jwk, x5c...) are ignored:
// the key comes from the WIT, never from the WPT.
type jwsHeader struct {
	Alg  string         `json:"alg"`
	Typ  string         `json:"typ"`
	Crit jsontext.Value `json:"crit,omitzero"`
	B64  jsontext.Value `json:"b64,omitzero"`
}

// verifyCompact checks that token is a compact JWS whose protected header names alg and whose signature verifies
// with key, and returns its header and payload. The caller has already checked that alg fits key.
func verifyCompact(token, alg string, key crypto.PublicKey) (*jwsHeader, []byte, error) {
	dot1 := strings.IndexByte(token, '.')
	dot2 := dot1 + 1 + strings.IndexByte(token[dot1+1:], '.')
	if dot1 < 0 || dot2 <= dot1 || strings.IndexByte(token[dot2+1:], '.') >= 0 {
		return nil, nil, fmt.Errorf("wpt: %w: WPT is not a compact JWS (three dot-separated parts)", ErrMalformed)
	}
	rawHdr, err := b64.DecodeString(token[:dot1])
	if err != nil {
		return nil, nil, fmt.Errorf("wpt: %w: WPT header is not base64url: %v", ErrMalformed, err)
	}
	var hdr jwsHeader
	if err := json.Unmarshal(rawHdr, &hdr); err != nil {
		return nil, nil, fmt.Errorf("wpt: %w: WPT header: %v", ErrMalformed, err)
	}
	switch {
	case hdr.Alg != alg && !isSupported(hdr.Alg):
		return nil, nil, fmt.Errorf("wpt: %w: WPT alg %q is not an accepted asymmetric algorithm", ErrUnsupportedAlg, hdr.Alg)
	case hdr.Alg != alg:
		return nil, nil, fmt.Errorf("wpt: %w: WPT alg %q is not the WIT's cnf.jwk alg %q", ErrUnsupportedAlg, hdr.Alg, alg)
	case len(hdr.Crit) != 0 || len(hdr.B64) != 0:
		return nil, nil, fmt.Errorf("wpt: %w: WPT header has crit or b64, which WPTs do not use", ErrMalformed)
	}
	sig, err := b64.DecodeString(token[dot2+1:])
	if err != nil {
		return nil, nil, fmt.Errorf("wpt: %w: WPT signature is not base64url: %v", ErrMalformed, err)
	}
	if !verifySig(alg, key, []byte(token[:dot2]), sig) {
		return nil, nil, fmt.Errorf("wpt: %w: WPT signature does not verify with the WIT's cnf.jwk", ErrBadSignature)
	}
	payload, err := b64.DecodeString(token[dot1+1 : dot2])
	if err != nil {
		return nil, nil, fmt.Errorf("wpt: %w: WPT payload is not base64url: %v", ErrMalformed, err)
	}
	return &hdr, payload, nil
}

// algHash is the digest of an ES*, RS* or PS* algorithm.
func algHash(alg string) crypto.Hash {
	switch alg[2:] {
	case "256":
		return crypto.SHA256
	case "384":
		return crypto.SHA384
	default:
		return crypto.SHA512
	}
}

// verifySig verifies a JWS signature (RFC 7518 §3) over input.
func verifySig(alg string, key crypto.PublicKey, input, sig []byte) bool {
	if checkAlgKey(alg, key) != nil {
		return false
	}
	switch k := key.(type) {
	case ed25519.PublicKey:
		return alg == "EdDSA" && ed25519.Verify(k, input, sig)
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		h := algHash(alg).New()
		h.Write(input)
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, h.Sum(nil), r, s)
	case *rsa.PublicKey:
		hash := algHash(alg)
		h := hash.New()
		h.Write(input)
		if alg[0] == 'P' {
			return rsa.VerifyPSS(k, hash, h.Sum(nil), sig, nil) == nil
		}
		return rsa.VerifyPKCS1v15(k, hash, h.Sum(nil), sig) == nil
	}
	return false
}

// compactSigner makes compact JWSs with a fixed protected header.
type compactSigner struct {
	alg     string
	key     crypto.Signer
	prefix  string // base64url(protected header) + "."
	ecdsaSz int    // bytes of r and of s, for ES*
}

func newCompactSigner(alg, typ string, key crypto.Signer) (*compactSigner, error) {
	hdr, err := json.Marshal(jwsHeader{Alg: alg, Typ: typ})
	if err != nil {
		return nil, err
	}
	c := &compactSigner{alg: alg, key: key, prefix: b64.EncodeToString(hdr) + "."}
	if k, ok := key.Public().(*ecdsa.PublicKey); ok {
		c.ecdsaSz = (k.Curve.Params().BitSize + 7) / 8
	}
	return c, nil
}

// sign returns the compact JWS of payload.
func (c *compactSigner) sign(payload []byte) (string, error) {
	n := len(c.prefix) + b64.EncodedLen(len(payload))
	buf := make([]byte, 0, n+1+b64.EncodedLen(2*66+512)) // room for the largest signature
	buf = append(buf, c.prefix...)
	buf = b64.AppendEncode(buf, payload)
	sig, err := c.rawSign(buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

// rawSign signs input as alg requires, through crypto.Signer so that hardware-held keys work too.
func (c *compactSigner) rawSign(input []byte) ([]byte, error) {
	if c.alg == "EdDSA" {
		return c.key.Sign(rand.Reader, input, crypto.Hash(0))
	}
	hash := algHash(c.alg)
	h := hash.New()
	h.Write(input)
	digest := h.Sum(nil)
	switch c.alg[0] {
	case 'P':
		return c.key.Sign(rand.Reader, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: hash})
	case 'R':
		return c.key.Sign(rand.Reader, digest, hash)
	}
	der, err := c.key.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, err
	}
	// crypto.Signer returns ECDSA signatures in ASN.1; JWS wants fixed-size r || s.
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
		return nil, errors.New("wpt: signer returned a malformed ECDSA signature")
	}
	size := c.ecdsaSz
	if rs.R.BitLen() > 8*size || rs.S.BitLen() > 8*size {
		return nil, errors.New("wpt: signer returned an ECDSA signature too large for its curve")
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}
