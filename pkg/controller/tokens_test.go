package controller

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// testIDP is an identity provider whose user tokens the token service may trust.
type testIDP struct {
	iss string
	key *ecdsa.PrivateKey
	// yaml is the rest of its userIssuers entry, e.g. "subjectPrefix: corp:".
	yaml string
}

func newTestIDP(t *testing.T, iss, yaml string) testIDP {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testIDP{iss: iss, key: k, yaml: yaml}
}

// token is a user token for sub; claims adds to or replaces the defaults (one hour, scope orders.read), and a nil
// value removes the claim.
func (p testIDP) token(t *testing.T, sub string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m := map[string]any{"iss": p.iss, "sub": sub, "aud": "agentauth",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": "orders.read"}
	for k, v := range claims {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	tok, err := jwt.Signed(s).Claims(m).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenPost posts a token request as workload id and returns the status and decoded body.
type tokenPost func(id string, form url.Values) (int, map[string]any)

// tokenController runs a controller whose tokenService trusts idps and has the further settings extra (YAML
// flow-mapping members, e.g. "accessTokens: [...]"). Its poster proves the workload's WIT with a WPT for the token
// endpoint, over TLS that authenticates the controller; without a subject_token the workload acts for itself.
func tokenController(t *testing.T, extra string, idps ...testIDP) (*Controller, tokenPost) {
	t.Helper()
	return tokenControllerWith(t, "", "ES256", extra, idps...)
}

// tokenControllerWith is tokenController with issuerExtra added to the issuer mapping (", key: value" members) and
// workload keys of witAlg (ES256 or EdDSA) in the poster's WITs.
func tokenControllerWith(t *testing.T, issuerExtra, witAlg, extra string, idps ...testIDP) (*Controller, tokenPost) {
	t.Helper()
	dir := t.TempDir()
	var issuers []string
	for i, p := range idps {
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: p.key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}
		b, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, fmt.Sprintf("idp%d.json", i))
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		y := ""
		if p.yaml != "" {
			y = ", " + p.yaml
		}
		issuers = append(issuers, fmt.Sprintf("{issuer: %q, audiences: [agentauth], jwksFile: %q%s}", p.iss, f, y))
	}
	if extra != "" {
		extra = ", " + extra
	}
	cfg, err := Parse([]byte(fmt.Sprintf(`trustDomain: example.org
dataDir: %s
issuer: {listen: 127.0.0.1:0%s}
xds: {listen: 127.0.0.1:0}
admin: {socket: %s}
ops: {listen: 127.0.0.1:0}
tokenService: {listen: 127.0.0.1:0, userIssuers: [%s]%s}
`, filepath.Join(dir, "data"), issuerExtra, filepath.Join(dir, "admin.sock"), strings.Join(issuers, ", "), extra)))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := runController(t, cfg)
	endpoint := TokenEndpoint(c.tokenLn().Addr().String())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsconfig.TLSClientConfig(c.ca.X509Bundle(), tlsconfig.AuthorizeID(wire.ControllerID(c.td)))}}
	t.Cleanup(client.CloseIdleConnections)
	post := func(id string, form url.Values) (int, map[string]any) {
		t.Helper()
		var key crypto.Signer
		var err error
		if witAlg == "EdDSA" {
			_, key, err = ed25519.GenerateKey(rand.Reader)
		} else {
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			t.Fatal(err)
		}
		wit, err := c.ca.IssueWIT(context.Background(), spiffeid.RequireFromString(id), key.Public(), witAlg, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		p, err := wpt.NewProver(wit, key)
		if err != nil {
			t.Fatal(err)
		}
		// Agents make their proofs for the URL they are told (tokenService.endpoint), not for the listen address.
		proof, err := p.Mint(wpt.ProofParams{Audience: cmp.Or(cfg.TokenService.Endpoint, endpoint)})
		if err != nil {
			t.Fatal(err)
		}
		form.Set("grant_type", oauth.GrantTypeTokenExchange)
		form.Set("actor_token", wit)
		form.Set("actor_token_type", oauth.TokenTypeWIT)
		if form.Get("subject_token") == "" {
			form.Set("subject_token", wit)
			form.Set("subject_token_type", oauth.TokenTypeWIT)
		}
		req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(wire.HeaderWPT, proof)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%d %q: %v", resp.StatusCode, b, err)
		}
		return resp.StatusCode, m
	}
	return c, post
}

