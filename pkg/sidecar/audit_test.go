package sidecar

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/proxy"
)

func TestAuditConfig(t *testing.T) {
	valid, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(append(valid, "audit: {dir: /var/lib/agentauth/audit}\n"...))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Audit; a.Durability != AuditSync || a.OnWriteError != AuditRefuse || a.MaxFileBytes != 64<<20 ||
		a.CheckpointInterval != 10*time.Second {
		t.Errorf("defaults: %+v", a)
	}
	tests := []struct {
		name, yaml, field, msg string
	}{
		{"no dir", "audit: {durability: sync}\n", "audit.dir", "required"},
		{"bad durability", "audit: {dir: /a, durability: always}\n", "audit.durability", `"always" is not one of sync, batched`},
		{"bad onWriteError", "audit: {dir: /a, onWriteError: ignore}\n", "audit.onWriteError", `"ignore" is not one of refuse, allow`},
		{"tiny files", "audit: {dir: /a, maxFileBytes: 4096}\n", "audit.maxFileBytes", "below the minimum"},
		{"negative files", "audit: {dir: /a, maxFileBytes: -1}\n", "audit.maxFileBytes", "below the minimum"},
		{"fast checkpoints", "audit: {dir: /a, checkpointInterval: 10ms}\n", "audit.checkpointInterval", "below the minimum of 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantFieldError(t, append(valid, tt.yaml...), tt.field, tt.msg) })
	}
}

func TestTracingConfig(t *testing.T) {
	valid, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(append(valid, "tracing: {endpoint: 127.0.0.1:4317}\n"...))
	if err != nil {
		t.Fatal(err)
	}
	if tr := cfg.Tracing; tr.SampleRatio == nil || *tr.SampleRatio != 1 || tr.ServiceName != "agentauth-sidecar" || tr.Insecure {
		t.Errorf("defaults: %+v", tr)
	}
	tests := []struct {
		name, yaml, field, msg string
	}{
		{"no endpoint", "tracing: {insecure: true}\n", "tracing.endpoint", "required"},
		{"endpoint without port", "tracing: {endpoint: collector}\n", "tracing.endpoint", ""},
		{"ratio above one", "tracing: {endpoint: 127.0.0.1:4317, sampleRatio: 1.5}\n", "tracing.sampleRatio", "not between 0 and 1"},
		{"negative ratio", "tracing: {endpoint: 127.0.0.1:4317, sampleRatio: -0.1}\n", "tracing.sampleRatio", "not between 0 and 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantFieldError(t, append(valid, tt.yaml...), tt.field, tt.msg) })
	}
}

// wantFieldError parses doc and wants a *ValidationError with an error for field, on a line, containing msg.
func wantFieldError(t *testing.T, doc []byte, field, msg string) {
	t.Helper()
	_, err := Parse(doc)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	for _, fe := range ve.Errors {
		if fe.Field == field && strings.Contains(fe.Msg, msg) {
			if fe.Line == 0 {
				t.Errorf("no line for %v", fe)
			}
			return
		}
	}
	t.Fatalf("no error for %s containing %q; got:\n%v", field, msg, err)
}

// TestAuditHostileFields: a request whose every caller-controlled string is long and written escaped ('<' and
// invalid UTF-8 take 6 bytes each in JSON) still gets its record, clipped, rather than one too large to write,
// which would refuse the request or, with onWriteError allow, let it through unaudited.
func TestAuditHostileFields(t *testing.T) {
	dir := t.TempDir()
	signer, _, err := audit.LoadOrCreateKey(filepath.Join(dir, auditKeyFile), "example.org/agent")
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.Open(audit.Options{Dir: dir, Signer: signer, Durability: audit.Batched})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	l := &auditLog{w: w, self: "spiffe://example.org/tool", log: zaptest.NewLogger(t),
		unaudited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unaudited"}, []string{"kind", "decision"}),
		decisions: prometheus.NewCounter(prometheus.CounterOpts{Name: "decisions"})}
	hostile := strings.Repeat("<\xed", 4096)
	d := &proxy.DecisionRecord{Time: time.Now(), Direction: proxy.Ingress, Route: "weather", Allowed: true,
		Subject: hostile, DelegatedSubject: hostile, Host: hostile, Method: hostile, Path: hostile, MCPMethod: hostile,
		MCPName: hostile, TransactionID: hostile, Traceparent: hostile, Risk: hostile}
	if err := l.Audit(context.Background(), d); err != nil {
		t.Fatalf("Audit: %v", err)
	}
	if n := w.Size(); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
}
