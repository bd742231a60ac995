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

// delegatedEnv is a controller with a token service trusting test identity providers, and a managed pair whose
// agent routes get Transaction Tokens.
type delegatedEnv struct {
	c    *controllerEnv
	p    *pair
	idps []*testIdP // idps[0] signs userToken's tokens
	dir  string
}

// testIdP is an identity provider whose user tokens the token service trusts; it names its users prefix + sub.
type testIdP struct {
	issuer, prefix string
	signer         jose.Signer
	jwksFile       string
}

func newTestIdP(t *testing.T, dir, issuer, prefix string) *testIdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "idp-1", Algorithm: "ES256", Use: "sig"}}})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "idp-1"))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("https://", "", "/", "_").Replace(issuer)
	return &testIdP{issuer: issuer, prefix: prefix, signer: signer, jwksFile: writeFile(t, dir, name+"-jwks.json", string(jwks))}
}

// token is a user token of the identity provider for sub, issued at iat, as an agent would be handed one.
func (i *testIdP) token(t *testing.T, sub string, iat time.Time) string {
	t.Helper()
	tok, err := jwt.Signed(i.signer).Claims(jwt.Claims{Issuer: i.issuer, Subject: sub, Audience: jwt.Audience{"agentauth"},
		IssuedAt: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(time.Now().Add(10 * time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startDelegated starts a delegatedEnv whose token service trusts one identity provider, idpIssuer, without a
// subject prefix.
func startDelegated(t *testing.T, extra ...string) *delegatedEnv {
	t.Helper()
	dir := t.TempDir()
	return startDelegatedWith(t, dir, []*testIdP{newTestIdP(t, dir, idpIssuer, "")}, extra...)
}

func startDelegatedWith(t *testing.T, dir string, idps []*testIdP, extra ...string) *delegatedEnv {
	t.Helper()
	var issuers strings.Builder
	for _, i := range idps {
		fmt.Fprintf(&issuers, "    - {issuer: %q, audiences: [agentauth], jwksFile: %s, scopes: [weather.read, read], subjectPrefix: %q}\n",
			i.issuer, i.jwksFile, i.prefix)
	}
	tokenAddr := freeAddr(t)
	c := startController(t, dir, append([]string{fmt.Sprintf(`tokenService:
  listen: %s
  userIssuers:
%s  accessTokens:
    - {workloads: [%q], audience: legacy-api, scopes: [read]}
`, tokenAddr, issuers.String(), agentID)}, extra...)...)
	c.ctl(t, false, "policy", "apply", writeFile(t, dir, "weather.cedar", weatherPolicy+`
@id("alice-only-for-alerts")
forbid (principal, action, resource == Tool::"weather.tools.local")
when { context.path == "/alerts" && !(context has subject && context.subject == User::"alice@example.com") };

@id("only-for-users")
forbid (principal, action, resource == Tool::"weather.tools.local")
when { context.path == "/for-users" && !(context has subject) };
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
	return &delegatedEnv{c: c, p: p, idps: idps, dir: dir}
}

// userToken is a token of the first identity provider for user sub, as an agent would be handed one.
func (e *delegatedEnv) userToken(t *testing.T, sub string) string {
	t.Helper()
	return e.idps[0].token(t, sub, time.Now().Add(-time.Second))
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
	if got := w.Headers["x-agentauth-subject-kind"]; len(got) != 1 || got[0] != "user" {
		t.Fatalf("tool saw subject kind %v, want [user]", got)
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

	// Policy sees the delegated user: /alerts only for alice (the tool has no /alerts: 404 means policy let it through).
	if code, _, body := e.callFor(t, "/alerts", bob); code != http.StatusForbidden || !strings.Contains(body, "alice-only-for-alerts") {
		t.Fatalf("bob on /alerts: %d %s, want 403 by alice-only-for-alerts", code, body)
	}
	if code, _, body := e.callFor(t, "/alerts", alice); code != http.StatusNotFound {
		t.Fatalf("alice on /alerts: %d %s, want the tool's 404", code, body)
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

// TestSelfTxnTokenIsNoDelegatedSubject: without a user token the egress sidecar still gets a Txn-Token, naming
// the agent itself. Nobody delegated, so the tool gets no delegated subject and policy no context.subject; both
// see the subject kind "self". A rule for calls made for a user does not let the agent through on its own.
func TestSelfTxnTokenIsNoDelegatedSubject(t *testing.T) {
	e := startDelegated(t)
	code, w, body := getWhoami(t, e.p.agent(), "http://"+toolHost+"/whoami", nil)
	if code != http.StatusOK {
		t.Fatalf("call for itself: %d %s", code, body)
	}
	if got, ok := w.Headers["x-agentauth-delegated-subject"]; ok {
		t.Errorf("tool saw delegated subject %v for an agent acting for itself", got)
	}
	if got := w.Headers["x-agentauth-subject-kind"]; len(got) != 1 || got[0] != "self" {
		t.Errorf("tool saw subject kind %v, want [self]", got)
	}
	if got := w.Headers["x-agentauth-transaction-id"]; len(got) != 1 || got[0] == "" {
		t.Errorf("tool saw no transaction id: %v", w.Headers)
	}
	if code, _, body := getWhoami(t, e.p.agent(), "http://"+toolHost+"/for-users", nil); code != http.StatusForbidden ||
		!strings.Contains(body, "only-for-users") {
		t.Errorf("agent for itself on /for-users: %d %s, want 403 by only-for-users", code, body)
	}
	if code, _, body := e.callFor(t, "/for-users", "alice@example.com"); code != http.StatusNotFound {
		t.Errorf("agent for alice on /for-users: %d %s, want the tool's 404 (policy let it through)", code, body)
	}
}

// TestUserRevocationSessionsAndDisable: a revocation of a user either ends her sessions (tokens issued before it
// are refused, newer ones pass) or disables her (every token refused, new ones too, until unrevoked), as CAEP
// session-revoked and RISC account-disabled do.
func TestUserRevocationSessionsAndDisable(t *testing.T) {
	e := startDelegated(t)
	idp := e.idps[0]
	call := func(tok string) (int, string) {
		code, _, body := getWhoami(t, e.p.agent(), "http://"+toolHost+"/whoami", map[string]string{"Authorization": "Bearer " + tok})
		return code, body
	}

	const carol = "carol@example.com"
	old := idp.token(t, carol, time.Now().Add(-time.Minute))
	if code, body := call(old); code != http.StatusOK {
		t.Fatalf("call for carol: %d %s", code, body)
	}
	e.c.ctl(t, false, "revoke", "-kind", "user_email", "-value", carol, "-reason", "signed out everywhere", "-sessions")
	waitRefused(t, func() (int, string) { return call(old) }, "revoked")
	// A token issued after the revocation starts a new session. Token times are whole seconds, so one issued in
	// the revocation's second is still refused: the next second's passes.
	waitStatusFunc(t, func() (int, string) { return call(idp.token(t, carol, time.Now())) }, http.StatusOK)

	const dave = "dave@example.com"
	if code, body := call(idp.token(t, dave, time.Now().Add(-time.Minute))); code != http.StatusOK {
		t.Fatalf("call for dave: %d %s", code, body)
	}
	out := e.c.ctl(t, false, "revoke", "-o", "json", "-kind", "user_email", "-value", dave, "-reason", "left the company", "-disable")
	var rev struct {
		ID        string `json:"id"`
		NotBefore string `json:"not_before"`
	}
	if err := json.Unmarshal([]byte(out), &rev); err != nil || rev.ID == "" || rev.NotBefore != "" {
		t.Fatalf("revoke -disable answered %s, want a revocation without not_before", out)
	}
	waitRefused(t, func() (int, string) { return call(idp.token(t, dave, time.Now())) }, rev.ID)
	// A token issued after the revocation's second is refused too: disabled is not a session that ended.
	if code, body := call(idp.token(t, dave, time.Now().Add(2*time.Second))); code != http.StatusForbidden || !strings.Contains(body, rev.ID) {
		t.Fatalf("call for disabled dave with a new token: %d %s, want 403 naming %s", code, body, rev.ID)
	}
	e.c.ctl(t, false, "unrevoke", rev.ID)
	waitStatusFunc(t, func() (int, string) { return call(idp.token(t, dave, time.Now())) }, http.StatusOK)
}

// waitStatusFunc retries call until it answers want (propagation is asynchronous).
func waitStatusFunc(t *testing.T, call func() (int, string), want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := call()
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d %s, want %d", code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
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
