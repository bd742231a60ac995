package sidecar

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/agentauth/agentauth/pkg/proxy"
)

func TestObserveRequestCountsPerSeries(t *testing.T) {
	m := NewMetrics()
	m.preRegister(string(proxy.Ingress), []string{"ingress"})
	for range 3 {
		m.ObserveRequest("ingress", "ingress", proxy.ResultAllowed, "", time.Millisecond)
	}
	m.ObserveRequest("ingress", "ingress", proxy.ResultDenied, "replay", time.Millisecond)
	m.ObserveRequest("egress", "weather", proxy.ResultError, "upstream_error", time.Millisecond)
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"ingress", "ingress", proxy.ResultAllowed, ""}, 3},
		{[]string{"ingress", "ingress", proxy.ResultDenied, "replay"}, 1},
		{[]string{"ingress", "ingress", proxy.ResultDenied, "bad_signature"}, 0},
		{[]string{"egress", "weather", proxy.ResultError, "upstream_error"}, 1},
	} {
		if got := value(t, m.requests.WithLabelValues(tc.labels...)); got != tc.want {
			t.Errorf("requests%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	ch := make(chan prometheus.Metric, 16)
	m.latency.Collect(ch)
	if n := len(ch); n != 3 {
		t.Errorf("%d latency series, want 3 (ingress allowed, ingress denied, egress error)", n)
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func BenchmarkObserveRequest(b *testing.B) {
	m := NewMetrics()
	m.preRegister(string(proxy.Ingress), []string{"ingress"})
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveRequest("ingress", "ingress", proxy.ResultAllowed, "", 300*time.Microsecond)
	}
}
