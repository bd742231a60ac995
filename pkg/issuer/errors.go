package issuer

import (
	"errors"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// The refusal reasons this package returns, re-exported so callers can write errors.Is(err, issuer.ErrReplay).
var (
	ErrMissing         = autherr.ErrMissing
	ErrMalformed       = autherr.ErrMalformed
	ErrBadSignature    = autherr.ErrBadSignature
	ErrExpired         = autherr.ErrExpired
	ErrReplay          = autherr.ErrReplay
	ErrUntrustedIssuer = autherr.ErrUntrustedIssuer
	ErrUnsupportedAlg  = autherr.ErrUnsupportedAlg
	ErrTooLarge        = autherr.ErrTooLarge
	ErrDenied          = autherr.ErrDenied
	ErrRevoked         = autherr.ErrRevoked
	ErrRateLimited     = autherr.ErrRateLimited
)

// ErrNotFound is what a Store returns when it holds no record under the key asked for.
var ErrNotFound = errors.New("issuer: not found")
