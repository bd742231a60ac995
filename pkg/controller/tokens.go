package controller

import (
	"cmp"
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"go.uber.org/zap"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/netlimit"
	"github.com/agentauth/agentauth/pkg/controller/state"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// startTokenService builds the embedded token service, listening on addr: agents authenticate with their WIT and a WPT made for the
// token endpoint, and get Txn-Tokens signed with a key of the controller's key store.
func (c *Controller) startTokenService(keys issuer.KeyStore, addr string) (*http.Server, error) {
	cfg := c.cfg.TokenService
	key, err := keys.Signer("txn-token-signing")
	if err != nil {
		return nil, fmt.Errorf("tokenService: signing key: %w", err)
	}
	thumb, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("tokenService: signing key: %w", err)
	}
	// The trust domain's WIT key algorithm policy, and ES256, the WITs' own signature.
	witAlgs := c.ca.WITKeyAlgs()
	if !slices.Contains(witAlgs, "ES256") {
		witAlgs = append(witAlgs, "ES256")
	}
	wv, err := wpt.NewVerifier(wpt.VerifierConfig{
		Bundles:            wpt.FromWITBundles(c.ca.WITBundle()),
		Replay:             replay.New(replay.Options{}),
		AllowedAlgs:        witAlgs,
		AllowedAlgsSetting: "the controller's issuer.witKeyAlgorithms",
	})
	if err != nil {
		return nil, err
	}
	var issuers []oauth.TrustedIssuer
	for _, u := range cfg.UserIssuers {
		ks, err := oauth.NewJWKSFile(u.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("tokenService.userIssuers %s: %w", u.Issuer, err)
		}
		issuers = append(issuers, oauth.TrustedIssuer{Issuer: u.Issuer, Keys: ks, Audiences: u.Audiences, Scopes: u.Scopes, SubjectPrefix: u.SubjectPrefix})
	}
	ts, err := oauth.NewTokenService(oauth.TokenServiceConfig{
		TrustDomain:      c.td,
		Endpoint:         cmp.Or(cfg.Endpoint, TokenEndpoint(addr)),
		SigningKey:       key,
		KeyID:            base64.RawURLEncoding.EncodeToString(thumb),
		Alg:              "ES256",
		WITVerifier:      wv,
		SubjectIssuers:   issuers,
		Policy:           oauth.SameTrustDomain(c.td, cfg.accessTokenGrants()...),
		Revocations:      indexRevocations{c.state},
		TxnTokenLifetime: cfg.TxnTokenTTL,
		Logger:           c.log.Named("tokens"),
		Observe:          c.metrics.observeToken,
	})
	if err != nil {
		return nil, fmt.Errorf("tokenService: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /token", ts)
	mux.Handle("GET /jwks", ts.JWKSHandler())
	srv := cfg.Limits.Server(netlimit.NewRateLimiter(cfg.RateLimit).Handler(mux))
	srv.TLSConfig = tlsconfig.TLSServerConfig(c.self)
	return srv, nil
}

// TokenEndpoint is the token service URL for a listen address.
func TokenEndpoint(addr string) string { return "https://" + addr + "/token" }

// indexRevocations answers the token service from the state service's in-memory index: a revoked agent, user or
// transaction gets no token.
type indexRevocations struct{ s *state.Service }

func (x indexRevocations) Revoked(_ context.Context, class, value string, issuedAt time.Time) (string, bool) {
	if r := x.s.Revocations().RefusingClass(revocation.Class(class), value, issuedAt, time.Now()); r != nil {
		return r.GetId() + ": " + r.Describe(), true
	}
	return "", false
}

// userIssuers is how the token service names users (tokenService.userIssuers), for resolving user revocations;
// nil without a token service.
func (c *Controller) userIssuers() []revocation.UserIssuer {
	if c.cfg.TokenService == nil {
		return nil
	}
	out := make([]revocation.UserIssuer, 0, len(c.cfg.TokenService.UserIssuers))
	for _, u := range c.cfg.TokenService.UserIssuers {
		out = append(out, revocation.UserIssuer{Issuer: u.Issuer, SubjectPrefix: u.SubjectPrefix})
	}
	return out
}

// resolveUser sets a user revocation's delegated_subjects: the names the token service gives that user, which is
// what sidecars and the token service match delegated users against. It returns why the revocation refuses no
// user, or "" when it names one (or is not about a user): its iss is none of the user issuers', or the token
// service trusts no user issuer. Such a revocation is kept for the record, and the caller says so.
func (c *Controller) resolveUser(r *agentauthv1.Revocation) string {
	if revocation.KindOf(r.GetSubject()).Class() != revocation.ClassUser {
		return ""
	}
	issuers := c.userIssuers()
	r.DelegatedSubjects = revocation.DelegatedSubjects(r.GetSubject(), issuers)
	if len(r.DelegatedSubjects) > 0 {
		return ""
	}
	if c.cfg.TokenService != nil && len(issuers) == 0 {
		return "the token service trusts no user issuer (tokenService.userIssuers), so it issues tokens for no user"
	}
	names := make([]string, len(issuers))
	for i, u := range issuers {
		names[i] = u.Issuer
	}
	return fmt.Sprintf("user issuer %q is none of tokenService.userIssuers %q: the token service names no user of it", r.GetSubject().GetIss(), names)
}

// resolveStoredUsers resolves the stored user revocations again at start, so a change of tokenService.userIssuers
// (a new issuer, a new subjectPrefix) applies to revocations made before it.
func (c *Controller) resolveStoredUsers() error {
	revs, err := c.store.Revocations().List()
	if err != nil {
		return fmt.Errorf("reading revocations: %w", err)
	}
	for _, r := range revs {
		before := slices.Clone(r.GetDelegatedSubjects())
		if why := c.resolveUser(r); why != "" {
			c.log.Warn("user revocation matches no user the token service names; it refuses nothing",
				zap.String("id", r.GetId()), zap.String("subject", r.GetSubject().Key()), zap.String("why", why))
		}
		if slices.Equal(before, r.GetDelegatedSubjects()) {
			continue
		}
		if err := c.state.UpsertRevocation(r); err != nil {
			return fmt.Errorf("revocation %s: %w", r.GetId(), err)
		}
	}
	return nil
}