// tokenClaims decodes an issued token's payload (its signature is the token service's business here).
func tokenClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTokenServiceAccessTokens: the controller issues access tokens only as tokenService.accessTokens grants
// them: the named workload, for the named API, with at most the listed scopes.
func TestTokenServiceAccessTokens(t *testing.T) {
	const planner, weather = "spiffe://example.org/agent/planner", "spiffe://example.org/tool/weather"
	_, post := tokenController(t, `accessTokens: [{workloads: ['`+planner+`'], audience: legacy-api, scopes: [read]}]`)
	for _, c := range []struct {
		name, id, audience, scope string
		code                      string
	}{
		{name: "granted", id: planner, audience: "legacy-api", scope: "read"},
		{name: "workload no grant names", id: weather, audience: "legacy-api", scope: "read", code: oauth.CodeInvalidTarget},
		{name: "API no grant names", id: planner, audience: "https://payments.example.com/api", scope: "read", code: oauth.CodeInvalidTarget},
		{name: "scope beyond the grant", id: planner, audience: "legacy-api", scope: "read payments.transfer", code: oauth.CodeInvalidScope},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, body := post(c.id, url.Values{
				"requested_token_type": {oauth.TokenTypeAccessToken},
				"audience":             {c.audience},
				"scope":                {c.scope},
			})
			if c.code != "" {
				if st != http.StatusBadRequest || body["error"] != c.code {
					t.Fatalf("got %d %v, want 400 %s", st, body, c.code)
				}
				return
			}
			if st != http.StatusOK {
				t.Fatalf("got %d %v", st, body)
			}
			if m := tokenClaims(t, body["access_token"].(string)); m["aud"] != c.audience || m["scope"] != c.scope || m["client_id"] != c.id {
				t.Errorf("access token claims %v", m)
			}
		})
	}
}

// TestTokenServiceEd25519WIT: where the trust domain's policy lists EdDSA, an agent whose WIT binds an Ed25519
// key gets tokens with a WPT signed by it (the token service verifies under the same policy).
func TestTokenServiceEd25519WIT(t *testing.T) {
	const planner = "spiffe://example.org/agent/planner"
	_, post := tokenControllerWith(t, ", witKeyAlgorithms: [EdDSA]", "EdDSA",
		`accessTokens: [{workloads: ['`+planner+`'], audience: legacy-api, scopes: [read]}]`)
	st, body := post(planner, url.Values{"requested_token_type": {oauth.TokenTypeAccessToken}, "audience": {"legacy-api"}, "scope": {"read"}})
	if st != http.StatusOK {
		t.Fatalf("got %d %v, want 200", st, body)
	}
}

// TestTokenServiceUnscopedUserTokens: a user token without scope is narrowed only to its issuer's
// userIssuers[].scopes; with none listed, it gets no scope at all.
func TestTokenServiceUnscopedUserTokens(t *testing.T) {
	const planner = "spiffe://example.org/agent/planner"
	listed := newTestIDP(t, "https://login.corp.example", "scopes: [orders.read], subjectPrefix: 'corp:'")
	bare := newTestIDP(t, "https://partner-idp.example", "subjectPrefix: 'partner:'")
	_, post := tokenController(t, "", listed, bare)
	for _, c := range []struct {
		name  string
		idp   testIDP
		scope string
		ok    bool
	}{
		{name: "within the issuer's scopes", idp: listed, scope: "orders.read", ok: true},
		{name: "beyond the issuer's scopes", idp: listed, scope: "orders.read payments.transfer"},
		{name: "issuer lists none", idp: bare, scope: "orders.read"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, body := post(planner, url.Values{
				"requested_token_type": {oauth.TokenTypeTxnToken},
				"audience":             {"example.org"},
				"scope":                {c.scope},
				"subject_token":        {c.idp.token(t, "alice", map[string]any{"scope": nil})},
				"subject_token_type":   {oauth.TokenTypeAccessToken},
			})
			if !c.ok {
				if st != http.StatusBadRequest || body["error"] != oauth.CodeInvalidScope {
					t.Fatalf("got %d %v, want 400 invalid_scope", st, body)
				}
				return
			}
			if st != http.StatusOK || tokenClaims(t, body["access_token"].(string))["scope"] != c.scope {
				t.Fatalf("got %d %v, want a Txn-Token with scope %q", st, body, c.scope)
			}
		})
	}
}

// TestTokenServiceUserIssuersKeepSubjectsApart: with several userIssuers each has its subjectPrefix, so "alice"
// of one identity provider and "alice" of another are different subjects to every tool, policy and revocation.
func TestTokenServiceUserIssuersKeepSubjectsApart(t *testing.T) {
	corp := newTestIDP(t, "https://login.corp.example", "subjectPrefix: 'corp:'")
	partner := newTestIDP(t, "https://partner-idp.example", "subjectPrefix: 'partner:'")
	_, post := tokenController(t, "", corp, partner)
	for _, c := range []struct {
		idp  testIDP
		want string
	}{{corp, "corp:alice"}, {partner, "partner:alice"}} {
		st, body := post("spiffe://example.org/agent/planner", url.Values{
			"requested_token_type": {oauth.TokenTypeTxnToken},
			"audience":             {"example.org"},
			"scope":                {"orders.read"},
			"subject_token":        {c.idp.token(t, "alice", nil)},
			"subject_token_type":   {oauth.TokenTypeAccessToken},
		})
		if st != http.StatusOK {
			t.Fatalf("%s: %d %v", c.idp.iss, st, body)
		}
		if sub := tokenClaims(t, body["access_token"].(string))["sub"]; sub != c.want {
			t.Errorf("alice of %s got Txn-Token sub %v, want %s", c.idp.iss, sub, c.want)
		}
	}
}

