package httpsig

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Content-Digest algorithm keys (RFC 9530 Section 5, status "Active").
const (
	DigestSHA256 = "sha-256"
	DigestSHA512 = "sha-512"
)

// MaxFieldBytes caps the combined value of each of Signature-Input, Signature and Content-Digest. Larger values are
// refused with autherr.ErrTooLarge before they are parsed.
const MaxFieldBytes = 8 << 10

// maxDigestMembers caps the number of digests one Content-Digest field may carry.
const maxDigestMembers = 8

// digestOf returns the digest of body under a Content-Digest algorithm, in a fixed-size array (no hash.Hash per
// call); ok is false for an algorithm this package does not compute.
func digestOf(alg string, body []byte) (sum [sha512.Size]byte, n int, ok bool) {
	switch alg {
	case DigestSHA256:
		d := sha256.Sum256(body)
		copy(sum[:], d[:])
		return sum, sha256.Size, true
	case DigestSHA512:
		return sha512.Sum512(body), sha512.Size, true
	}
	return sum, 0, false
}

// ContentDigest returns a Content-Digest field value for body with the given algorithms (DigestSHA256 when none),
// e.g. `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`. The digest is over the content as sent, i.e. after
// any content coding.
func ContentDigest(body []byte, algs ...string) (string, error) {
	if len(algs) == 0 {
		algs = []string{DigestSHA256}
	}
	var buf [128]byte // a sha-512 member is 98 bytes
	b := buf[:0]
	for i, alg := range algs {
		sum, n, ok := digestOf(alg, body)
		if !ok {
			return "", fmt.Errorf("httpsig: %w: content digest algorithm %q (want %s or %s)",
				autherr.ErrUnsupportedAlg, alg, DigestSHA256, DigestSHA512)
		}
		if i > 0 {
			b = append(b, ", "...)
		}
		// The Dictionary serialization of one Byte Sequence member (RFC 8941 Section 4.1.2).
		b = append(b, alg...)
		b = append(b, "=:"...)
		b = base64.StdEncoding.AppendEncode(b, sum[:n])
		b = append(b, ':')
	}
	return string(b), nil
}

// VerifyContentDigest checks the Content-Digest field lines against body (RFC 9530). Digests with algorithms this
// package does not know (including the deprecated md5, sha, crc32c...) are ignored, but at least one sha-256 or
// sha-512 digest is required, and every one present must match.
//
// Errors: autherr.ErrMalformed when the field is absent or does not parse, autherr.ErrTooLarge over MaxFieldBytes or more than 8
// digests, autherr.ErrUnsupportedAlg when no supported algorithm is present, and autherr.ErrMismatch when a digest differs from
// the body (the digest is what the signature covers, so a differing body is a broken binding rather than a bad
// signature).
func VerifyContentDigest(fieldLines []string, body []byte) error {
	if isSHA256DigestOf(fieldLines, body) {
		return nil
	}
	return verifyContentDigest(fieldLines, body)
}

// isSHA256DigestOf reports whether fieldLines is the one line this package's signers write, a single sha-256
// digest, and it is body's: verifyContentDigest would parse it to that one member and accept it, without the
// parse. Anything else goes to verifyContentDigest, which decides every refusal (FuzzContentDigestFastPath).
func isSHA256DigestOf(fieldLines []string, body []byte) bool {
	const prefix, encLen = DigestSHA256 + "=:", 44 // base64 of 32 bytes, padded
	if len(fieldLines) != 1 {
		return false
	}
	l := fieldLines[0]
	if len(l) != len(prefix)+encLen+1 || l[:len(prefix)] != prefix || l[len(l)-1] != ':' {
		return false
	}
	sum := sha256.Sum256(body)
	var enc [encLen]byte
	base64.StdEncoding.Encode(enc[:], sum[:])
	return subtle.ConstantTimeCompare(enc[:], []byte(l[len(prefix):len(prefix)+encLen])) == 1
}

func verifyContentDigest(fieldLines []string, body []byte) error {
	if len(fieldLines) == 0 {
		return fmt.Errorf("httpsig: %w: no Content-Digest field", autherr.ErrMalformed)
	}
	value, err := combineSFLines("Content-Digest", fieldLines)
	if err != nil {
		return err
	}
	d, err := parseSFDictionary(value)
	if err != nil {
		return sfError("Content-Digest", err)
	}
	if d.dup {
		return fmt.Errorf("httpsig: %w: Content-Digest names an algorithm twice", autherr.ErrMalformed)
	}
	if len(d.members) > maxDigestMembers {
		return fmt.Errorf("httpsig: %w: Content-Digest has %d members, limit %d",
			autherr.ErrTooLarge, len(d.members), maxDigestMembers)
	}
	checked := 0
	for _, m := range d.members {
		if m.inner || m.val.kind != sfBytes {
			return fmt.Errorf("httpsig: %w: Content-Digest member %q is not a byte sequence", autherr.ErrMalformed, m.key)
		}
		sum, n, ok := digestOf(m.key, body)
		if !ok {
			continue
		}
		if subtle.ConstantTimeCompare(sum[:n], m.val.bin) != 1 {
			return fmt.Errorf("httpsig: %w: Content-Digest %s does not match the %d-byte body",
				autherr.ErrMismatch, m.key, len(body))
		}
		checked++
	}
	if checked == 0 {
		return fmt.Errorf("httpsig: %w: Content-Digest has no %s or %s digest",
			autherr.ErrUnsupportedAlg, DigestSHA256, DigestSHA512)
	}
	return nil
}

// combineSFLines joins the lines of a structured field (RFC 8941 Section 4.2) after checking the size cap.
func combineSFLines(name string, lines []string) (string, error) {
	n := 0
	for _, l := range lines {
		n += len(l) + 2
	}
	if n > MaxFieldBytes+2 {
		return "", fmt.Errorf("httpsig: %w: %s is %d bytes, limit %d", autherr.ErrTooLarge, name, n-2, MaxFieldBytes)
	}
	return strings.Join(lines, ", "), nil
}
