package tracing

import (
	"context"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/agentauth/agentauth/internal/tracing/otlptest"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/proxy"
)

func attrs(kvs []*commonpb.KeyValue) map[string]*commonpb.AnyValue {
	m := map[string]*commonpb.AnyValue{}
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue()
	}
	return m
}

const (
	traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentID = "00f067aa0ba902b7"
)

func TestSpansFromDecisions(t *testing.T) {
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		ratio      float64
		rec        proxy.DecisionRecord
		exported   bool
		wantParent string
		wantKind   tracepb.Span_SpanKind
		wantStatus tracepb.Status_StatusCode
		wantAttrs  map[string]string
	}{
		{
			name: "allowed MCP call under a sampled parent", ratio: 0,
			rec: proxy.DecisionRecord{Time: start, Latency: 3 * time.Millisecond, Direction: proxy.Ingress,
				Route: "weather.tools.local", Allowed: true, Status: 200, Method: "POST", Path: "/mcp",
				Host: "weather.tools.local", Subject: "spiffe://example.org/agent/planner", PolicyIDs: []string{"p1", "p2"},
				MCPMethod: "tools/call", MCPName: "forecast", TransactionID: "txn-1",
				Traceparent: "00-" + traceID + "-" + parentID + "-01"},
			exported: true, wantParent: parentID, wantKind: tracepb.Span_SPAN_KIND_SERVER,
			wantStatus: tracepb.Status_STATUS_CODE_UNSET,
			wantAttrs: map[string]string{"agentauth.decision": "allow", "mcp.method": "tools/call", "mcp.name": "forecast",
				"agentauth.txn": "txn-1", "agentauth.subject": "spiffe://example.org/agent/planner"},
		},
		{
			name: "refusal without a traceparent is a root span", ratio: 1,
			rec: proxy.DecisionRecord{Time: start, Latency: time.Millisecond, Direction: proxy.Egress, Route: "weather",
				Reason: autherr.ErrDenied.Code(), Status: 403, Method: "GET", Path: "/x", Host: "weather"},
			exported: true, wantKind: tracepb.Span_SPAN_KIND_CLIENT, wantStatus: tracepb.Status_STATUS_CODE_UNSET,
			wantAttrs: map[string]string{"agentauth.decision": "deny", "agentauth.reason": autherr.ErrDenied.Code(),
				"agentauth.result": proxy.ResultDenied},
		},
		{
			name: "an upstream failure is an error", ratio: 1,
			rec: proxy.DecisionRecord{Time: start, Latency: time.Second, Direction: proxy.Egress, Allowed: true,
				Reason: autherr.ErrUpstream.Code(), Status: 502, Method: "GET", Path: "/", Host: "weather"},
			exported: true, wantKind: tracepb.Span_SPAN_KIND_CLIENT, wantStatus: tracepb.Status_STATUS_CODE_ERROR,
			wantAttrs: map[string]string{"agentauth.decision": "allow", "agentauth.result": proxy.ResultError},
		},
		{
			name: "an unsampled parent is sampled by ratio: 0 records none", ratio: 0,
			rec: proxy.DecisionRecord{Time: start, Direction: proxy.Egress, Allowed: true, Status: 200,
				Traceparent: "00-" + traceID + "-" + parentID + "-00"},
		},
		{
			name: "an unsampled parent is sampled by ratio: 1 records all", ratio: 1,
			rec: proxy.DecisionRecord{Time: start, Direction: proxy.Egress, Allowed: true, Status: 200,
				Traceparent: "00-" + traceID + "-" + parentID + "-00"},
			exported: true, wantParent: parentID, wantKind: tracepb.Span_SPAN_KIND_CLIENT,
			wantStatus: tracepb.Status_STATUS_CODE_UNSET, wantAttrs: map[string]string{"agentauth.decision": "allow"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := otlptest.Start(t)
			s, err := New(context.Background(), Options{Endpoint: c.Addr(), Insecure: true, SampleRatio: tt.ratio,
				ServiceName: "agentauth-sidecar", Workload: "spiffe://example.org/tool/weather"})
			if err != nil {
				t.Fatal(err)
			}
			rec := tt.rec
			s.Record(context.Background(), &rec)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			spans := c.Spans()
			if !tt.exported {
				if len(spans) != 0 {
					t.Fatalf("%d spans exported, want none", len(spans))
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("%d spans exported, want 1", len(spans))
			}
			sp := spans[0]
			if got := hex.EncodeToString(sp.GetParentSpanId()); got != tt.wantParent {
				t.Errorf("parent span id %q, want %q", got, tt.wantParent)
			}
			if tt.wantParent != "" && hex.EncodeToString(sp.GetTraceId()) != traceID {
				t.Errorf("trace id %x, want the traceparent's %s", sp.GetTraceId(), traceID)
			}
			if sp.GetKind() != tt.wantKind || sp.GetStatus().GetCode() != tt.wantStatus {
				t.Errorf("kind %v status %v, want %v %v", sp.GetKind(), sp.GetStatus().GetCode(), tt.wantKind, tt.wantStatus)
			}
			if sp.GetStartTimeUnixNano() != uint64(rec.Time.UnixNano()) || sp.GetEndTimeUnixNano() != uint64(rec.Time.Add(rec.Latency).UnixNano()) {
				t.Errorf("span %d..%d, want the request's %v + %v", sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano(), rec.Time, rec.Latency)
			}
			got := attrs(sp.GetAttributes())
			for k, want := range tt.wantAttrs {
				if v := got[k].GetStringValue(); v != want {
					t.Errorf("attribute %s = %q, want %q", k, v, want)
				}
			}
			if len(rec.PolicyIDs) > 0 {
				var ids []string
				for _, v := range got["agentauth.policy_ids"].GetArrayValue().GetValues() {
					ids = append(ids, v.GetStringValue())
				}
				if !slices.Equal(ids, rec.PolicyIDs) {
					t.Errorf("policy ids %v, want %v", ids, rec.PolicyIDs)
				}
			}
			if w := attrs(c.Resource())["agentauth.workload"].GetStringValue(); w != "spiffe://example.org/tool/weather" {
				t.Errorf("resource workload %q", w)
			}
		})
	}
}

func TestNewNeedsEndpoint(t *testing.T) {
	if _, err := New(context.Background(), Options{}); err == nil {
		t.Fatal("New without an endpoint succeeded")
	}
}
