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
func TestDelegatedUser(t *testing.T) {
	dir := t.TempDir()
	idpKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: idpKey.Public(), KeyID: "idp-1", Algorithm: "ES256", Use: "sig"}}})
	jwksFile := writeFile(t, dir, "idp-jwks.json", string(jwks))
	tokenAddr := freeAddr(t)
	c := startController(t, dir, fmt.Sprintf(`tokenService:
  listen: %s
  userIssuers:
    - {issuer: "https://idp.example.com", audiences: [agentauth], jwksFile: %s}
`, tokenAddr, jwksFile))
	c.ctl(t, false, "policy", "apply", writeFile(t, dir, "weather.cedar", weatherPolicy+`
@id("alice-only-for-alerts")
forbid (principal, action, resource == Tool::"weather.tools.local")
when { context.path == "/alerts" && !(context has delegated_subject && context.delegated_subject == "alice") };
`))
	p := startManagedPairWith(t, c, managedOptions{
		route:   "      txnToken: {scope: weather.read}\n",
		egress:  fmt.Sprintf("  tokenService: {endpoint: %q}\n", "https://"+tokenAddr+"/token"),
		ingress: fmt.Sprintf("  txnToken: {issuer: %q, jwksURL: %q}\n", "https://"+tokenAddr+"/token", "https://"+tokenAddr+"/jwks"),
	})

	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: idpKey}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "idp-1"))
	if err != nil {
		t.Fatal(err)
	}
	userToken := func(sub string) string {
		now := time.Now()
		tok, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: "https://idp.example.com", Subject: sub,
			Audience: jwt.Audience{"agentauth"}, IssuedAt: jwt.NewNumericDate(now.Add(-time.Second)),
			Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	url := "http://" + toolHost + "/whoami"
	code, w, body := getWhoami(t, p.agent(), url, map[string]string{"Authorization": "Bearer " + userToken("alice")})
	if code != http.StatusOK {
		t.Fatalf("call for alice: %d %s", code, body)
	}
	if got := w.Headers["x-agentauth-delegated-subject"]; len(got) != 1 || got[0] != "alice" {
		t.Fatalf("tool saw delegated subject %v, want [alice]", got)
	}
	if got := w.Headers["x-agentauth-transaction-id"]; len(got) != 1 || got[0] == "" {
		t.Fatalf("tool saw no transaction id: %v", w.Headers)
	}
	if _, leaked := w.Headers["authorization"]; leaked {
		t.Fatal("the user's raw token reached the tool")
	}

	// Policy sees the delegated user: /alerts only for alice.
	if code, _, body := getWhoami(t, p.agent(), "http://"+toolHost+"/alerts", map[string]string{"Authorization": "Bearer " + userToken("bob")}); code != http.StatusForbidden || !strings.Contains(body, "alice-only-for-alerts") {
		t.Fatalf("bob on /alerts: %d %s, want 403 by alice-only-for-alerts", code, body)
	}

	// A forged user token (another key) is refused at the token service: the call does not go out as alice.
	evilKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	evil, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: evilKey}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "idp-1"))
	forged, _ := jwt.Signed(evil).Claims(jwt.Claims{Issuer: "https://idp.example.com", Subject: "alice",
		Audience: jwt.Audience{"agentauth"}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).Serialize()
	if code, _, body := getWhoami(t, p.agent(), url, map[string]string{"Authorization": "Bearer " + forged}); code < 400 {
		t.Fatalf("forged user token: %d %s, want a refusal", code, body)
	}

	// Revoking the user refuses calls made for her, whichever agent makes them.
	c.ctl(t, false, "revoke", "-kind", "user_opaque", "-value", "alice", "-reason", "account compromised")
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, _, body = getWhoami(t, p.agent(), url, map[string]string{"Authorization": "Bearer " + userToken("alice")})
		if code == http.StatusForbidden || code == http.StatusBadRequest || code == http.StatusUnauthorized {
			if !strings.Contains(body, "revoked") && !strings.Contains(body, "invalid_grant") {
				t.Fatalf("refusal for revoked alice does not say revoked: %d %s", code, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("call for revoked alice still %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Calls for other users go on.
	if code, _, body := getWhoami(t, p.agent(), url, map[string]string{"Authorization": "Bearer " + userToken("bob")}); code != http.StatusOK {
		t.Fatalf("call for bob after alice's revocation: %d %s", code, body)
	}
}
