package oauth

import (
	"context"
	"errors"
	"net/http"
)

// SecondaryConfig describes the access token a legacy API wants.
type SecondaryConfig struct {
	// Audience and/or Resource name the API (at least one is required).
	Audience, Resource string
	// Scope is space-separated.
	Scope string
}

// SecondaryCredential injects an access token for a legacy API that understands neither WIMSE proofs nor
// Txn-Tokens: the agent's primary credential (with the transaction's or user's token as subject) is exchanged
// for an access token (RFC 8693), which goes out as Authorization: Bearer. Tokens come from the Exchanger's
// cache until shortly before they expire, and are never logged.
type SecondaryCredential struct {
	x   *Exchanger
	cfg SecondaryConfig
}

// NewSecondaryCredential returns a SecondaryCredential that exchanges through x.
func NewSecondaryCredential(x *Exchanger, cfg SecondaryConfig) (*SecondaryCredential, error) {
	if x == nil {
		return nil, errors.New("oauth: SecondaryCredential needs an Exchanger")
	}
	if cfg.Audience == "" && cfg.Resource == "" {
		return nil, errors.New("oauth: SecondaryConfig needs an Audience or Resource")
	}
	return &SecondaryCredential{x: x, cfg: cfg}, nil
}

// Apply sets r's Authorization to a Bearer access token for the API. The subject is, in order: r's Txn-Token
// (so the API sees the transaction's user), the user's token from the Exchanger's user-token header (removed
// from r), or the agent itself. Any Authorization r had is replaced.
func (s *SecondaryCredential) Apply(ctx context.Context, r *http.Request) error {
	tr := TokenRequest{RequestedTokenType: TokenTypeAccessToken, Audience: s.cfg.Audience, Resource: s.cfg.Resource, Scope: s.cfg.Scope}
	if err := s.x.subjectFrom(r, &tr); err != nil {
		return err
	}
	tok, err := s.x.Exchange(ctx, tr)
	if err != nil {
		return err
	}
	r.Header.Set("Authorization", "Bearer "+tok.Value)
	return nil
}
