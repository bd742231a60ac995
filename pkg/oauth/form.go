package oauth

import (
	"net/url"
	"strings"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Limits on a token request.
const (
	// MaxRequestSize bounds the token request body.
	MaxRequestSize = 64 << 10
	// maxTargets bounds the audience and resource values of one request.
	maxTargets = 8
	// maxContextSize bounds request_context and request_details.
	maxContextSize = 4 << 10
	// maxActorTokenSize bounds actor_token (a WIT or JWT-SVID).
	maxActorTokenSize = 8 << 10
)

// tokenRequest is a parsed RFC 8693 token exchange request.
type tokenRequest struct {
	subjectToken, subjectTokenType string
	actorToken, actorTokenType     string
	requestedTokenType             string
	audiences, resources           []string
	scope                          []string
	requestContext, requestDetails map[string]any
}

var singleParams = []string{
	"grant_type", "subject_token", "subject_token_type", "actor_token", "actor_token_type",
	"requested_token_type", "scope", "request_context", "request_details",
}

// parseTokenRequest parses and checks an application/x-www-form-urlencoded token request body (RFC 8693 §2.1,
// Txn-Token draft "Txn-Token Request"). Parameters other than audience and resource may appear once
// (RFC 6749 §3.2). Everything wrong is an *Error with the RFC 6749 §5.2 code to answer with.
func parseTokenRequest(body []byte) (*tokenRequest, *Error) {
	if len(body) > MaxRequestSize {
		return nil, errorf(CodeInvalidRequest, "oauth: %w: token request is %d bytes, over %d", autherr.ErrTooLarge, len(body), MaxRequestSize)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errorf(CodeInvalidRequest, "oauth: %w: token request body is not form-encoded: %v", autherr.ErrMalformed, err)
	}
	for _, p := range singleParams {
		if len(form[p]) > 1 {
			return nil, errorf(CodeInvalidRequest, "oauth: %w: parameter %s given %d times", autherr.ErrMalformed, p, len(form[p]))
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case GrantTypeTokenExchange:
	case "":
		return nil, errorf(CodeInvalidRequest, "oauth: %w: no grant_type", autherr.ErrMissing)
	default:
		return nil, errorf(CodeUnsupportedGrantType, "oauth: %w: grant_type %q; this endpoint serves only %s", autherr.ErrMalformed, gt, GrantTypeTokenExchange)
	}
	req := &tokenRequest{
		subjectToken:       form.Get("subject_token"),
		subjectTokenType:   form.Get("subject_token_type"),
		actorToken:         form.Get("actor_token"),
		actorTokenType:     form.Get("actor_token_type"),
		requestedTokenType: form.Get("requested_token_type"),
		audiences:          form["audience"],
		resources:          form["resource"],
	}
	if oe := req.checkTokens(); oe != nil {
		return nil, oe
	}
	if oe := req.checkTargets(); oe != nil {
		return nil, oe
	}
	var oe *Error
	if req.scope, oe = parseScope(form.Get("scope")); oe != nil {
		return nil, oe
	}
	if req.requestContext, oe = parseContextParam("request_context", form.Get("request_context")); oe != nil {
		return nil, oe
	}
	if req.requestDetails, oe = parseContextParam("request_details", form.Get("request_details")); oe != nil {
		return nil, oe
	}
	if req.requestedTokenType == TokenTypeTxnToken && len(req.scope) == 0 {
		return nil, errorf(CodeInvalidRequest, "oauth: %w: a Txn-Token request needs a scope", autherr.ErrMissing)
	}
	return req, nil
}

func (req *tokenRequest) checkTokens() *Error {
	switch {
	case req.subjectToken != "" && req.subjectTokenType == "":
		return errorf(CodeInvalidRequest, "oauth: %w: subject_token without subject_token_type", autherr.ErrMissing)
	case req.subjectToken == "" && req.subjectTokenType != "":
		return errorf(CodeInvalidRequest, "oauth: %w: subject_token_type without subject_token", autherr.ErrMissing)
	case req.actorToken != "" && req.actorTokenType == "":
		return errorf(CodeInvalidRequest, "oauth: %w: actor_token without actor_token_type", autherr.ErrMissing)
	case req.actorToken == "" && req.actorTokenType != "":
		return errorf(CodeInvalidRequest, "oauth: %w: actor_token_type without actor_token", autherr.ErrMissing)
	case req.subjectTokenType == TokenTypeRefresh:
		return errorf(CodeInvalidRequest, "oauth: %w: a refresh token cannot be a subject token", autherr.ErrMalformed)
	case len(req.subjectToken) > MaxSubjectTokenSize:
		return errorf(CodeInvalidRequest, "oauth: %w: subject_token is %d bytes, over %d", autherr.ErrTooLarge, len(req.subjectToken), MaxSubjectTokenSize)
	case len(req.actorToken) > maxActorTokenSize:
		return errorf(CodeInvalidRequest, "oauth: %w: actor_token is %d bytes, over %d", autherr.ErrTooLarge, len(req.actorToken), maxActorTokenSize)
	}
	switch req.requestedTokenType {
	case "":
		req.requestedTokenType = TokenTypeTxnToken // this is a Transaction Token Service first
	case TokenTypeTxnToken, TokenTypeAccessToken:
	default:
		return errorf(CodeInvalidRequest, "oauth: %w: cannot issue requested_token_type %q (only %s and %s)",
			autherr.ErrMalformed, req.requestedTokenType, TokenTypeTxnToken, TokenTypeAccessToken)
	}
	return nil
}

func (req *tokenRequest) checkTargets() *Error {
	if len(req.audiences) > maxTargets || len(req.resources) > maxTargets {
		return errorf(CodeInvalidTarget, "oauth: %w: more than %d audience or resource values", autherr.ErrTooLarge, maxTargets)
	}
	for _, a := range req.audiences {
		if a == "" {
			return errorf(CodeInvalidTarget, "oauth: %w: empty audience", autherr.ErrMalformed)
		}
	}
	for _, r := range req.resources {
		// RFC 8707 §2: an absolute URI without a fragment.
		u, err := url.Parse(r)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(r, "#") {
			return errorf(CodeInvalidTarget, "oauth: %w: resource %q is not an absolute URI without fragment", autherr.ErrMalformed, r)
		}
	}
	if req.requestedTokenType == TokenTypeTxnToken {
		switch {
		case len(req.resources) > 0:
			return errorf(CodeInvalidTarget, "oauth: %w: a Txn-Token's audience is a trust domain; resource does not apply", autherr.ErrMalformed)
		case len(req.audiences) != 1:
			return errorf(CodeInvalidRequest, "oauth: %w: a Txn-Token request needs exactly one audience (the trust domain), got %d", autherr.ErrMissing, len(req.audiences))
		}
	} else if len(req.audiences)+len(req.resources) == 0 {
		return errorf(CodeInvalidRequest, "oauth: %w: an access token request needs an audience or resource", autherr.ErrMissing)
	}
	return nil
}

// parseScope splits a scope parameter and checks each token's characters (RFC 6749 §3.3); duplicates collapse.
func parseScope(s string) ([]string, *Error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
				return nil, errorf(CodeInvalidScope, "oauth: %w: scope token %q has character %q", autherr.ErrMalformed, tok, c)
			}
		}
		if !contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out, nil
}

// parseContextParam decodes a JSON object parameter (request_context, request_details).
func parseContextParam(name, v string) (map[string]any, *Error) {
	if v == "" {
		return nil, nil
	}
	if len(v) > maxContextSize {
		return nil, errorf(CodeInvalidRequest, "oauth: %w: %s is %d bytes, over %d", autherr.ErrTooLarge, name, len(v), maxContextSize)
	}
	var m map[string]any
	if err := jsonUnmarshal([]byte(v), &m); err != nil || m == nil {
		return nil, errorf(CodeInvalidRequest, "oauth: %w: %s is not a JSON object", autherr.ErrMalformed, name)
	}
	return m, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// subset returns the first element of a that is not in b, and whether there is none.
func subset(a, b []string) (string, bool) {
	for _, x := range a {
		if !contains(b, x) {
			return x, false
		}
	}
	return "", true
}
