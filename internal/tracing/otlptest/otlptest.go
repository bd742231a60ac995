// Package otlptest is a real OTLP/gRPC trace collector on loopback for tests, standing in for an OpenTelemetry
// collector: it records the spans it is sent and the resource they came from.
package otlptest

import (
	"context"
	"encoding/hex"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Collector is a trace collector serving on 127.0.0.1 until its test ends.
type Collector struct {
	collectortrace.UnimplementedTraceServiceServer
	addr string

	mu       sync.Mutex
	spans    []*tracepb.Span
	resource []*commonpb.KeyValue
}

// Start starts a Collector and stops it when t ends.
func Start(t testing.TB) *Collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &Collector{addr: ln.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c
}

// Addr is the host:port an exporter sends to (without TLS).
func (c *Collector) Addr() string { return c.addr }

// Export records the spans of req.
func (c *Collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		c.resource = rs.GetResource().GetAttributes()
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Spans returns the spans received so far, in the order they came.
func (c *Collector) Spans() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.spans)
}

// Resource returns the resource attributes of the last spans received.
func (c *Collector) Resource() []*commonpb.KeyValue {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resource
}

// SpansOf returns the spans of trace id (hex) once there are at least n, waiting up to a generous deadline (an
// exporter sends in batches, every few seconds).
func (c *Collector) SpansOf(t testing.TB, traceID string, n int) []*tracepb.Span {
	t.Helper()
	var got []*tracepb.Span
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got = slices.DeleteFunc(c.Spans(), func(s *tracepb.Span) bool { return hex.EncodeToString(s.GetTraceId()) != traceID })
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("trace %s: %d spans after 60s, want %d", traceID, len(got), n)
	return nil
}
