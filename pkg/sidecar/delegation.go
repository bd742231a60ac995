package sidecar

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/wire"
)

// newExchanger builds the token-exchange client; it trusts the token service by our SPIFFE bundles.
func (s *Sidecar) newExchanger(self spiffeid.ID) (*oauth.Exchanger, error) {
	ts := s.cfg.Egress.TokenService
	client, err := s.tokenServiceClient(s.rt.TokenServiceID, self.TrustDomain())
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
		client, err := s.tokenServiceClient(s.rt.TxnKeysServerID, self.TrustDomain())
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
func (s *Sidecar) tokenServiceClient(configured spiffeid.ID, td spiffeid.TrustDomain) (*http.Client, error) {
	server := configured
	if server.IsZero() {
		server = wire.ControllerID(td)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsconfig.TLSClientConfig(s.src, tlsconfig.AuthorizeID(server)),
	}}, nil
}
