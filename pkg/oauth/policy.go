package oauth

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ExchangeRequest is what a Policy decides on: an authenticated requester asking for a token.
type ExchangeRequest struct {
	// Actor is the authenticated requesting workload (WIT sub or X.509-SVID ID); it becomes req_wl / client_id.
	Actor string
	// AuthMethod is how Actor authenticated: wire.AuthWITWPT, wire.AuthWITMTLS, wire.AuthJWTSVIDMTLS or wire.AuthMTLS.
	AuthMethod wire.AuthMethod
	// Subject is the principal the token will name: the delegated user (with its issuer's SubjectPrefix), the
	// subject of a Txn-Token being replaced, or Actor itself.
	Subject string
	// SubjectIssuer is the iss of the user token; empty when the agent acts for itself.
	SubjectIssuer string
	// Delegated is true when Subject is not Actor.
	Delegated bool
	// SubjectClaims are the verified subject token's claims; nil when the agent acts for itself.
	SubjectClaims map[string]any
	// TransactionID is set when a Txn-Token is being replaced or exchanged for an access token.
	TransactionID string
	// RequestedTokenType is TokenTypeTxnToken or TokenTypeAccessToken.
	RequestedTokenType string
	// Audiences and Resources are the requested targets (RFC 8693 audience, RFC 8707 resource).
	Audiences, Resources []string
	// Scope is the requested scope, already bounded by the subject token's own scope.
	Scope []string
	// ScopeDefaulted is true when the request named no scope and Scope is the subject token's own: a Policy
	// should narrow it to what it allows rather than refuse.
	ScopeDefaulted bool
	// RequestDetails is the request_details object (the future tctx), if any.
	RequestDetails map[string]any
}

// Policy decides which agents may obtain which tokens. It returns the scope to grant, which must be a subset of
// req.Scope (nil grants req.Scope), or an error. An *Error is answered as it is; any other error wrapping
// autherr.ErrDenied is answered invalid_target (RFC 8693 §2.2.2: the server is unwilling to issue a token for
// that target); anything else is a server_error and refuses the request.
type Policy interface {
	Authorize(ctx context.Context, req *ExchangeRequest) (scope []string, err error)
}

// PolicyFunc adapts a function to Policy.
type PolicyFunc func(ctx context.Context, req *ExchangeRequest) ([]string, error)

// Authorize calls f.
func (f PolicyFunc) Authorize(ctx context.Context, req *ExchangeRequest) ([]string, error) {
	return f(ctx, req)
}

// AccessTokenGrant lets Workloads obtain access tokens for one target with at most Scopes.
type AccessTokenGrant struct {
	// Workloads are the requesters' workload identifiers (SPIFFE IDs), exactly.
	Workloads []string
	// Audience is the target, matched exactly against a requested audience or resource (RFC 8693 §2.1).
	Audience string
	// Scopes are the most a token for Audience may carry; empty allows only tokens without scope.
	Scopes []string
}

// SameTrustDomain is the default Policy: any workload of td gets the Txn-Tokens it asks for; workloads of other
// trust domains get nothing (Txn-Tokens never leave their trust domain). Access tokens are bearer credentials for
// APIs outside the trust domain's control, so they are refused unless a grant names the requester and every
// requested target: a target no grant covers is invalid_target, a scope beyond what the grants of every target
// allow is invalid_scope. A request that named no scope (ExchangeRequest.ScopeDefaulted) is narrowed to the
// allowed scope instead.
func SameTrustDomain(td spiffeid.TrustDomain, grants ...AccessTokenGrant) Policy {
	grants = append([]AccessTokenGrant(nil), grants...)
	return PolicyFunc(func(_ context.Context, req *ExchangeRequest) ([]string, error) {
		if !inTrustDomain(req.Actor, td) {
			return nil, fmt.Errorf("oauth: %w: requester %q is not a workload of trust domain %q", autherr.ErrDenied, req.Actor, td.Name())
		}
		if req.RequestedTokenType != TokenTypeAccessToken {
			return nil, nil
		}
		return grantedScope(grants, req)
	})
}

// grantedScope checks an access token request against grants and returns the scope to grant.
func grantedScope(grants []AccessTokenGrant, req *ExchangeRequest) ([]string, error) {
	targets := append(append([]string(nil), req.Audiences...), req.Resources...)
	var allowed []string
	for i, target := range targets {
		var forTarget []string
		found := false
		for _, g := range grants {
			if g.Audience == target && contains(g.Workloads, req.Actor) {
				found = true
				forTarget = append(forTarget, g.Scopes...)
			}
		}
		if !found {
			return nil, fmt.Errorf("oauth: %w: no access token grant lets %q get a token for %q", autherr.ErrDenied, req.Actor, target)
		}
		if i == 0 {
			allowed = forTarget
		} else {
			allowed = intersect(allowed, forTarget)
		}
	}
	if req.ScopeDefaulted {
		return intersect(req.Scope, allowed), nil
	}
	if extra, ok := subset(req.Scope, allowed); !ok {
		return nil, errorf(CodeInvalidScope, "oauth: %w: scope %q is not granted to %q for %q (at most %q)", autherr.ErrDenied, extra, req.Actor, targets, allowed)
	}
	return nil, nil
}

// intersect returns the members of a that are in b, in a's order; never nil.
func intersect(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// inTrustDomain reports whether the workload identifier id (spiffe:// or another scheme) has td as authority.
func inTrustDomain(id string, td spiffeid.TrustDomain) bool {
	_, rest, ok := strings.Cut(id, "://")
	if !ok {
		return false
	}
	host, _, _ := strings.Cut(rest, "/")
	return host == td.Name()
}

// Subject kinds a Revocations implementation is asked about; the values are those of pkg/policy, so the
// controller's revocation state serves both.
const (
	RevokedAgent = string(revocation.ClassAgent)
	RevokedUser  = string(revocation.ClassUser)
	RevokedTxn   = string(revocation.ClassTxn)
)

// Revocations is the controller's revocation state. Revoked reports whether the subject of kind (RevokedAgent,
// RevokedUser, RevokedTxn) is revoked for a credential issued at issuedAt (zero when unknown), and the id of the
// revocation. Its method set equals pkg/policy.Revocations, so one implementation fills both. It must answer from
// memory and report revoked when it cannot answer (fail closed).
type Revocations interface {
	Revoked(ctx context.Context, kind, value string, issuedAt time.Time) (id string, revoked bool)
}

var _ Policy = PolicyFunc(nil)
