package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const idpIssuer = "https://idp.example.com"

// startWithTransmitter starts a delegated pair whose controller trusts one SSF transmitter, the identity provider
// idpIssuer, pushing to ssfAddr. It returns the test's directory, the pair, the transmitter's signing key, the push
// address, and a runner of the ssf-transmit command that fails the test unless it fails exactly when wantErr.
func startWithTransmitter(t *testing.T) (dir string, e *delegatedEnv, key, ssfAddr string,
	transmit func(wantErr bool, args ...string) string) {
	t.Helper()
	dir = t.TempDir()
	transmit = func(wantErr bool, args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(binDir, "ssf-transmit"), args...).CombinedOutput()
		if (err != nil) != wantErr {
			t.Fatalf("ssf-transmit %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	key = filepath.Join(dir, "idp.pem")
	transmit(false, "-gen-key", key)
	jwks := writeFile(t, dir, "idp-jwks.json", transmit(false, "-key", key, "-print-jwks"))
	ssfAddr = freeAddr(t)
	e = startDelegated(t, fmt.Sprintf(`ssf:
  listen: %s
  transmitters:
    - {issuer: %q, audience: [https://agentauth.example.org], jwksFile: %s}
`, ssfAddr, idpIssuer, jwks))
	return dir, e, key, ssfAddr, transmit
}

// TestSSFSessionRevoked: an identity provider pushes a signed CAEP session-revoked SET for the agent; the very next
// call through the sidecars is refused, naming the event's jti. Bad SETs get the RFC 8935 answer and change nothing.
func TestSSFSessionRevoked(t *testing.T) {
	dir, e, key, ssfAddr, transmit := startWithTransmitter(t)
	p := e.p
	url := "http://" + toolHost + "/whoami"
	const alice, bob = "alice@example.com", "bob@example.com"
	if code, _, body := e.callFor(t, "/whoami", alice); code != http.StatusOK {
		t.Fatalf("call for alice: %d %s", code, body)
	}

	send := func(wantErr bool, signKey, iss, aud, jti, event string, subject ...string) string {
		t.Helper()
		args := append([]string{"-key", signKey, "-iss", iss, "-aud", aud, "-url", "http://" + ssfAddr + "/ssf/events",
			"-event", event, "-jti", jti, "-reason", "security event"}, subject...)
		return transmit(wantErr, args...)
	}
	push := func(wantErr bool, signKey, iss, aud, jti string) string {
		t.Helper()
		return send(wantErr, signKey, iss, aud, jti, "session-revoked", "-sub-email", alice)
	}

	t.Run("bad SETs change nothing", func(t *testing.T) {
		other := filepath.Join(dir, "other.pem")
		transmit(false, "-gen-key", other)
		for _, tc := range []struct{ name, key, iss, aud, want string }{
			{"wrong key", other, idpIssuer, "https://agentauth.example.org", "invalid_key"},
			{"wrong issuer", key, "https://evil.example.com", "https://agentauth.example.org", "invalid_issuer"},
			{"wrong audience", key, idpIssuer, "https://elsewhere.example.org", "invalid_audience"},
		} {
			out := push(true, tc.key, tc.iss, tc.aud, "bad-"+strings.ReplaceAll(tc.name, " ", "-"))
			if !strings.Contains(out, "400") || !strings.Contains(out, tc.want) {
				t.Errorf("%s: got %s, want 400 %s", tc.name, out, tc.want)
			}
		}
		if code, _, body := e.callFor(t, "/whoami", alice); code != http.StatusOK {
			t.Fatalf("after refused SETs: %d %s", code, body)
		}
	})

	t.Run("the user's session is revoked", func(t *testing.T) {
		const jti = "caep-e2e-session-revoked-1"
		if out := push(false, key, idpIssuer, "https://agentauth.example.org", jti); !strings.Contains(out, "202") {
			t.Fatalf("push: %s, want 202", out)
		}
		body := waitRefused(t, func() (int, string) { c, _, b := e.callFor(t, "/whoami", alice); return c, b }, jti)
		if !strings.Contains(body, "revoked") {
			t.Fatalf("refusal %s is not a revocation", body)
		}
		// The refusing sidecar's decision record (its audit log line) names the event too. The egress sidecar
		// refuses first when the token service will not exchange the revoked user's token; a Txn-Token it
		// already held is refused by the ingress sidecar. The record is written as the request ends, and its log
		// line reaches us through a pipe, so it may trail the response a little.
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.egress.out.String()+p.ingress.out.String(), jti); {
			if time.Now().After(deadline) {
				t.Fatalf("no decision log mentions %s", jti)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code, _, body := e.callFor(t, "/whoami", bob); code != http.StatusOK {
			t.Fatalf("call for bob: %d %s", code, body)
		}
		// A replayed SET is answered 202 (already processed) and applies nothing new.
		if out := push(false, key, idpIssuer, "https://agentauth.example.org", jti); !strings.Contains(out, "202") {
			t.Fatalf("replayed SET: %s, want 202", out)
		}
	})

	// The same, for a user the identity provider names by issuer and subject (iss_sub), with the agent reusing
	// bob's token: its sidecar keeps the Txn-Token it got for it, so the ingress sidecar is the one to refuse.
	// The controller resolves the revocation to the name the token service gives bob (its issuer's prefix + sub).
	t.Run("a user named by issuer and subject is revoked", func(t *testing.T) {
		const jti = "caep-e2e-session-revoked-iss-sub"
		header := map[string]string{"Authorization": "Bearer " + e.userToken(t, bob)}
		call := func() (int, string) {
			code, _, body := getWhoami(t, p.agent(), "http://"+toolHost+"/whoami", header)
			return code, body
		}
		if code, body := call(); code != http.StatusOK {
			t.Fatalf("call for bob before: %d %s", code, body)
		}
		if out := send(false, key, idpIssuer, "https://agentauth.example.org", jti, "session-revoked",
			"-sub-iss-sub", idpIssuer+","+bob); !strings.Contains(out, "202") {
			t.Fatalf("push: %s, want 202", out)
		}
		waitRefused(t, call, jti)
		if !strings.Contains(p.ingress.out.String(), jti) {
			t.Error("the ingress sidecar's decision log does not name the event: it was not the one to refuse")
		}
	})

	t.Run("the agent's session is revoked: refused, then re-issued", func(t *testing.T) {
		out := send(false, key, idpIssuer, "https://agentauth.example.org", "caep-e2e-agent-session-1",
			"session-revoked", "-sub-uri", agentID.String())
		if !strings.Contains(out, "202") {
			t.Fatalf("push: %s", out)
		}
		// The agent's sidecar sees its own credentials revoked and gets new ones (new keys); calls resume.
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(p.egress.out.String(), "credentials were revoked; getting new ones") {
			if time.Now().After(deadline) {
				t.Fatal("the agent's sidecar did not renew its revoked credentials")
			}
			time.Sleep(20 * time.Millisecond)
		}
		waitStatus(t, p, url, http.StatusOK)
	})

	// A compromised key proves nothing: whoever stole it could renew with it too. The agent stays refused until
	// it attests again (a new join token, or the local socket).
	t.Run("the agent's credential is compromised: refused, and not renewed", func(t *testing.T) {
		out := send(false, key, idpIssuer, "https://agentauth.example.org", "risc-e2e-compromise-1",
			"credential-compromise", "-sub-uri", agentID.String(), "-field", "credential_type=\"x509\"")
		if !strings.Contains(out, "202") {
			t.Fatalf("push: %s", out)
		}
		waitRefused(t, func() (int, string) { c, _, b := getWhoami(t, p.agent(), url, nil); return c, b }, "revoked")
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(p.egress.out.String(), "reported compromised") {
			if time.Now().After(deadline) {
				t.Fatal("the issuer did not refuse to renew the compromised credentials:\n" + p.egress.out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code, _, body := getWhoami(t, p.agent(), url, nil); code != http.StatusForbidden {
			t.Fatalf("compromised agent: %d %s", code, body)
		}
	})

	t.Run("the agent's account is disabled: withheld", func(t *testing.T) {
		const jti = "risc-e2e-disabled-1"
		if out := send(false, key, idpIssuer, "https://agentauth.example.org", jti, "account-disabled",
			"-sub-uri", agentID.String()); !strings.Contains(out, "202") {
			t.Fatalf("push: %s", out)
		}
		waitRefused(t, func() (int, string) { c, _, b := getWhoami(t, p.agent(), url, nil); return c, b }, "revoked")
		// Renewal is refused too: the agent stays cut off.
		time.Sleep(300 * time.Millisecond)
		if code, _, body := getWhoami(t, p.agent(), url, nil); code != http.StatusForbidden {
			t.Fatalf("withheld agent: %d %s", code, body)
		}
	})
}
