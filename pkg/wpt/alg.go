package wpt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"

	ijose "github.com/agentauth/agentauth/internal/jose"
)

// supportedAlgs is what go-jose's parsers are given: every algorithm internal/jose supports.
var supportedAlgs = ijose.SupportedAlgs()

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