// TestTokenServiceEndpoint: behind a load balancer or on 0.0.0.0 the listen address is not the URL agents call:
// their proofs are made for tokenService.endpoint, and it is the iss of what the service issues.
func TestTokenServiceEndpoint(t *testing.T) {
	const public = "https://controller.example.org:8445/token"
	idp := newTestIDP(t, "https://login.example", "scopes: [orders.read]")
	_, post := tokenController(t, "endpoint: '"+public+"'", idp)
	st, body := post("spiffe://example.org/agent/planner", url.Values{
		"requested_token_type": {oauth.TokenTypeTxnToken},
		"audience":             {"example.org"},
		"scope":                {"orders.read"},
		"subject_token":        {idp.token(t, "alice", nil)},
		"subject_token_type":   {oauth.TokenTypeAccessToken},
	})
	if st != http.StatusOK {
		t.Fatalf("a proof made for %s: %d %v", public, st, body)
	}
	if iss := tokenClaims(t, body["access_token"].(string))["iss"]; iss != public {
		t.Errorf("Txn-Token iss %v, want %s", iss, public)
	}
}

// TestTokenServiceRefusesRevokedUsersByTheirName: with subject prefixes, a user revocation (as an operator or a
// security event names the user) refuses the user as the token service names them: an iss_sub under its issuer's
// prefix only, an email under every issuer's. -disable refuses new tokens too. A user revocation that can match
// no one is accepted with a warning.
func TestTokenServiceRefusesRevokedUsersByTheirName(t *testing.T) {
	corp := newTestIDP(t, "https://login.corp.example", "subjectPrefix: 'corp:'")
	partner := newTestIDP(t, "https://partner-idp.example", "subjectPrefix: 'partner:'")
	c, post := tokenController(t, "", corp, partner)
	admin := adminClient(c.cfg)
	exchange := func(idp testIDP, sub string, iat time.Time) (int, map[string]any) {
		return post("spiffe://example.org/agent/planner", url.Values{
			"requested_token_type": {oauth.TokenTypeTxnToken},
			"audience":             {"example.org"},
			"scope":                {"orders.read"},
			"subject_token":        {idp.token(t, sub, map[string]any{"iat": iat.Unix()})},
			"subject_token_type":   {oauth.TokenTypeAccessToken},
		})
	}
	revoke := func(req RevokeRequest) map[string]any {
		t.Helper()
		code, body := adminPost(t, admin, "/v1/revocations", req)
		var m map[string]any
		if code != http.StatusCreated || json.Unmarshal(body, &m) != nil {
			t.Fatalf("revoke %+v: %d %s", req, code, body)
		}
		return m
	}
	before, after := time.Now().Add(-time.Minute), time.Now().Add(5*time.Second)

	revoke(RevokeRequest{Kind: "user_iss_sub", Iss: corp.iss, Value: "alice", Reason: "test"})
	revoke(RevokeRequest{Kind: "user_email", Value: "bob@Example.org", Reason: "test", Disable: true})
	for _, tc := range []struct {
		idp      testIDP
		sub      string
		iat      time.Time
		refused  bool
		whatCase string
	}{
		{corp, "alice", before, true, "iss_sub under its issuer's prefix"},
		{partner, "alice", before, false, "another issuer's alice"},
		{corp, "alice", after, false, "a token issued after the sessions were revoked"},
		{corp, "bob@example.org", after, true, "a disabled email under the first prefix, new token"},
		{partner, "bob@EXAMPLE.org", after, true, "a disabled email under the second prefix, new token"},
	} {
		code, body := exchange(tc.idp, tc.sub, tc.iat)
		if refused := code == http.StatusBadRequest && body["error"] == "invalid_grant"; refused != tc.refused {
			t.Errorf("%s: %d %v, want refused %t", tc.whatCase, code, body, tc.refused)
		}
	}

	if w := revoke(RevokeRequest{Kind: "user_iss_sub", Iss: "https://elsewhere.example", Value: "carol", Reason: "test"})["warning"]; w == nil ||
		!strings.Contains(w.(string), "refuses no call") {
		t.Errorf("revoking a user of an untrusted issuer: warning %v, want one saying it refuses no call", w)
	}
	if w := revoke(RevokeRequest{Kind: "user_opaque", Value: "00u-1", Reason: "test"})["warning"]; w != nil {
		t.Errorf("revoking an opaque user: warning %v, want none", w)
	}
}
