package issuer

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
)

// joinTokenLen is the length of a join token: base64url of 32 random bytes (256 bits), no padding.
const joinTokenLen = 43

// CreateJoinToken creates a one-time join token with which a sidecar can obtain its first credentials for id
// within ttl (at most a week, so tokens can be handed out ahead of a deployment). Only a hash of the token is stored; the token itself is returned once and never again.
func (ca *CA) CreateJoinToken(ctx context.Context, id spiffeid.ID, ttl time.Duration) (string, error) {
	if !id.MemberOf(ca.td) || id.Path() == "" {
		return "", fmt.Errorf("issuer: join token: %q is not a workload ID in trust domain %q", id, ca.td)
	}
	if err := ca.checkReserved(id); err != nil {
		return "", fmt.Errorf("issuer: join token: %w", err)
	}
	if ttl <= 0 || ttl > maxJoinTokenTTL {
		return "", fmt.Errorf("issuer: join token lifetime %v is not within (0, %v]", ttl, maxJoinTokenTTL)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("issuer: join token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	err := ca.store.PutJoinToken(ctx, &agentauthv1.JoinToken{
		Id:       hashJoinToken(token),
		SpiffeId: id.String(),
		Expires:  timestamppb.New(ca.now().Add(ttl)),
	})
	if err != nil {
		return "", fmt.Errorf("issuer: storing join token: %w", err)
	}
	return token, nil
}

// maxJoinTokenTTL bounds how long an unused join token stays valid.
const maxJoinTokenTTL = 7 * 24 * time.Hour

// Attest consumes a join token and returns the SPIFFE ID it was created for. The token works once: a second
// use fails with autherr.ErrReplay, an expired one with autherr.ErrExpired, an unknown one with autherr.ErrDenied, a badly formed one
// with autherr.ErrMalformed; none of these changes anything.
func (ca *CA) Attest(ctx context.Context, token string) (spiffeid.ID, error) {
	if token == "" {
		return spiffeid.ID{}, fmt.Errorf("issuer: %w: no join token", autherr.ErrMissing)
	}
	if len(token) != joinTokenLen {
		return spiffeid.ID{}, fmt.Errorf("issuer: %w: join token is %d characters, want %d", autherr.ErrMalformed, len(token), joinTokenLen)
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(token); err != nil {
		return spiffeid.ID{}, fmt.Errorf("issuer: %w: join token is not base64url", autherr.ErrMalformed)
	}
	rec, err := ca.store.UseJoinToken(ctx, hashJoinToken(token), ca.now())
	if err != nil {
		// Whoever presents a token has proven nothing yet: the refusal says what is wrong with the token, not whom
		// it was for or when it was used (the store's message does).
		switch r := autherr.Of(err); r {
		case autherr.ErrReplay:
			return spiffeid.ID{}, fmt.Errorf("issuer: %w: join token was already used", r)
		case autherr.ErrExpired:
			return spiffeid.ID{}, fmt.Errorf("issuer: %w: join token has expired", r)
		case autherr.ErrDenied:
			return spiffeid.ID{}, fmt.Errorf("issuer: %w: unknown join token", r)
		case nil:
			return spiffeid.ID{}, fmt.Errorf("issuer: using join token: %w", err)
		default:
			return spiffeid.ID{}, fmt.Errorf("issuer: %w: join token refused", r)
		}
	}
	id, err := spiffeid.FromString(rec.GetSpiffeId())
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("issuer: stored join token names an invalid SPIFFE ID: %w", err)
	}
	// A token stored before the ID was reserved, or planted in the store, still gets nothing.
	if err := ca.checkReserved(id); err != nil {
		return spiffeid.ID{}, err
	}
	return id, nil
}
