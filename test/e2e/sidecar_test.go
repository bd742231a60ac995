package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
)

type whoami struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
}

func getWhoami(t *testing.T, c *http.Client, url string, hdr map[string]string) (int, whoami, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body := readAll(t, resp)
	var w whoami
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &w); err != nil {
			t.Fatalf("whoami body %q: %v", body, err)
		}
	}
	return resp.StatusCode, w, body
}

// TestAllowedPerMode: the agent's plain call reaches the tool in every mode, and the tool sees who called and how.
func TestAllowedPerMode(t *testing.T) {
	ca := testca.New(t, trustDomain)
	tests := []struct {
		name, egress, ingress string
		tls                   bool
		method                string
	}{
		{"mtls", "[mtls]", "[mtls]", true, "mtls"},
		{"wpt over TLS", "[wpt]", "[wpt]", true, "wit-wpt"},
		{"wpt+mtls", "[mtls, wpt]", "[mtls, wpt]", true, "wit-wpt"},
		{"httpsig", "[httpsig]", "[httpsig]", false, "wit-httpsig"},
		{"httpsig+mtls", "[mtls, httpsig]", "[mtls, httpsig]", true, "wit-httpsig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startPair(t, ca, pairOptions{egressModes: tt.egress, ingressReq: tt.ingress, tls: tt.tls})
			code, w, body := getWhoami(t, p.agent(), "http://"+toolHost+"/whoami",
				map[string]string{"X-Agentauth-Workload-Id": "spiffe://example.org/admin"})
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			if got := w.Headers["x-agentauth-workload-id"]; len(got) != 1 || got[0] != agentID.String() {
				t.Errorf("tool saw workload id %v, want exactly [%s] (a forged copy must be stripped)", got, agentID)
			}
			if got := w.Headers["x-agentauth-auth-method"]; len(got) != 1 || got[0] != tt.method {
				t.Errorf("tool saw auth method %v, want %s", got, tt.method)
			}
			if strings.Contains(tt.ingress, "mtls") {
				xfcc := strings.Join(w.Headers["x-forwarded-client-cert"], ",")
				if !strings.Contains(xfcc, "URI="+agentID.String()) || !strings.Contains(xfcc, "By="+toolID.String()) {
					t.Errorf("XFCC %q does not name the peer and the tool", xfcc)
				}
			}
		})
	}
}

// TestRefusals: what must not reach the tool does not, with the documented status and reason.
func TestRefusals(t *testing.T) {
	ca := testca.New(t, trustDomain)
	p := startPair(t, ca, pairOptions{egressModes: "[wpt]", ingressReq: "[wpt]", tls: true})
	direct, base := p.direct(true)

	t.Run("direct call skipping the egress sidecar", func(t *testing.T) {
		code, _, body := getWhoami(t, direct, base+"/whoami", map[string]string{
			"X-Agentauth-Workload-Id": agentID.String(), "Host": toolHost})
		if code != http.StatusUnauthorized || !strings.Contains(body, `"credential_missing"`) {
			t.Fatalf("got %d %s, want 401 credential_missing", code, body)
		}
	})
	t.Run("a 401 carries a challenge naming the accepted scheme", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/whoami", nil)
		req.Host = toolHost
		resp, err := direct.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if got := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized ||
			len(got) != 1 || !strings.HasPrefix(got[0], "WIMSE-WPT") {
			t.Fatalf("got %d with WWW-Authenticate %q, want 401 with a WIMSE-WPT challenge", resp.StatusCode, got)
		}
	})
	t.Run("direct call to another host name", func(t *testing.T) {
		// Refused before authentication, so not 403 (authenticated but not allowed): 421, this is the wrong server.
		code, _, body := getWhoami(t, direct, base+"/whoami", nil)
		if code != http.StatusMisdirectedRequest || !strings.Contains(body, `"misdirected_request"`) {
			t.Fatalf("got %d %s, want 421 misdirected_request", code, body)
		}
	})
	t.Run("garbage tokens", func(t *testing.T) {
		code, _, body := getWhoami(t, direct, base+"/whoami", map[string]string{"Host": toolHost,
			"Workload-Identity-Token": "not.a.jwt", "Workload-Proof-Token": "x"})
		if code != http.StatusBadRequest || !strings.Contains(body, `"malformed"`) {
			t.Fatalf("got %d %s, want 400 malformed", code, body)
		}
	})
}

// TestWrongTrustDomain: an agent whose credentials come from a trust domain the tool does not trust is refused.
func TestWrongTrustDomain(t *testing.T) {
	ca := testca.New(t, trustDomain)
	evil := testca.New(t, spiffeid.RequireTrustDomainFromString("evil.example"))
	p := startPair(t, ca, pairOptions{egressModes: "[wpt]", ingressReq: "[wpt]", tls: true, agentCA: evil})
	code, _, body := getWhoami(t, p.agent(), "http://"+toolHost+"/whoami", nil)
	if code != http.StatusBadRequest || !strings.Contains(body, `"untrusted_issuer"`) {
		t.Fatalf("got %d %s, want 400 untrusted_issuer", code, body)
	}
}
