package httpsig

import "github.com/agentauth/agentauth/pkg/autherr"

// Reasons a message is refused; every error this package returns for a bad message wraps exactly one of them.
var (
	// ErrMissing: no Workload-Identity-Token, Signature-Input or Signature field at all.
	ErrMissing = autherr.ErrMissing
	// ErrMalformed: a field does not parse, a required component or parameter is absent, or a forbidden one is
	// present (keyid, alg, wrong tag).
	ErrMalformed = autherr.ErrMalformed
	// ErrBadSignature: the signature does not verify with the WIT's cnf key.
	ErrBadSignature = autherr.ErrBadSignature
	// ErrExpired: past expires (plus skew), older than MaxAge, or a lifetime longer than MaxAge.
	ErrExpired = autherr.ErrExpired
	// ErrNotYetValid: created is in the future beyond the clock skew.
	ErrNotYetValid = autherr.ErrNotYetValid
	// ErrWrongAudience: wimse-aud does not name this receiver.
	ErrWrongAudience = autherr.ErrWrongAudience
	// ErrReplay: the nonce was seen before.
	ErrReplay = autherr.ErrReplay
	// ErrMismatch: Content-Digest does not match the body, or a response's wimse-req-nonce is not the request's.
	ErrMismatch = autherr.ErrMismatch
	// ErrUntrustedIssuer: the WIT's issuer key is not in the trust bundle of its trust domain (from the WITVerifier).
	ErrUntrustedIssuer = autherr.ErrUntrustedIssuer
	// ErrUnsupportedAlg: HMAC, an unknown algorithm, or one that does not fit the key.
	ErrUnsupportedAlg = autherr.ErrUnsupportedAlg
	// ErrTooLarge: a signature or digest field over MaxFieldBytes, or too many signatures or components.
	ErrTooLarge = autherr.ErrTooLarge
)
