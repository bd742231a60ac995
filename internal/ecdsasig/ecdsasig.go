// Package ecdsasig converts ECDSA signatures between the ASN.1 DER form that crypto/ecdsa and crypto.Signer use and
// the fixed-size big-endian r‖s of JWS (RFC 7518 Section 3.4) and HTTP message signatures (RFC 9421 Section
// 3.3.4), without the allocations of math/big and encoding/asn1: the sidecar converts one on every signed or
// verified request. Signing and verifying stay crypto/ecdsa's; this only moves bytes.
package ecdsasig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// maxSize is the largest r or s this package handles: P-521's 66 bytes.
const maxSize = 66

// AppendRaw appends to dst the r‖s form of der, an ASN.1 ECDSA-Sig-Value (a DER SEQUENCE of two INTEGERs r and s),
// with r and s in size bytes each. ok is false when der is not strict DER of exactly that, or r or s is not
// positive or does not fit in size bytes.
func AppendRaw(dst, der []byte, size int) (out []byte, ok bool) {
	input := cryptobyte.String(der)
	var inner cryptobyte.String
	var r, s []byte
	if !input.ReadASN1(&inner, asn1.SEQUENCE) || !input.Empty() ||
		!inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return dst, false
	}
	// ReadASN1Integer refuses negative values and drops the sign byte: r and s are magnitudes, 0 as one zero byte.
	if !positive(r) || !positive(s) || len(r) > size || len(s) > size {
		return dst, false
	}
	n := len(dst)
	dst = append(dst, make([]byte, 2*size)...)
	copy(dst[n+size-len(r):n+size], r)
	copy(dst[n+2*size-len(s):], s)
	return dst, true
}

func positive(b []byte) bool { return len(b) > 1 || b[0] != 0 }

// AppendDER appends to dst the DER ECDSA-Sig-Value of raw, r‖s with halves of equal size (at most 66 bytes): the
// encoding crypto/ecdsa itself gives r and s (minimal, with a zero byte before a set high bit). ok is false when
// raw cannot be split so, or r or s is zero, which no valid signature has.
func AppendDER(dst, raw []byte) (out []byte, ok bool) {
	if len(raw) == 0 || len(raw)%2 != 0 || len(raw) > 2*maxSize {
		return dst, false
	}
	r, s := trimZeros(raw[:len(raw)/2]), trimZeros(raw[len(raw)/2:])
	if len(r) == 0 || len(s) == 0 {
		return dst, false
	}
	body := intLen(r) + intLen(s)
	dst = append(dst, 0x30) // SEQUENCE
	if body >= 0x80 {
		dst = append(dst, 0x81) // one length byte follows: body is at most 2*(2+67)
	}
	dst = append(dst, byte(body))
	dst = appendInt(dst, r)
	return appendInt(dst, s), true
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// intLen is the length of the DER INTEGER of the positive magnitude b (no leading zeros).
func intLen(b []byte) int {
	n := len(b)
	if b[0]&0x80 != 0 {
		n++
	}
	return 2 + n
}

func appendInt(dst, b []byte) []byte {
	n := len(b)
	if b[0]&0x80 != 0 {
		n++
	}
	dst = append(dst, 0x02, byte(n)) // INTEGER, at most 67 bytes
	if b[0]&0x80 != 0 {
		dst = append(dst, 0)
	}
	return append(dst, b...)
}

// VerifyMessage reports whether raw, r‖s, is a valid signature by pub of msg hashed with h (SHA-256, SHA-384 or
// SHA-512; any other is refused). It is what ecdsa.Verify does with r and s as big.Ints (refuse a zero, encode,
// ecdsa.VerifyASN1), with the digest and the encoding in one buffer: ecdsa.VerifyASN1 keeps both on the heap.
func VerifyMessage(pub *ecdsa.PublicKey, h crypto.Hash, msg, raw []byte) bool {
	var buf struct {
		digest [sha512.Size]byte
		der    [2*(2+1+maxSize) + 3]byte
	}
	var digest []byte
	switch h {
	case crypto.SHA256:
		*(*[sha256.Size]byte)(buf.digest[:]) = sha256.Sum256(msg)
		digest = buf.digest[:sha256.Size]
	case crypto.SHA384:
		*(*[sha512.Size384]byte)(buf.digest[:]) = sha512.Sum384(msg)
		digest = buf.digest[:sha512.Size384]
	case crypto.SHA512:
		buf.digest = sha512.Sum512(msg)
		digest = buf.digest[:]
	default:
		return false
	}
	der, ok := AppendDER(buf.der[:0], raw)
	return ok && ecdsa.VerifyASN1(pub, digest, der)
}
