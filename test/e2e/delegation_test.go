package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestDelegatedUser: the agent acts for a user. It passes the user's token as it always has (Authorization:
// Bearer); the egress sidecar exchanges it at the controller's token service for a Transaction Token (RFC 8693),
// the WPT binds it, the ingress sidecar verifies it, and the tool is told who the user is and the transaction id.
// A user-level revocation then refuses every call made for that user.
// delegatedEnv is a controller with a token service trusting one test identity provider, and a managed pair whose
// agent routes get Transaction Tokens.
type delegatedEnv struct {
	c      *controllerEnv
	p      *pair
	signer jose.Signer
	dir    string
}

func startDelegated(t *testing.T, extra ...string) *delegatedEnv {
	t.Helper()
	dir := t.TempDir()
	idpKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: idpKey.Public(), KeyID: "idp-1", Algorithm: "ES256", Use: "sig"}}})
	jwksFile := writeFile(t, dir, "idp-jwks.json", string(jwks))
	tokenAddr := freeAddr(t)
	c := startController(t, dir, append([]string{fmt.Sprintf(`tokenService:
  listen: %s
  userIssuers:
    - {issuer: "https://idp.example.com", audiences: [agentauth], jwksFile: %s, scopes: [weather.read, read]}
  accessTokens:
    - {workloads: [%q], audience: legacy-api, scopes: [read]}
`, tokenAddr, jwksFile, agentID)}, extra...)...)
	c.ctl(t, false, "policy", "apply", writeFile(t, dir, "weather.cedar", weatherPolicy+`
@id("alice-only-for-alerts")
forbid (principal, action, resource == Tool::"weather.tools.local")
when { context.path == "/alerts" && !(context has delegated_subject && context.delegated_subject == "alice@example.com") };
`))
	// A legacy API that only understands OAuth bearer tokens, reached without a sidecar on its side.
	legacy := freeAddr(t)
	lp := start(t, "sampletool", nil, "-listen", legacy)
	waitHTTP(t, lp, "http://"+legacy+"/whoami", http.StatusOK)
	p := startManagedPairWith(t, c, managedOptions{
		route: "      txnToken: {scope: weather.read}\n" + fmt.Sprintf(`    - name: legacy
      host: legacy.tools.local
      upstream: http://%s
      modes: [passthrough]
      accessToken: {audience: legacy-api, scope: read}
`, legacy),
		egress:  fmt.Sprintf("  tokenService: {endpoint: %q}\n", "https://"+tokenAddr+"/token"),
		ingress: fmt.Sprintf("  txnToken: {issuer: %q, jwksURL: %q}\n", "https://"+tokenAddr+"/token", "https://"+tokenAddr+"/jwks"),
	})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: idpKey}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "idp-1"))
	if err != nil {
		t.Fatal(err)
	}
	return &delegatedEnv{c: c, p: p, signer: signer, dir: dir}
}

// userToken is a token of the test identity provider for user sub, as an agent would be handed one.
func (e *delegatedEnv) userToken(t *testing.T, sub string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.Signed(e.signer).Claims(jwt.Claims{Issuer: "https://idp.example.com", Subject: sub,
		Audience: jwt.Audience{"agentauth"}, IssuedAt: jwt.NewNumericDate(now.Add(-time.Second)),
		Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// callFor makes the agent's call on behalf of user sub.
func (e *delegatedEnv) callFor(t *testing.T, path, sub string) (int, whoami, string) {
	t.Helper()
	return getWhoami(t, e.p.agent(), "http://"+toolHost+path, map[string]string{"Authorization": "Bearer " + e.userToken(t, sub)})
}

// TestDelegatedUser: the agent acts for a user. It passes the user's token as it always has (Authorization:
// Bearer); the egress sidecar exchanges it at the controller's token service for a Transaction Token (RFC 8693),
// the WPT binds it, the ingress sidecar verifies it, and the tool is told who the user is and the transaction id.
// A user-level revocation then refuses every call made for that user.
func TestDelegatedUser(t *testing.T) {
	e := startDelegated(t)
	const alice, bob = "alice@example.com", "bob@example.com"
	code, w, body := e.callFor(t, "/whoami", alice)
	if code != http.StatusOK {
		t.Fatalf("call for alice: %d %s", code, body)
	}
	if got := w.Headers["x-agentauth-delegated-subject"]; len(got) != 1 || got[0] != alice {
		t.Fatalf("tool saw delegated subject %v, want [%s]", got, alice)
	}
	if got := w.Headers["x-agentauth-transaction-id"]; len(got) != 1 || got[0] == "" {
		t.Fatalf("tool saw no transaction id: %v", w.Headers)
	}
	if _, leaked := w.Headers["authorization"]; leaked {
		t.Fatal("the user's raw token reached the tool")
	}

	// A legacy API gets an access token for it (RFC 8693), on behalf of the same user, never her raw token.
	code, body = func() (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://legacy.tools.local/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+e.userToken(t, alice))
		resp, err := e.p.agent().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}()
	var legacySaw struct {
		Bearer struct {
			Header map[string]any `json:"header"`
			Claims map[string]any `json:"claims"`
		} `json:"bearer"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &legacySaw) != nil {
		t.Fatalf("legacy call: %d %s", code, body)
	}
	if typ := legacySaw.Bearer.Header["typ"]; typ != "at+jwt" || legacySaw.Bearer.Claims["aud"] != "legacy-api" ||
		legacySaw.Bearer.Claims["sub"] != alice {
		t.Fatalf("legacy API got %+v, want an at+jwt for legacy-api on behalf of %s", legacySaw.Bearer, alice)
	}

	// Policy sees the delegated user: /alerts only for alice.
	if code, _, body := e.callFor(t, "/alerts", bob); code != http.StatusForbidden || !strings.Contains(body, "alice-only-for-alerts") {
		t.Fatalf("bob on /alerts: %d %s, want 403 by alice-only-for-alerts", code, body)
	}

	// A forged user token (another key) is refused at the token service: the call does not go out as alice.
	evilKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	evil, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: evilKey}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "idp-1"))
	forged, _ := jwt.Signed(evil).Claims(jwt.Claims{Issuer: "https://idp.example.com", Subject: alice,
		Audience: jwt.Audience{"agentauth"}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).Serialize()
	if code, _, body := getWhoami(t, e.p.agent(), "http://"+toolHost+"/whoami", map[string]string{"Authorization": "Bearer " + forged}); code < 400 {
		t.Fatalf("forged user token: %d %s, want a refusal", code, body)
	}

	// Revoking the user refuses calls made for her, whichever agent makes them; calls for others go on.
	e.c.ctl(t, false, "revoke", "--kind", "user_email", "--value", alice, "--reason", "account compromised")
	waitRefused(t, func() (int, string) { c, _, b := e.callFor(t, "/whoami", alice); return c, b }, "revoked")
	if code, _, body := e.callFor(t, "/whoami", bob); code != http.StatusOK {
		t.Fatalf("call for bob after alice's revocation: %d %s", code, body)
	}
}

// waitRefused retries call until it is refused (propagation is asynchronous) and checks the refusal mentions want.
func waitRefused(t *testing.T, call func() (int, string), want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := call()
		if code >= 400 {
			if !strings.Contains(body, want) {
				t.Fatalf("refusal %d %s does not mention %q", code, body, want)
			}
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d %s, want a refusal mentioning %q", code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
