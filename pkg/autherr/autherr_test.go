package autherr

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestCodeAndStatus(t *testing.T) {
	tests := []struct {
		err    error
		code   string
		status int
	}{
		{fmt.Errorf("wpt: %w: no Workload-Proof-Token header", ErrMissing), "credential_missing", http.StatusUnauthorized},
		{fmt.Errorf("wpt: %w: jti %q seen before", ErrReplay, "abc"), "replay", http.StatusBadRequest},
		{fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", ErrBadSignature)), "bad_signature", http.StatusBadRequest},
		{fmt.Errorf("policy: %w: no permit", ErrDenied), "policy_denied", http.StatusForbidden},
		{ErrRevoked, "revoked", http.StatusForbidden},
		{fmt.Errorf("%w: header over 8 KiB", ErrTooLarge), "too_large", http.StatusRequestEntityTooLarge},
		{ErrRateLimited, "rate_limited", http.StatusTooManyRequests},
		{ErrUpstream, "upstream_unavailable", http.StatusBadGateway},
		{ErrUpstreamTimeout, "upstream_timeout", http.StatusGatewayTimeout},
		{fmt.Errorf("%w: client certificate expired", ErrPeerCertExpired), "peer_certificate_expired", http.StatusUnauthorized},
		{fmt.Errorf("%w: malformed chunked encoding", ErrBadFraming), "bad_request_framing", http.StatusBadRequest},
		{ErrBodyTimeout, "body_timeout", http.StatusRequestTimeout},
		{ErrBodyBudget, "body_budget_exhausted", http.StatusServiceUnavailable},
		{fmt.Errorf("%w: no route for x", ErrMisdirected), "misdirected_request", http.StatusMisdirectedRequest},
		{ErrCannotSignResponse, "response_signing_unavailable", http.StatusNotImplemented},
		{ErrResponseUnverified, "response_unverified", http.StatusBadGateway},
		{ErrClientClosed, "client_closed", StatusClientClosed},
		{ErrAuditUnavailable, "audit_unavailable", http.StatusServiceUnavailable},
		{errors.New("something else"), Internal, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			if got := Code(tt.err); got != tt.code {
				t.Errorf("Code(%v) = %q, want %q", tt.err, got, tt.code)
			}
			if got := HTTPStatus(tt.err); got != tt.status {
				t.Errorf("HTTPStatus(%v) = %d, want %d", tt.err, got, tt.status)
			}
		})
	}
}

func TestCodesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Codes() {
		if seen[c] {
			t.Fatalf("duplicate reason code %q", c)
		}
		seen[c] = true
	}
	if !seen[Internal] || len(seen) != len(all)+1 {
		t.Fatalf("Codes() = %v", Codes())
	}
}

func TestAllIsACopyOfEveryReason(t *testing.T) {
	got := All()
	if len(got) != len(Codes())-1 {
		t.Fatalf("All() has %d reasons, Codes() %d codes besides %q", len(got), len(Codes())-1, Internal)
	}
	got[0] = nil
	if All()[0] == nil {
		t.Fatal("All() shares its slice with the package")
	}
}
