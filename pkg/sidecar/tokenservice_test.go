package sidecar

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/wire"
)

// fixedSource is a fixed identity.Source: one X.509-SVID (and WIT) issued by ca.
type fixedSource struct {
	ca   *testca.CA
	svid *x509svid.SVID
	wit  *testca.WITSVID
}

func (s *fixedSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
func (s *fixedSource) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.ca.X509Bundle(), nil
}
func (s *fixedSource) GetJWTBundleForTrustDomain(spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	return s.ca.JWTBundle(), nil
}
func (s *fixedSource) GetWITBundleForTrustDomain(spiffeid.TrustDomain) (*witbundle.Bundle, error) {
	return s.ca.WITBundle(), nil
}
func (s *fixedSource) GetWIT() (*identity.WIT, error) {
	return &identity.WIT{Token: s.wit.Token, Key: s.wit.Key, Alg: s.wit.Alg, Subject: s.wit.ID.String(), Expiry: s.wit.Expiry}, nil
}
func (s *fixedSource) Updated() <-chan struct{} { return make(chan struct{}) }
func (s *fixedSource) Close() error             { return nil }

// serveAs serves h over TLS with an X.509-SVID for id.
func serveAs(t *testing.T, ca *testca.CA, id spiffeid.ID, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_ = srv.Serve(tls.NewListener(ln, tlsconfig.TLSServerConfig(&fixedSource{ca: ca, svid: ca.CreateX509SVID(id)})))
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String()
}

// Whoever serves the token service's keys can mint Txn-Tokens for any user, and the token service receives the
// user's token and an unused proof of the agent. So the sidecar talks only to the token service's SPIFFE ID (the
// controller's by default), not to any workload of the trust domain, as anyone who can redirect the token
// service's name (DNS, a Kubernetes Service, a port on a shared host) could otherwise make it.
var (
	plannerID  = "spiffe://example.org/agent/planner"
	impostorID = spiffeid.RequireFromString("spiffe://example.org/agent/compromised")
	tokenSvcID = wire.ControllerID(spiffeid.RequireTrustDomainFromString("example.org"))
)

func TestTxnJWKSOnlyFromTokenService(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k"}},
		(&jose.SignerOptions{}).WithType(oauth.TypTxnToken))
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://controller.example.org:8443/token"
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(map[string]any{"iss": issuer, "aud": td.Name(), "iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(), "txn": "t-1", "sub": "ceo@example.com", "scope": "payments.transfer",
		"req_wl": plannerID}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	toolID := spiffeid.RequireFromString("spiffe://example.org/tool/orders")
	for _, tc := range []struct {
		server spiffeid.ID
		ok     bool
	}{{impostorID, false}, {tokenSvcID, true}} {
		base := serveAs(t, ca, tc.server, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/jwk-set+json")
			_, _ = w.Write(jwks)
		}))
		s := &Sidecar{rt: &Runtime{}, log: zap.NewNop(), src: &fixedSource{ca: ca, svid: ca.CreateX509SVID(toolID)},
			cfg: &Config{Ingress: &IngressConfig{TxnToken: &IngressTxnConfig{Issuer: issuer, JWKSURL: base + "/jwks"}}}}
		v, err := s.newTxnVerifier(toolID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.VerifyFrom(context.Background(), tok, plannerID); (err == nil) != tc.ok {
			t.Errorf("keys served by %s: verify = %v, want accepted %v", tc.server, err, tc.ok)
		}
	}
}

func TestExchangerTalksOnlyToTokenService(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td)
	agent := spiffeid.RequireFromString(plannerID)
	const userToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	for _, tc := range []struct {
		server  spiffeid.ID
		reached bool
	}{{impostorID, false}, {tokenSvcID, true}} {
		got := make(chan url.Values, 1)
		base := serveAs(t, ca, tc.server, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			f, _ := url.ParseQuery(string(b))
			got <- f
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
		}))
		s := &Sidecar{rt: &Runtime{}, log: zap.NewNop(), src: &fixedSource{ca: ca, svid: ca.CreateX509SVID(agent), wit: ca.CreateWITSVID(agent)},
			cfg: &Config{Egress: &EgressConfig{TokenService: &EgressTokenServiceConfig{Endpoint: base + "/token"}}}}
		x, err := s.newExchanger(agent)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = x.Exchange(context.Background(), oauth.TokenRequest{SubjectToken: userToken,
			SubjectTokenType: oauth.TokenTypeAccessToken, Scope: "orders.read"})
		select {
		case f := <-got:
			if !tc.reached || f.Get("subject_token") != userToken {
				t.Errorf("%s received %v", tc.server, f)
			}
		default:
			if tc.reached {
				t.Errorf("the token service %s was not reached", tc.server)
			}
		}
	}
}
