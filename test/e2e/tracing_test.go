package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// otlpCollector is a real OTLP/gRPC trace receiver on loopback, standing in for an OpenTelemetry collector.
type otlpCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (c *otlpCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// spansOf returns the spans of trace id (hex) once there are at least n, waiting up to a generous deadline (the
// sidecars export in batches, every few seconds).
func (c *otlpCollector) spansOf(t *testing.T, traceID string, n int) []*tracepb.Span {
	t.Helper()
	var got []*tracepb.Span
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got = got[:0]
		c.mu.Lock()
		for _, s := range c.spans {
			if hex.EncodeToString(s.GetTraceId()) == traceID {
				got = append(got, s)
			}
		}
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("trace %s: %d spans after 60s, want %d", traceID, len(got), n)
	return nil
}

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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &otlpCollector{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, col)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	dir := t.TempDir()
	c := startController(t, dir)
	c.ctl(t, false, "policy", "apply", writeFile(t, dir, "weather.cedar", weatherPolicy+mcpPolicy))
	tracing := fmt.Sprintf("tracing: {endpoint: %s, insecure: true}\n", ln.Addr())
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
		spans := col.spansOf(t, tc.trace, 2)
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
