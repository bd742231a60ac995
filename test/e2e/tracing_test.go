package e2e

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/agentauth/agentauth/internal/tracing/otlptest"
)

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			if a := kv.GetValue().GetArrayValue(); a != nil {
				var vs []string
				for _, v := range a.GetValues() {
					vs = append(vs, v.GetStringValue())
				}
				return strings.Join(vs, ",")
			}
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// TestTracingSpans: both sidecars of a pair export one span per request to an OTLP collector, as children of the
// agent's traceparent, with the decision, its reason, the policy ids and the MCP method and tool.
func TestTracingSpans(t *testing.T) {
	col := otlptest.Start(t)
	dir := t.TempDir()
	c := startController(t, dir)
	c.ctl(t, false, "policy", "apply", writeFile(t, dir, "weather.cedar", weatherPolicy+mcpPolicy))
	tracing := fmt.Sprintf("tracing: {endpoint: %s, insecure: true}\n", col.Addr())
	p := startManagedPairWith(t, c, managedOptions{egress: tracing, ingress: tracing})
	do := func(tool, traceparent string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+toolHost+"/mcp",
			strings.NewReader(fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q}}`, tool)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Traceparent", traceparent)
		resp, err := p.agent().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp.StatusCode
	}
	// Policy arrives asynchronously: wait until the first call passes.
	waitStatusFunc(t, func() (int, string) {
		return do("forecast", "00-11111111111111111111111111111111-1111111111111111-01"), ""
	}, http.StatusOK)

	const allowTrace, denyTrace, parent = "0af7651916cd43dd8448eb211c80319c", "1bf7651916cd43dd8448eb211c80319d", "b7ad6b7169203331"
	if code := do("forecast", "00-"+allowTrace+"-"+parent+"-01"); code != http.StatusOK {
		t.Fatalf("forecast: %d", code)
	}
	if code := do("delete_all", "00-"+denyTrace+"-"+parent+"-01"); code != http.StatusForbidden {
		t.Fatalf("delete_all: %d, want 403", code)
	}
	for _, tc := range []struct {
		trace, tool, decision, reason string
	}{
		{allowTrace, "forecast", "allow", ""},
		{denyTrace, "delete_all", "deny", "policy_denied"},
	} {
		spans := col.SpansOf(t, tc.trace, 2)
		kinds := map[tracepb.Span_SpanKind]*tracepb.Span{}
		for _, s := range spans {
			kinds[s.GetKind()] = s
			if hex.EncodeToString(s.GetParentSpanId()) != parent {
				t.Errorf("trace %s: span %q has parent %x, want the agent's %s", tc.trace, s.GetName(), s.GetParentSpanId(), parent)
			}
		}
		eg, in := kinds[tracepb.Span_SPAN_KIND_CLIENT], kinds[tracepb.Span_SPAN_KIND_SERVER]
		if eg == nil || in == nil {
			t.Fatalf("trace %s: want an egress (client) and an ingress (server) span, got %v", tc.trace, spans)
		}
		if spanAttr(eg, "agentauth.direction") != "egress" || spanAttr(in, "agentauth.direction") != "ingress" {
			t.Errorf("trace %s: directions %q %q", tc.trace, spanAttr(eg, "agentauth.direction"), spanAttr(in, "agentauth.direction"))
		}
		if got := spanAttr(in, "agentauth.decision"); got != tc.decision {
			t.Errorf("trace %s: ingress decision %q, want %q", tc.trace, got, tc.decision)
		}
		if got := spanAttr(in, "agentauth.reason"); got != tc.reason {
			t.Errorf("trace %s: ingress reason %q, want %q", tc.trace, got, tc.reason)
		}
		if spanAttr(in, "mcp.method") != "tools/call" || spanAttr(in, "mcp.name") != tc.tool {
			t.Errorf("trace %s: ingress span's MCP method and tool: %v", tc.trace, in.GetAttributes())
		}
		if tc.decision == "allow" && spanAttr(in, "agentauth.policy_ids") == "" {
			t.Errorf("trace %s: the allowed call's ingress span names no policy: %v", tc.trace, in.GetAttributes())
		}
	}
}
