package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/wire"
)

// routeCredentials adds the tokens a route asks for, before the proofs that bind them: a Transaction Token (the
// WPT binds it with tth, an HTTP signature covers the txn-token header), then, for a legacy API, an access token
// from the same token exchange in Authorization: Bearer. Tokens are cached by the exchanger until shortly before
// they expire and never logged.
type routeCredentials struct {
	x      *oauth.Exchanger
	scopes map[string]string                     // route name → Txn-Token scope
	access map[string]*oauth.SecondaryCredential // route name → access token for a legacy API
	// audited: name the transaction on the egress decision record (only the audit log needs it on egress).
	audited bool
	self    string
}

func (c *routeCredentials) SignRequest(ctx context.Context, r *http.Request, rt *proxy.Route) error {
	if scope, ok := c.scopes[rt.Name]; ok {
		if err := c.x.Apply(ctx, r, scope); err != nil {
			return tokenError("a Txn-Token", err)
		}
		if c.audited {
			noteTransaction(ctx, r.Header, c.self)
		}
	}
	if sc := c.access[rt.Name]; sc != nil {
		if err := sc.Apply(ctx, r); err != nil {
			return tokenError("an access token", err)
		}
	}
	return nil
}

func tokenError(what string, err error) error {
	if autherr.Of(err) == nil {
		return fmt.Errorf("egress: obtaining %s: %v", what, err)
	}
	return err
}

// newExchanger builds the token-exchange client; it trusts the token service by our SPIFFE bundles.
func (s *Sidecar) newExchanger(self spiffeid.ID) (*oauth.Exchanger, error) {
	ts := s.cfg.Egress.TokenService
	client, err := s.tokenServiceClient(ts.ServerID, self.TrustDomain())
	if err != nil {
		return nil, fmt.Errorf("egress.tokenService.serverID: %w", err)
	}
	return oauth.NewExchanger(oauth.ExchangerConfig{
		TokenEndpoint:   ts.Endpoint,
		TrustDomain:     self.TrustDomain(),
		Source:          s.src,
		HTTPClient:      client,
		UserTokenHeader: ts.UserTokenHeader,
		Logger:          s.log.Named("oauth"),
	})
}

// txnStep verifies a Txn-Token on ingress, after the caller's identity is established: the token must name the
// caller as its requesting workload. Who its subject is to the caller (a user, the agent itself, or a system),
// the delegated subject when someone delegated, and the transaction id then reach revocation, policy, the audit
// record and the tool. An agent acting for itself gets a Txn-Token naming itself: it is no delegated subject.
type txnStep struct {
	v        *oauth.TxnVerifier
	required bool
}

func (t *txnStep) Handle(ctx context.Context, x *proxy.Exchange) error {
	h := x.Request.Header
	if len(h.Values(wire.HeaderTxnToken)) == 0 {
		if t.required {
			return fmt.Errorf("%w: this tool requires a Txn-Token (the user the agent acts for)", autherr.ErrMissing)
		}
		return nil
	}
	tok, err := oauth.TxnTokenFromHeader(h)
	if err != nil {
		return err
	}
	info, err := t.v.VerifyFrom(ctx, tok, x.Identity.Subject)
	if err != nil {
		return err
	}
	id := x.Identity
	id.SubjectKind, id.TransactionID = info.SubjectKind(id.Subject), info.TransactionID
	if id.SubjectKind != oauth.SubjectSelf {
		id.DelegatedSubject = info.Subject
	}
	id.DelegatedClaims, id.DelegatedIssuedAt = info.ClaimStrings(), info.SubjectIssuedAt()
	return nil
}

// newTxnVerifier builds the ingress Txn-Token verifier from the configured keys.
func (s *Sidecar) newTxnVerifier(self spiffeid.ID) (*oauth.TxnVerifier, error) {
	c := s.cfg.Ingress.TxnToken
	var keys oauth.KeySource
	if c.JWKSFile != "" {
		f, err := oauth.NewJWKSFile(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("ingress.txnToken.jwksFile: %w", err)
		}
		keys = f
	} else {
		client, err := s.tokenServiceClient(c.ServerID, self.TrustDomain())
		if err != nil {
			return nil, fmt.Errorf("ingress.txnToken.serverID: %w", err)
		}
		r, err := oauth.NewRemoteJWKS(oauth.RemoteJWKSConfig{URL: c.JWKSURL, Client: client,
			Logger: s.log.Named("jwks")})
		if err != nil {
			return nil, fmt.Errorf("ingress.txnToken.jwksURL: %w", err)
		}
		keys = r
	}
	return oauth.NewTxnVerifier(oauth.TxnVerifierConfig{Keys: keys, TrustDomain: self.TrustDomain(), Issuer: c.Issuer})
}

// tokenServiceClient talks only to the token service: the configured SPIFFE ID, or the controller's, which runs
// it. Any other workload of the trust domain could otherwise serve keys that mint Txn-Tokens for any user, or
// receive the user's token and an unused proof of the agent.
func (s *Sidecar) tokenServiceClient(configured string, td spiffeid.TrustDomain) (*http.Client, error) {
	server := wire.ControllerID(td)
	if configured != "" {
		var err error
		if server, err = spiffeid.FromString(configured); err != nil {
			return nil, err
		}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsconfig.TLSClientConfig(s.src, tlsconfig.AuthorizeID(server)),
	}}, nil
}

var (
	_ proxy.ProofSigner = (*routeCredentials)(nil)
	_ proxy.Step        = (*txnStep)(nil)
)
