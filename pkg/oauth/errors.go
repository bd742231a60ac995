package oauth

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// OAuth error codes (RFC 6749 §5.2, RFC 8693 §2.2.2).
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	CodeInvalidTarget        = "invalid_target"
	CodeServerError          = "server_error"
)

// Error is an RFC 6749 §5.2 error: the token endpoint's JSON answer, and what the client returns when it gets one.
// It wraps the autherr sentinel that says precisely what was wrong; that sentinel's code also travels in the
// response as the extension member "reason", so the client's error wraps the same sentinel as the server's.
type Error struct {
	// Code is the OAuth error code, e.g. invalid_client.
	Code string
	// Description is the human-readable error_description. It never contains a token.
	Description string
	// Status is the HTTP status of the response.
	Status int
	// Err is the cause; it wraps one autherr sentinel.
	Err error
}

func (e *Error) Error() string {
	if e.Description == "" {
		return "oauth: " + e.Code
	}
	return "oauth: " + e.Code + ": " + e.Description
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// oauthError builds an *Error from a cause that wraps an autherr sentinel; the description is the cause's text.
func oauthError(code string, cause error) *Error {
	st := http.StatusBadRequest
	switch code {
	case CodeInvalidClient:
		st = http.StatusUnauthorized
	case CodeServerError:
		st = http.StatusInternalServerError
	}
	return &Error{Code: code, Description: cause.Error(), Status: st, Err: cause}
}

// errorf is oauthError(code, fmt.Errorf(format, args...)); format must use %w for one autherr sentinel.
func errorf(code, format string, args ...any) *Error {
	return oauthError(code, fmt.Errorf(format, args...))
}

// reasonByCode returns the sentinel whose code a "reason" member names, or nil.
func reasonByCode(code string) *autherr.Reason {
	for _, r := range []*autherr.Reason{
		autherr.ErrMissing, autherr.ErrMalformed, autherr.ErrBadSignature, autherr.ErrExpired, autherr.ErrNotYetValid, autherr.ErrWrongAudience, autherr.ErrMismatch,
		autherr.ErrUntrustedIssuer, autherr.ErrUnsupportedAlg, autherr.ErrTooLarge, autherr.ErrDenied, autherr.ErrRevoked, autherr.ErrReplay,
	} {
		if r.Code() == code {
			return r
		}
	}
	return nil
}

// reasonForOAuthCode is the sentinel a client error wraps when the server named no known reason.
func reasonForOAuthCode(code string) *autherr.Reason {
	switch code {
	case CodeInvalidClient, CodeUnauthorizedClient, CodeInvalidTarget, CodeInvalidScope:
		return autherr.ErrDenied
	case CodeInvalidGrant:
		return autherr.ErrRevoked
	case CodeInvalidRequest, CodeUnsupportedGrantType:
		return autherr.ErrMalformed
	default:
		return autherr.ErrUpstream
	}
}

// asOAuthError reports whether err is (or wraps) an *Error, and returns it.
func asOAuthError(err error) (*Error, bool) {
	var oe *Error
	ok := errors.As(err, &oe)
	return oe, ok
}

func autherrOf(err error) *autherr.Reason { return autherr.Of(err) }
