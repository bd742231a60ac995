package sidecar

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/proxy"
)

// TestLogSinkLevels: every decision is one log line, at the level of its outcome (an allowed request at info: the
// access log); a client that went away is a debug line of its own, not "request refused" at info.
func TestLogSinkLevels(t *testing.T) {
	tests := []struct {
		name    string
		rec     proxy.DecisionRecord
		level   zapcore.Level
		message string
	}{
		{"allowed", proxy.DecisionRecord{Allowed: true, Status: 200}, zapcore.InfoLevel, "request allowed"},
		{"refused", proxy.DecisionRecord{Reason: autherr.ErrReplay.Code(), Status: 400}, zapcore.InfoLevel, "request refused"},
		{"upstream", proxy.DecisionRecord{Allowed: true, Reason: autherr.ErrUpstream.Code(), Status: 502}, zapcore.WarnLevel, "request failed"},
		{"internal", proxy.DecisionRecord{Reason: autherr.Internal, Status: 500}, zapcore.ErrorLevel, "request failed"},
		{"client closed", proxy.DecisionRecord{Allowed: true, Reason: autherr.ErrClientClosed.Code(), Status: autherr.StatusClientClosed},
			zapcore.DebugLevel, "client went away"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			rec := tt.rec
			rec.Direction, rec.Route = proxy.Ingress, "weather.tools.local"
			newLogSink(zap.New(core)).Record(context.Background(), &rec)
			all := logs.All()
			if len(all) != 1 {
				t.Fatalf("%d lines, want 1: %v", len(all), all)
			}
			if all[0].Level != tt.level || all[0].Message != tt.message {
				t.Fatalf("logged %v %q, want %v %q", all[0].Level, all[0].Message, tt.level, tt.message)
			}
		})
	}
}

// TestLogSinkNoCaller: access lines do not carry the caller, even from a logger that adds it to every other line.
func TestLogSinkNoCaller(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core, zap.AddCaller())
	newLogSink(log).Record(context.Background(), &proxy.DecisionRecord{Direction: proxy.Egress, Allowed: true, Status: 200})
	log.Info("another line")
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d lines, want 2", len(all))
	}
	if all[0].Caller.Defined {
		t.Errorf("access line has caller %s", all[0].Caller)
	}
	if !all[1].Caller.Defined {
		t.Error("the logger's own line lost its caller")
	}
}

// TestLogSinkMCPFields: the access log names the MCP method and tool, the risk policy saw and the trace context.
func TestLogSinkMCPFields(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	rec := proxy.DecisionRecord{Direction: proxy.Ingress, Route: "weather.tools.local", Allowed: true, Status: 200,
		MCPMethod: "tools/call", MCPName: "forecast", Risk: "low",
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	newLogSink(zap.New(core)).Record(context.Background(), &rec)
	all := logs.All()
	if len(all) != 1 {
		t.Fatalf("%d lines, want 1", len(all))
	}
	got := all[0].ContextMap()
	for k, want := range map[string]string{"mcp_method": "tools/call", "mcp_name": "forecast", "risk": "low",
		"traceparent": rec.Traceparent} {
		if got[k] != want {
			t.Errorf("%s = %v, want %q", k, got[k], want)
		}
	}
}
