package jose

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Limits on a JWK Set, so whoever answers at a JWKS URL cannot make us allocate without bound.
const (
	MaxKeySetBytes = 1 << 20
	MaxKeySetKeys  = 64
)

// ErrPrivateKey is wrapped (with autherr.ErrMalformed) when a JWK Set holds private key material: a published
// private key is a compromised key, so nothing the set says is trusted.
var ErrPrivateKey = errors.New("JWK Set carries private key material")

// KeySet is the usable signature-verification keys of a parsed JWK Set. It is immutable once parsed.
type KeySet struct {
	// Keys are public, asymmetric, not marked for encryption, and carry no unsupported alg.
	Keys []jose.JSONWebKey
	// Skipped says, one entry per key, why a key of the document was left out ("key 2 (kid "x"): symmetric key").
	Skipped []string
}

// ParseKeySet parses a JWK Set document. A key that is not usable (unknown kty, symmetric, use other than sig,
// an alg that is not a supported asymmetric JWS algorithm) is skipped and named in Skipped, so one exotic key does
// not lock out the rest. The set is refused as a whole when it is over MaxKeySetBytes or MaxKeySetKeys, is not a
// JWK Set, holds any private key (ErrPrivateKey), or has no usable key.
func ParseKeySet(data []byte) (*KeySet, error) {
	if len(data) > MaxKeySetBytes {
		return nil, fmt.Errorf("%w: JWK Set is over %d bytes", autherr.ErrTooLarge, MaxKeySetBytes)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: not a JWK Set: %v", autherr.ErrMalformed, err)
	}
	if len(doc.Keys) > MaxKeySetKeys {
		return nil, fmt.Errorf("%w: JWK Set has %d keys (limit %d)", autherr.ErrTooLarge, len(doc.Keys), MaxKeySetKeys)
	}
	set := &KeySet{}
	for i, raw := range doc.Keys {
		if hasPrivateMember(raw) {
			return nil, fmt.Errorf("%w: %w: key %d", autherr.ErrMalformed, ErrPrivateKey, i)
		}
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			set.Skipped = append(set.Skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		if Asymmetric(key.Key) && !key.IsPublic() {
			return nil, fmt.Errorf("%w: %w: key %d (kid %q)", autherr.ErrMalformed, ErrPrivateKey, i, key.KeyID)
		}
		if why := unusable(key); why != "" {
			set.Skipped = append(set.Skipped, fmt.Sprintf("key %d (kid %q): %s", i, key.KeyID, why))
			continue
		}
		set.Keys = append(set.Keys, key)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%w: no usable signature verification key (RSA, EC or Ed25519, use sig)%s",
			autherr.ErrMalformed, set.skippedSuffix())
	}
	return set, nil
}

// hasPrivateMember reports whether a JWK carries a private member ("d" for EC, OKP and RSA): go-jose reads an
// unknown kty's members not at all, and a private key of a kind we skip must still refuse the set.
func hasPrivateMember(raw json.RawMessage) bool {
	var m struct {
		D json.RawMessage `json:"d"`
	}
	return json.Unmarshal(raw, &m) == nil && len(m.D) > 0 && !bytes.Equal(m.D, []byte("null"))
}

// unusable says why key cannot verify a supported JWS, or "" when it can.
func unusable(key jose.JSONWebKey) string {
	switch {
	case !Asymmetric(key.Key):
		return KeyDescription(key.Key) + ", not an asymmetric signature key"
	case key.Use != "" && key.Use != "sig":
		return fmt.Sprintf("use %q, not sig", key.Use)
	case key.Algorithm != "" && !Supported(key.Algorithm):
		return fmt.Sprintf("alg %q is not supported", key.Algorithm)
	case !key.Valid():
		return "not a valid key"
	}
	return ""
}

func (s *KeySet) skippedSuffix() string {
	if len(s.Skipped) == 0 {
		return ""
	}
	return "; skipped " + strings.Join(s.Skipped, "; ")
}

// ReadKeySet reads a JWK Set from r (at most MaxKeySetBytes) and parses it.
func ReadKeySet(r io.Reader) (*KeySet, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxKeySetBytes+1))
	if err != nil {
		return nil, err
	}
	return ParseKeySet(data)
}

// ReadKeySetFile reads and parses the JWK Set in the file at path.
func ReadKeySetFile(path string) (*KeySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("JWKS file: %w", err)
	}
	defer f.Close()
	set, err := ReadKeySet(f)
	if err != nil {
		return nil, fmt.Errorf("JWKS file %s: %w", path, err)
	}
	return set, nil
}

// Select returns the keys that may have signed a JWS with kid and alg. An empty kid matches every key; an empty
// alg matches every key (the caller checks the fit itself). A key with an alg of its own matches only that alg.
func (s *KeySet) Select(kid string, alg jose.SignatureAlgorithm) []jose.JSONWebKey {
	if s == nil {
		return nil
	}
	var out []jose.JSONWebKey
	for _, key := range s.Keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		if alg != "" && ((key.Algorithm != "" && key.Algorithm != string(alg)) || !AlgFits(string(alg), key.Key)) {
			continue
		}
		out = append(out, key)
	}
	return out
}
