package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/wire"
)

// TestLiveLimitsApplyToNextRequest: a Store of a lower header cap refuses the next request over it (431) without rebuilding the handler; raising them again serves it.
func TestLiveLimitsApplyToNextRequest(t *testing.T) {
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(tool.Close)
	live := NewLiveLimits(Limits{MaxBufferedBody: 1 << 10})
	h, err := NewIngressHandler(IngressConfig{
		Options: Options{Live: live, Self: "spiffe://example.org/tool"},
		Routes:  mustTable(t, &Route{Name: "r", Match: Match{Host: AnyHost}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	do := func(body string, header int) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Pad", strings.Repeat("p", header))
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	body := strings.Repeat("b", 600)
	if code := do(body, 1000); code != http.StatusOK {
		t.Fatalf("within the limits: %d, want 200", code)
	}
	live.Store(Limits{MaxBufferedBody: 1 << 10, MaxHeaderBytes: 512})
	if code := do(body, 1000); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("1000 bytes of headers after maxHeaderBytes was lowered to 512: %d, want 431", code)
	}
	live.Store(Limits{MaxBufferedBody: 1 << 10})
	if code := do(body, 1000); code != http.StatusOK {
		t.Fatalf("after raising the limits again: %d, want 200", code)
	}
}
