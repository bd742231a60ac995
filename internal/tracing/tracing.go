package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentauth/agentauth/pkg/proxy"
)

// Options configure the exporter.
type Options struct {
	// Endpoint is the OTLP/gRPC collector, host:port.
	Endpoint string
	// Insecure sends spans without TLS (a collector on the same host or pod).
	Insecure bool
	// SampleRatio is the share of traces recorded whose caller made no sampling decision, or decided not to
	// sample (the egress starts an unsampled trace when the agent sent none). A sampled parent is always followed.
	SampleRatio float64
	// ServiceName and Workload (the SPIFFE ID) describe this sidecar in every span's resource.
	ServiceName string
	Workload    string
}

// Sink turns decision records into spans. Close flushes the spans still queued.
type Sink struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

// New starts an exporter to o.Endpoint. The connection is made lazily: a collector that is away loses spans (the
// batch processor drops what it cannot send) and never delays a request.
func New(ctx context.Context, o Options) (*Sink, error) {
	if o.Endpoint == "" {
		return nil, errors.New("tracing: no endpoint")
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(o.Endpoint)}
	if o.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(o.ServiceName), attribute.String("agentauth.workload", o.Workload)))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	ratio := sdktrace.TraceIDRatioBased(o.SampleRatio)
	p := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(ratio, sdktrace.WithRemoteParentNotSampled(ratio))),
	)
	return &Sink{provider: p, tracer: p.Tracer("github.com/agentauth/agentauth/sidecar")}, nil
}

// Record exports d as one span.
func (s *Sink) Record(ctx context.Context, d *proxy.DecisionRecord) {
	if d.Traceparent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(http.Header{proxy.HeaderTraceparent: {d.Traceparent}}))
	}
	kind := trace.SpanKindServer
	if d.Direction == proxy.Egress {
		kind = trace.SpanKindClient
	}
	_, span := s.tracer.Start(ctx, "agentauth "+string(d.Direction), trace.WithSpanKind(kind),
		trace.WithTimestamp(d.Time), trace.WithAttributes(attributes(d)...))
	// Only a failure is an error; a refusal is the sidecar doing its job (as a 4xx leaves a server span's status
	// unset in OTel's HTTP conventions), and agentauth.decision says it.
	if proxy.ResultOf(d.Reason) == proxy.ResultError {
		span.SetStatus(codes.Error, d.Reason)
	}
	span.End(trace.WithTimestamp(d.Time.Add(d.Latency)))
}

// attributes are the span's attributes: the decision first, then who and what, leaving out what is empty.
func attributes(d *proxy.DecisionRecord) []attribute.KeyValue {
	decision := "deny"
	if d.Allowed {
		decision = "allow"
	}
	kv := []attribute.KeyValue{
		attribute.String("agentauth.direction", string(d.Direction)),
		attribute.String("agentauth.decision", decision),
		attribute.String("agentauth.result", proxy.ResultOf(d.Reason)),
		attribute.String("http.request.method", d.Method),
		attribute.String("url.path", d.Path),
		attribute.String("server.address", d.Host),
	}
	if d.Status != 0 {
		kv = append(kv, attribute.Int("http.response.status_code", d.Status))
	}
	if len(d.PolicyIDs) > 0 {
		kv = append(kv, attribute.StringSlice("agentauth.policy_ids", d.PolicyIDs))
	}
	for _, f := range []struct{ key, val string }{
		{"agentauth.route", d.Route},
		{"agentauth.reason", d.Reason},
		{"agentauth.message", d.Message},
		{"agentauth.revocation_id", d.RevocationID},
		{"agentauth.subject", d.Subject},
		{"agentauth.auth_method", d.AuthMethod},
		{"agentauth.subject_kind", d.SubjectKind},
		{"agentauth.delegated_subject", d.DelegatedSubject},
		{"agentauth.txn", d.TransactionID},
		{"agentauth.risk", d.Risk},
		{"mcp.method", d.MCPMethod},
		{"mcp.name", d.MCPName},
	} {
		if f.val != "" {
			kv = append(kv, attribute.String(f.key, f.val))
		}
	}
	return kv
}

// Close flushes queued spans and stops the exporter, within ctx.
func (s *Sink) Close(ctx context.Context) error { return s.provider.Shutdown(ctx) }

var _ proxy.DecisionSink = (*Sink)(nil)
