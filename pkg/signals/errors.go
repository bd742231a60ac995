package signals

import (
	"fmt"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Error codes a receiver answers a refused SET with: RFC 8935 §2.3 and RFC 8936 §2.4.4 (IANA "Security Event
// Token Error Codes"), plus invalid_state from SSF §8.1.4.1.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidKey           = "invalid_key"
	CodeInvalidIssuer        = "invalid_issuer"
	CodeInvalidAudience      = "invalid_audience"
	CodeAuthenticationFailed = "authentication_failed"
	CodeAccessDenied         = "access_denied"
	CodeInvalidState         = "invalid_state"
)

// SETError is the refusal of a SET: Code is the RFC 8935 error code the transmitter receives, Err says precisely
// what was wrong and wraps exactly one autherr reason. Any other error from the receiver is ours, not the
// SET's (storage down, JWKS unreachable): the transmitter should retry.
type SETError struct {
	Code string
	Err  error
}

func (e *SETError) Error() string { return e.Code + ": " + e.Err.Error() }

func (e *SETError) Unwrap() error { return e.Err }

// refuse builds a SETError whose Err wraps reason.
func refuse(code string, reason *autherr.Reason, format string, args ...any) *SETError {
	return &SETError{Code: code, Err: fmt.Errorf("signals: %w: %s", reason, fmt.Sprintf(format, args...))}
}
