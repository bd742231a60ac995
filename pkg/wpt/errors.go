package wpt

import "github.com/agentauth/agentauth/pkg/autherr"

// The refusal reasons this package returns, re-exported so callers can write errors.Is(err, wpt.ErrReplay).
var (
	ErrMissing         = autherr.ErrMissing
	ErrMalformed       = autherr.ErrMalformed
	ErrBadSignature    = autherr.ErrBadSignature
	ErrExpired         = autherr.ErrExpired
	ErrNotYetValid     = autherr.ErrNotYetValid
	ErrWrongAudience   = autherr.ErrWrongAudience
	ErrReplay          = autherr.ErrReplay
	ErrMismatch        = autherr.ErrMismatch
	ErrUntrustedIssuer = autherr.ErrUntrustedIssuer
	ErrUnsupportedAlg  = autherr.ErrUnsupportedAlg
	ErrTooLarge        = autherr.ErrTooLarge
)
