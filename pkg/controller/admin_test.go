package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/xds"
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
		{"controller xDS identity", xds.ControllerID(c.td).String(), http.StatusBadRequest},
		{"issuer identity", issuer.DefaultServerID(c.td).String(), http.StatusBadRequest},
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
