package autherr

import (
	"errors"
	"net/http"
	"slices"
)

// Reason is a sentinel error whose text is a stable, machine-readable reason code.
type Reason struct{ code string }

func (r *Reason) Error() string { return r.code }

// Code returns the reason code, e.g. "replay".
func (r *Reason) Code() string { return r.code }

func newReason(code string) *Reason { return &Reason{code: code} }

// Authentication failures. A WIMSE proof that is present but wrong is a 400, per the WIMSE drafts.
var (
	// ErrMissing: the request carries no credential the route requires (401).
	ErrMissing = newReason("credential_missing")
	// ErrMalformed: a token, header or signature does not parse.
	ErrMalformed = newReason("malformed")
	// ErrBadSignature: a signature does not verify with the key it must verify with.
	ErrBadSignature = newReason("bad_signature")
	// ErrExpired: past exp (plus skew), or a lifetime longer than allowed.
	ErrExpired = newReason("expired")
	// ErrNotYetValid: nbf or iat in the future beyond the allowed skew.
	ErrNotYetValid = newReason("not_yet_valid")
	// ErrWrongAudience: the proof was made for another recipient.
	ErrWrongAudience = newReason("wrong_audience")
	// ErrReplay: a proof (jti, nonce) seen before while it could still be valid.
	ErrReplay = newReason("replay")
	// ErrMismatch: two credentials that must agree do not (WPT wth vs WIT, tth vs Txn-Token, mTLS peer vs WIT sub).
	ErrMismatch = newReason("binding_mismatch")
	// ErrUntrustedIssuer: no trust anchor for the credential's trust domain or key id.
	ErrUntrustedIssuer = newReason("untrusted_issuer")
	// ErrUnsupportedAlg: none, HMAC, an unknown algorithm, or an algorithm that does not match the key.
	ErrUnsupportedAlg = newReason("unsupported_algorithm")
	// ErrTooLarge: a header, token or body beyond the configured limit.
	ErrTooLarge = newReason("too_large")
	// ErrPeerCertExpired: the request came on a connection whose peer certificate has passed its NotAfter since
	// the handshake (401). The connection is closed with the refusal, so the client handshakes again with its
	// current certificate.
	ErrPeerCertExpired = newReason("peer_certificate_expired")
	// ErrRateLimited: the client sent more requests than its rate allows (429); it may retry later.
	ErrRateLimited = newReason("rate_limited")
)

// Request body failures on the client's side of the sidecar.
var (
	// ErrBadFraming: the client's request body is not valid HTTP framing (malformed chunked encoding, or it ends
	// before its Content-Length) (400). Not an upstream failure, so it does not count as one.
	ErrBadFraming = newReason("bad_request_framing")
	// ErrBodyTimeout: the client sent its request body too slowly (408).
	ErrBodyTimeout = newReason("body_timeout")
	// ErrBodyBudget: buffering the body would take the bytes held for all requests' bodies past the configured
	// budget (503); the client may retry.
	ErrBodyBudget = newReason("body_budget_exhausted")
)

// Authorization failures (403).
var (
	// ErrDenied: authenticated, but no policy allows the request (or one forbids it).
	ErrDenied = newReason("policy_denied")
	// ErrRevoked: the subject, session or credential was revoked.
	ErrRevoked = newReason("revoked")
)

// Routing failures.
var (
	// ErrMisdirected: the request names a host this listener does not serve (421), refused before authentication.
	ErrMisdirected = newReason("misdirected_request")
)

// Signed responses (draft-ietf-wimse-http-signature: wimse-sign-response).
var (
	// ErrCannotSignResponse: the caller asked for a signed response and this server cannot sign it (no WIT of
	// its own, or a body it cannot digest), so it answers 501 instead of an unsigned success.
	ErrCannotSignResponse = newReason("response_signing_unavailable")
	// ErrResponseUnverified: a response that had to be signed is unsigned or fails verification (502).
	ErrResponseUnverified = newReason("response_unverified")
)

// Upstream failures.
var (
	// ErrUpstream: the upstream could not be reached or failed (502).
	ErrUpstream = newReason("upstream_unavailable")
	// ErrUpstreamTimeout: the upstream did not answer in time (504).
	ErrUpstreamTimeout = newReason("upstream_timeout")
	// ErrClientClosed: the client went away before its response was complete. Nothing failed and nothing is
	// sent; the record says 499, as nginx and Envoy do.
	ErrClientClosed = newReason("client_closed")
)

// StatusClientClosed is the status recorded (never sent) for ErrClientClosed.
const StatusClientClosed = 499

// ErrAuditUnavailable: the audit log cannot be written (a full disk, an I/O error), and the sidecar is configured
// to refuse rather than act on a decision it cannot record (503).
var ErrAuditUnavailable = newReason("audit_unavailable")

var all = []*Reason{
	ErrMissing, ErrMalformed, ErrBadSignature, ErrExpired, ErrNotYetValid, ErrWrongAudience, ErrReplay,
	ErrMismatch, ErrUntrustedIssuer, ErrUnsupportedAlg, ErrTooLarge, ErrRateLimited, ErrDenied, ErrRevoked, ErrUpstream,
	ErrUpstreamTimeout, ErrPeerCertExpired, ErrBadFraming, ErrBodyTimeout, ErrBodyBudget, ErrMisdirected,
	ErrCannotSignResponse, ErrResponseUnverified, ErrClientClosed, ErrAuditUnavailable,
}

// Internal is the reason code of an error that wraps none of the sentinels.
const Internal = "internal"

// Of returns the sentinel that err wraps, or nil.
func Of(err error) *Reason {
	var r *Reason
	if errors.As(err, &r) {
		return r
	}
	return nil
}

// Code returns the reason code err carries, or Internal.
func Code(err error) string {
	if r := Of(err); r != nil {
		return r.code
	}
	return Internal
}

// All lists every sentinel, for callers that must cover each (e.g. tests that an error wraps exactly one).
func All() []*Reason { return slices.Clone(all) }

// Codes lists every reason code, for pre-registering metric label values.
func Codes() []string {
	out := make([]string, 0, len(all)+1)
	for _, r := range all {
		out = append(out, r.code)
	}
	return append(out, Internal)
}

// HTTPStatus maps err to the status the sidecar answers with.
func HTTPStatus(err error) int {
	switch Of(err) {
	case ErrMissing, ErrPeerCertExpired:
		return http.StatusUnauthorized
	case ErrDenied, ErrRevoked:
		return http.StatusForbidden
	case ErrTooLarge:
		return http.StatusRequestEntityTooLarge
	case ErrRateLimited:
		return http.StatusTooManyRequests
	case ErrBodyTimeout:
		return http.StatusRequestTimeout
	case ErrBodyBudget, ErrAuditUnavailable:
		return http.StatusServiceUnavailable
	case ErrMisdirected:
		return http.StatusMisdirectedRequest
	case ErrCannotSignResponse:
		return http.StatusNotImplemented
	case ErrUpstream, ErrResponseUnverified:
		return http.StatusBadGateway
	case ErrUpstreamTimeout:
		return http.StatusGatewayTimeout
	case ErrClientClosed:
		return StatusClientClosed
	case nil:
		return http.StatusInternalServerError
	default:
		return http.StatusBadRequest
	}
}
