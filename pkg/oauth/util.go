package oauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/go-json-experiment/json"
)

// hashB64 is base64url(SHA-256(s)) without padding: the form of a WPT tth and of TxnInfo.Hash.
func hashB64(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TokenFingerprint is what may be logged instead of a token: the first 12 hex digits of its SHA-256.
func TokenFingerprint(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// jsonUnmarshal decodes strictly (case-sensitive names, no duplicates).
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// jsonMarshal encodes deterministically (sorted object members), so equal claims give equal bytes.
func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v, json.Deterministic(true)) }

// newTxnID returns a random (version 4) UUID: 122 random bits, unique within the trust domain for all practical
// purposes, in the form the draft's example uses.
func newTxnID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("oauth: txn id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
