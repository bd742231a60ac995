package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const idpIssuer = "https://idp.example.com"

// TestSSFSessionRevoked: an identity provider pushes a signed CAEP session-revoked SET for the agent; the very next
// call through the sidecars is refused, naming the event's jti. Bad SETs get the RFC 8935 answer and change nothing.
func TestSSFSessionRevoked(t *testing.T) {
	dir := t.TempDir()
	transmit := func(wantErr bool, args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(binDir, "ssf-transmit"), args...).CombinedOutput()
		if (err != nil) != wantErr {
			t.Fatalf("ssf-transmit %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	key := filepath.Join(dir, "idp.pem")
	transmit(false, "-gen-key", key)
	jwks := writeFile(t, dir, "idp-jwks.json", transmit(false, "-key", key, "-print-jwks"))
	ssfAddr := freeAddr(t)
	c := startController(t, dir, fmt.Sprintf(`ssf:
  listen: %s
  transmitters:
    - {issuer: %q, audience: [https://agentauth.example.org], jwksFile: %s}
`, ssfAddr, idpIssuer, jwks))
	c.ctl(t, false, "policy", "apply", writeFile(t, dir, "weather.cedar", weatherPolicy))
	p := startManagedPair(t, c)
	url := "http://" + toolHost + "/whoami"
	waitStatus(t, p, url, http.StatusOK)

	push := func(wantErr bool, signKey, iss, aud, jti string) string {
		t.Helper()
		return transmit(wantErr, "-key", signKey, "-iss", iss, "-aud", aud, "-url", "http://"+ssfAddr+"/ssf/events",
			"-event", "session-revoked", "-sub-uri", agentID.String(), "-jti", jti, "-reason", "session hijack suspected")
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
		if code, _, body := getWhoami(t, p.agent(), url, nil); code != http.StatusOK {
			t.Fatalf("after refused SETs: %d %s", code, body)
		}
	})

	const jti = "caep-e2e-session-revoked-1"
	if out := push(false, key, idpIssuer, "https://agentauth.example.org", jti); !strings.Contains(out, "202") {
		t.Fatalf("push: %s, want 202", out)
	}
	body := waitStatus(t, p, url, http.StatusForbidden)
	if !strings.Contains(body, `"revoked"`) || !strings.Contains(body, jti) {
		t.Fatalf("refusal %s does not name the SET jti %s", body, jti)
	}
	// The sidecar's decision record (its audit log line) names the event too.
	if !strings.Contains(p.ingress.out.String(), jti) {
		t.Fatalf("ingress decision log does not mention %s", jti)
	}
	// A replayed SET is answered 202 (already processed) and applied nothing new.
	if out := push(false, key, idpIssuer, "https://agentauth.example.org", jti); !strings.Contains(out, "202") {
		t.Fatalf("replayed SET: %s, want 202", out)
	}
}
