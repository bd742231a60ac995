package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/signals"
)

// TestUserRevocationWithSubjectPrefixes: with two trusted user issuers the token service names each user
// subjectPrefix + sub. A security event names the user as the identity provider does; the revocation must refuse
// the user as the token service names them, whichever RFC 9493 format the event uses: an iss_sub only under its
// issuer's prefix, an email or opaque id under every issuer's. Both the token service (a new exchange) and the
// ingress sidecar (a Txn-Token the agent already holds) refuse. A user revocation that can match no one is
// accepted, but never silently.
func TestUserRevocationWithSubjectPrefixes(t *testing.T) {
	dir := t.TempDir()
	const idpB = "https://idp-b.example.com"
	a, b := newTestIdP(t, dir, idpIssuer, "a:"), newTestIdP(t, dir, idpB, "b:")

	// The SSF transmitter is the first identity provider; its SETs are signed here.
	setKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: setKey, KeyID: "set-1", Algorithm: "ES256", Use: "sig"}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}})
	ssfAddr := freeAddr(t)
	e := startDelegatedWith(t, dir, []*testIdP{a, b}, fmt.Sprintf(`ssf:
  listen: %s
  transmitters:
    - {issuer: %q, audience: [https://agentauth.example.org], jwksFile: %s}
`, ssfAddr, idpIssuer, writeFile(t, dir, "ssf-jwks.json", string(jwks))))

	push := func(jti string, sub signals.SubjectID) {
		t.Helper()
		set, err := signals.Sign(jwk, signals.SETClaims{Issuer: idpIssuer, Audience: []string{"https://agentauth.example.org"},
			JTI: jti, Subject: sub, Events: map[string]map[string]any{signals.EventSessionRevoked: {}}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post("http://"+ssfAddr+"/ssf/events", signals.MediaTypeSET, strings.NewReader(set))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("push %s: %d %s, want 202", jti, resp.StatusCode, body)
		}
	}
	call := func(tok string) (int, whoami, string) {
		return getWhoami(t, e.p.agent(), "http://"+toolHost+"/whoami", map[string]string{"Authorization": "Bearer " + tok})
	}
	email := func(v string) signals.SubjectID { return signals.SubjectID{Format: signals.FormatEmail, Email: v} }
	issSub := func(iss, sub string) signals.SubjectID {
		return signals.SubjectID{Format: signals.FormatIssSub, Iss: iss, Sub: sub}
	}
	opaque := func(id string) signals.SubjectID { return signals.SubjectID{Format: signals.FormatOpaque, ID: id} }

	type user struct {
		idp *testIdP
		sub string
	}
	for _, tc := range []struct {
		name    string
		subject signals.SubjectID
		refused []user // users the event is about, as each identity provider names them
		spared  user   // the same sub under another issuer, when the event names its issuer
	}{
		{"email", email("Carol@Example.com"), []user{{a, "Carol@example.com"}, {b, "Carol@EXAMPLE.com"}}, user{}},
		{"iss_sub", issSub(idpB, "dave"), []user{{b, "dave"}}, user{a, "dave"}},
		{"opaque", opaque("00u-erin"), []user{{a, "00u-erin"}, {b, "00u-erin"}}, user{}},
		{"complex", signals.SubjectID{Format: signals.FormatComplex, Members: map[string]signals.SubjectID{
			"user": email("frank@example.com"), "session": opaque("idp-session-7")}},
			[]user{{a, "frank@example.com"}}, user{}},
		{"aliases", signals.SubjectID{Format: signals.FormatAliases, Identifiers: []signals.SubjectID{
			email("grace@example.com"), issSub(idpIssuer, "00u-grace")}},
			[]user{{a, "00u-grace"}, {b, "grace@example.com"}}, user{b, "00u-grace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jti := "prefix-e2e-" + tc.name
			before := time.Now().Add(-time.Minute)
			// held: a token the agent uses before and after the event (its sidecar keeps the Txn-Token, so the
			// ingress sidecar refuses); fresh: one issued before the event, first exchanged after it (the token
			// service refuses).
			held := make([]string, len(tc.refused))
			for i, u := range tc.refused {
				held[i] = u.idp.token(t, u.sub, before)
				code, w, body := call(held[i])
				if code != http.StatusOK {
					t.Fatalf("call for %s%s before the event: %d %s", u.idp.prefix, u.sub, code, body)
				}
				if got := w.Headers["x-agentauth-delegated-subject"]; len(got) != 1 || got[0] != u.idp.prefix+u.sub {
					t.Fatalf("tool saw delegated subject %v, want [%s%s]", got, u.idp.prefix, u.sub)
				}
			}
			push(jti, tc.subject)
			for i, u := range tc.refused {
				waitRefused(t, func() (int, string) { c, _, b := call(held[i]); return c, b }, jti)
				if c, _, body := call(u.idp.token(t, u.sub, before.Add(time.Second))); c < 400 || !strings.Contains(body, jti) {
					t.Errorf("new exchange for %s%s: %d %s, want a refusal naming %s", u.idp.prefix, u.sub, c, body, jti)
				}
			}
			if s := tc.spared; s.idp != nil {
				if c, _, body := call(s.idp.token(t, s.sub, before)); c != http.StatusOK {
					t.Errorf("call for %s%s, whom the event does not name: %d %s", s.idp.prefix, s.sub, c, body)
				}
			}
		})
	}

	t.Run("a user no trusted issuer names is accepted, and said to refuse nothing", func(t *testing.T) {
		const jti = "prefix-e2e-unknown-issuer"
		push(jti, issSub("https://elsewhere.example.com", "heidi"))
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.c.proc.out.String(), "refuses nothing"); {
			if time.Now().After(deadline) {
				t.Fatal("the controller did not log that the revocation refuses nothing")
			}
			time.Sleep(20 * time.Millisecond)
		}
		out := e.c.ctl(t, false, "revoke", "-o", "json", "-kind", "user_iss_sub", "-iss", "https://elsewhere.example.com",
			"-value", "heidi", "-reason", "test")
		var answer struct {
			ID      string `json:"id"`
			Warning string `json:"warning"`
		}
		if err := json.Unmarshal([]byte(out), &answer); err != nil || answer.ID == "" ||
			!strings.Contains(answer.Warning, "refuses no call") {
			t.Fatalf("admin answer %s, want the revocation with a warning that it refuses no call", out)
		}
	})
}
