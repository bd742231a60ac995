package oauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// agent is the agent's identity: a WIT and the key it binds.
type agent struct{ wit *identity.WIT }

func (a agent) GetWIT() (*identity.WIT, error) { return a.wit, nil }

func Example() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	// The identity server issues the agent's WIT.
	issuerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issuer, _ := wpt.NewIssuer(issuerKey, "wit-1", "ES256")
	agentKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wit, _ := issuer.Mint(wpt.WITClaims{Subject: "spiffe://example.org/agent", Expiry: time.Now().Add(time.Hour),
		Key: agentKey.Public(), KeyAlg: "ES256"})

	// The controller runs the token service.
	srv := httptest.NewUnstartedServer(nil)
	endpoint := "https://" + srv.Listener.Addr().String() + "/token"
	witVerifier, _ := wpt.NewVerifier(wpt.VerifierConfig{Replay: replay.New(replay.Options{}),
		Bundles: wpt.FromJWTBundles(jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{"wit-1": issuerKey.Public()}))})
	serviceKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tts, _ := oauth.NewTokenService(oauth.TokenServiceConfig{TrustDomain: td, Endpoint: endpoint,
		SigningKey: serviceKey, KeyID: "tts-1", Alg: "ES256", WITVerifier: witVerifier})
	srv.Config.Handler = tts
	srv.StartTLS()
	defer srv.Close()

	// The egress sidecar obtains a Txn-Token for the agent; the ingress sidecar verifies it.
	x, _ := oauth.NewExchanger(oauth.ExchangerConfig{TokenEndpoint: endpoint, TrustDomain: td, HTTPClient: srv.Client(),
		Source: agent{&identity.WIT{Token: wit, Key: agentKey, Alg: "ES256"}}})
	tok, err := x.Exchange(context.Background(), oauth.TokenRequest{Scope: "orders.read"})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, _ := oauth.NewTxnVerifier(oauth.TxnVerifierConfig{Keys: tts, TrustDomain: td})
	info, err := v.VerifyFrom(context.Background(), tok.Value, "spiffe://example.org/agent")
	fmt.Println(info.Subject, info.Scope, err)
	// Output: spiffe://example.org/agent [orders.read] <nil>
}
