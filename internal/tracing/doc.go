// Package tracing exports one OpenTelemetry span per request a sidecar decided, over OTLP/gRPC, with the decision,
// its reason and the deciding policy ids as attributes. It is a proxy.DecisionSink: the span is built from the
// decision record when the request ends, with the request's own start and end times, as a child of the W3C
// traceparent the request carried (which both sidecars forward unchanged). Off unless configured.
package tracing
