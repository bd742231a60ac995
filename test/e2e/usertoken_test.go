package e2e

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUserTokenMinter walks docs/delegation.md with examples/usertoken as the identity provider: the controller's
// token service trusts the JWK Set it printed, the agent calls with a token it minted, and the tool is told who
// the user is. After a --sessions revocation of the user, a newly minted token (a new sign-in) passes again.
func TestUserTokenMinter(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "idp.pem")
	minter(t, "-gen-key", key)
	jwks := writeFile(t, dir, "idp-jwks.json", minter(t, "-key", key, "-print-jwks"))
	e := startDelegatedWith(t, dir, []*testIdP{{issuer: idpIssuer, jwksFile: jwks}})

	const alice = "alice@example.com"
	mint := func() string {
		return strings.TrimSpace(minter(t, "-key", key, "-iss", idpIssuer, "-sub", alice, "-aud", "agentauth", "-ttl", "10m"))
	}
	call := func(tok string) (int, whoami, string) {
		return getWhoami(t, e.p.agent(), "http://"+toolHost+"/whoami", map[string]string{"Authorization": "Bearer " + tok})
	}
	old := mint()
	code, w, body := call(old)
	if code != http.StatusOK {
		t.Fatalf("call with a minted token: %d %s", code, body)
	}
	if got := w.Headers["x-agentauth-delegated-subject"]; len(got) != 1 || got[0] != alice {
		t.Fatalf("tool saw delegated subject %v, want [%s]", got, alice)
	}
	if got := w.Headers["x-agentauth-subject-kind"]; len(got) != 1 || got[0] != "user" {
		t.Fatalf("tool saw subject kind %v, want [user]", got)
	}

	e.c.ctl(t, false, "revoke", "--kind", "user_email", "--value", alice, "--reason", "signed out everywhere", "--sessions")
	waitRefused(t, func() (int, string) { c, _, b := call(old); return c, b }, "revoked")
	// A new sign-in: a token minted after the revocation (in a later second: token times are whole seconds).
	waitStatusFunc(t, func() (int, string) { c, _, b := call(mint()); return c, b }, http.StatusOK)
}

// minter runs examples/usertoken and returns its output.
func minter(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "usertoken"), args...).Output()
	if err != nil {
		t.Fatalf("usertoken %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
