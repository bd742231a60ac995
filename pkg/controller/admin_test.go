package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/wire"
)

// adminClient talks to the admin API on cfg's Unix socket.
func adminClient(cfg *Config) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", cfg.Admin.Socket)
	}}}
}

// adminPost posts v as JSON to the admin API path and returns the status and body.
func adminPost(t *testing.T, admin *http.Client, path string, v any) (int, []byte) {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Post("http://admin"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out.Bytes()
}

// TestAdminJoinTokenRefusesControlPlaneIDs: no join token is made for the controller's xDS identity (which
// sidecars trust to serve them policies and revocations) or the issuer's own; a workload ID gets one.
func TestAdminJoinTokenRefusesControlPlaneIDs(t *testing.T) {
	cfg := testConfig(t, "")
	c, _ := runController(t, cfg)
	admin := adminClient(cfg)
	tests := []struct {
		name string
		id   string
		want int
	}{
		{"controller xDS identity", wire.ControllerID(c.td).String(), http.StatusBadRequest},
		{"issuer identity", wire.IssuerID(c.td).String(), http.StatusBadRequest},
		{"workload", "spiffe://example.org/agent/a", http.StatusCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := adminPost(t, admin, "/v1/join-tokens", JoinTokenRequest{SPIFFEID: tt.id, TTL: time.Hour})
			if code != tt.want {
				t.Fatalf("join token for %s: HTTP %d (%s), want %d", tt.id, code, body, tt.want)
			}
		})
	}
}

// adminGet gets the admin API path and decodes the JSON answer into v.
func adminGet(t *testing.T, admin *http.Client, path string, v any) []byte {
	t.Helper()
	resp, err := admin.Get("http://admin" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", path, resp.StatusCode, body.Bytes())
	}
	if err := json.Unmarshal(body.Bytes(), v); err != nil {
		t.Fatal(err)
	}
	return body.Bytes()
}

// TestAdminIdentities: GET /v1/identities lists the certificates issued and the join tokens, used or not, and
// never a token's secret or the whole hash the store keeps of it; expired certificates only when asked.
func TestAdminIdentities(t *testing.T) {
	cfg := testConfig(t, "")
	c, _ := runController(t, cfg)
	admin := adminClient(cfg)
	token := func(id string) string {
		code, body := adminPost(t, admin, "/v1/join-tokens", JoinTokenRequest{SPIFFEID: id, TTL: time.Hour})
		if code != http.StatusCreated {
			t.Fatalf("join token: HTTP %d %s", code, body)
		}
		var jt JoinTokenResponse
		if err := json.Unmarshal(body, &jt); err != nil {
			t.Fatal(err)
		}
		return jt.Token
	}
	usedToken, unusedToken := token("spiffe://example.org/agent/used"), token("spiffe://example.org/agent/unused")
	w, err := attestWorkload(t, c.issuerLn().Addr().String(), c.ca, usedToken)
	if err != nil {
		t.Fatal(err)
	}
	leaf := w.svid.Certificates[0]
	old := time.Now().Add(-time.Hour)
	if _, err := c.store.IssuedCerts().Put(&agentauthv1.IssuedCert{Serial: "0ld", SpiffeId: "spiffe://example.org/agent/gone",
		NotBefore: timestamppb.New(old.Add(-time.Hour)), NotAfter: timestamppb.New(old)}); err != nil {
		t.Fatal(err)
	}

	var ids IdentitiesResponse
	raw := adminGet(t, admin, "/v1/identities", &ids)
	for _, secret := range []string{usedToken, unusedToken, hashOf(usedToken), hashOf(unusedToken)} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the answer shows a join token or its stored hash:\n%s", raw)
		}
	}
	// The controller's own certificates (issuer, xDS) are issued identities too.
	issued := func() map[string]IssuedIdentity {
		m := map[string]IssuedIdentity{}
		for _, i := range ids.Issued {
			m[strings.TrimPrefix(i.SPIFFEID, "spiffe://example.org/")] = i
		}
		return m
	}
	got := issued()
	if a := got["agent/used"]; len(got) != 3 || !a.NotAfter.Equal(leaf.NotAfter) || a.Serial == "" ||
		got["agentauth/controller"].Serial == "" || got["agentauth/issuer"].Serial == "" {
		t.Errorf("issued = %+v, want agent/used (not after %v) and the controller's own", ids.Issued, leaf.NotAfter)
	}
	if len(ids.JoinTokens) != 2 {
		t.Fatalf("join tokens = %+v, want 2", ids.JoinTokens)
	}
	used, unused := ids.JoinTokens[1], ids.JoinTokens[0] // ordered by SPIFFE ID: agent/unused < agent/used
	if !used.Used || used.UsedAt == nil || used.SPIFFEID != "spiffe://example.org/agent/used" || used.ID != hashOf(usedToken)[:joinTokenIDLen] {
		t.Errorf("used token: %+v", used)
	}
	if unused.Used || unused.UsedAt != nil || unused.ExpiresAt.Before(time.Now()) {
		t.Errorf("unused token: %+v", unused)
	}

	adminGet(t, admin, "/v1/identities?expired=true", &ids)
	if got := issued(); len(got) != 4 || got["agent/gone"].Serial != "0ld" {
		t.Errorf("with expired: issued = %+v, want agent/gone too", ids.Issued)
	}
}

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TestAdminRevokeSessionsOrDisable: an operator's revocation ends sessions (not_before, the default) or disables
// the subject (no not_before: every credential refused until unrevoked); disable takes no not_before or no_renew.
func TestAdminRevokeSessionsOrDisable(t *testing.T) {
	cfg := testConfig(t, "")
	runController(t, cfg)
	admin := adminClient(cfg)
	for _, tc := range []struct {
		req      RevokeRequest
		code     int
		withheld bool
	}{
		{RevokeRequest{Kind: "user_email", Value: "a@example.org", Reason: "r"}, http.StatusCreated, false},
		{RevokeRequest{Kind: "user_email", Value: "a@example.org", Reason: "r", Disable: true}, http.StatusCreated, true},
		{RevokeRequest{Kind: "spiffe", Value: "spiffe://example.org/agent/a", Reason: "r", Disable: true, NoRenew: true}, http.StatusBadRequest, false},
		{RevokeRequest{Kind: "user_email", Value: "a@example.org", Reason: "r", Disable: true, NotBefore: new(time.Now())}, http.StatusBadRequest, false},
	} {
		code, body := adminPost(t, admin, "/v1/revocations", tc.req)
		if code != tc.code {
			t.Errorf("%+v: %d %s, want %d", tc.req, code, body, tc.code)
			continue
		}
		if code != http.StatusCreated {
			continue
		}
		var rev struct {
			NotBefore *string `json:"not_before"`
			Cause     struct {
				EventType string `json:"event_type"`
			} `json:"cause"`
		}
		if err := json.Unmarshal(body, &rev); err != nil {
			t.Fatal(err)
		}
		if withheld := rev.NotBefore == nil; withheld != tc.withheld {
			t.Errorf("%+v: answered %s, want withheld %t", tc.req, body, tc.withheld)
		}
		if tc.withheld && rev.Cause.EventType != CauseAdminDisable {
			t.Errorf("%+v: cause %q, want %q", tc.req, rev.Cause.EventType, CauseAdminDisable)
		}
	}
}
