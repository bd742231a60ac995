package sidecar

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/agentauth/agentauth/internal/buildinfo"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/proxy"
)

// Metrics are the sidecar's Prometheus series, all on one registry it owns (no global registry).
type Metrics struct {
	Registry *prometheus.Registry

	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	expiry    *prometheus.GaugeVec
	rotations *prometheus.CounterVec

	// series caches the labelled handles of each (direction, route, result, reason) seen, so a request costs one
	// map load instead of two label hashes and lookups in the vectors. The label sets are bounded: directions and
	// results are constants, routes come from configuration and reasons from autherr.
	series sync.Map // seriesKey → *requestSeries
}

type seriesKey struct{ direction, route, result, reason string }

type requestSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// NewMetrics registers the sidecar's series, plus the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_requests_total",
			Help: "Requests decided by the sidecar, by direction, route, result (allowed, denied, error) and reason code.",
		}, []string{"direction", "route", "result", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentauth_request_duration_seconds",
			Help: "Time from the first byte of a request to the end of its response, by direction and result.",
			// The sidecar's own cost is sub-millisecond; upstreams take longer. Native buckets cover both.
			Buckets:                        []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor:    1.1,
			NativeHistogramMaxBucketNumber: 160,
		}, []string{"direction", "result"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentauth_credential_expiry_timestamp_seconds",
			Help: "When the current credential expires (Unix seconds), by kind (x509_svid, wit).",
		}, []string{"kind"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_credential_rotations_total",
			Help: "Credential loads, by result (success, failure). A failure keeps the previous credentials.",
		}, []string{"result"}),
	}
	m.Registry.MustRegister(m.requests, m.latency, m.expiry, m.rotations, buildinfo.Read().Collector(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// preRegister creates the zero series of every refusal reason, so a dashboard's rate() sees the first refusal.
func (m *Metrics) preRegister(direction string, routes []string) {
	for _, route := range routes {
		for _, reason := range autherr.Codes() {
			m.requests.WithLabelValues(direction, route, proxy.ResultOf(reason), reason)
		}
		m.requests.WithLabelValues(direction, route, proxy.ResultAllowed, "")
	}
}

// ObserveRequest implements proxy.Metrics.
func (m *Metrics) ObserveRequest(direction, route, result, reason string, d time.Duration) {
	k := seriesKey{direction, route, result, reason}
	v, ok := m.series.Load(k)
	if !ok {
		v, _ = m.series.LoadOrStore(k, &requestSeries{
			count:   m.requests.WithLabelValues(direction, route, result, reason),
			latency: m.latency.WithLabelValues(direction, result),
		})
	}
	s := v.(*requestSeries)
	s.count.Inc()
	s.latency.Observe(d.Seconds())
}

// Rotated implements identity.Observer.
func (m *Metrics) Rotated(s identity.Status) {
	m.rotations.WithLabelValues("success").Inc()
	m.expiry.WithLabelValues("x509_svid").Set(float64(s.X509Expiry.Unix()))
	if !s.WITExpiry.IsZero() {
		m.expiry.WithLabelValues("wit").Set(float64(s.WITExpiry.Unix()))
	}
}

// RotationFailed implements identity.Observer.
func (m *Metrics) RotationFailed(error) { m.rotations.WithLabelValues("failure").Inc() }

var (
	_ proxy.Metrics     = (*Metrics)(nil)
	_ identity.Observer = (*Metrics)(nil)
)
