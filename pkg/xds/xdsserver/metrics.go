package xdsserver

import (
	"github.com/prometheus/client_golang/prometheus"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/xds"
)

// ServerCollector exposes the controller's view of its sidecars as Prometheus metrics.
type ServerCollector struct {
	s                                                *Server
	streams, nacking, behind, acks, nacks, resources *prometheus.Desc
}

// NewServerCollector returns the collector for s.
func NewServerCollector(s *Server) *ServerCollector {
	return &ServerCollector{
		s: s,
		streams: prometheus.NewDesc("agentauth_xds_sidecar_streams",
			"Connected sidecar ADS streams.", nil, nil),
		nacking: prometheus.NewDesc("agentauth_xds_sidecars_nacking",
			"Connected sidecars whose last answer for some type was a NACK.", nil, nil),
		behind: prometheus.NewDesc("agentauth_xds_sidecars_pending",
			"Connected sidecars with an update sent and not yet ACKed or NACKed.", nil, nil),
		acks: prometheus.NewDesc("agentauth_xds_acks_total",
			"Updates sidecars applied and ACKed, by resource type.", []string{"type"}, nil),
		nacks: prometheus.NewDesc("agentauth_xds_nacks_total",
			"Updates sidecars rejected (NACKed), by resource type.", []string{"type"}, nil),
		resources: prometheus.NewDesc("agentauth_xds_resources_served",
			"Resources the controller serves, by type (revocation: the revocations in force).", []string{"type"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (sc *ServerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sc.streams, sc.nacking, sc.behind, sc.acks, sc.nacks, sc.resources} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (sc *ServerCollector) Collect(ch chan<- prometheus.Metric) {
	nodes := sc.s.Nodes()
	var nacking, pending int
	for _, n := range nodes {
		if n.LastNACK != nil {
			nacking++
		}
		if len(n.Pending) > 0 {
			pending++
		}
	}
	ch <- prometheus.MustNewConstMetric(sc.streams, prometheus.GaugeValue, float64(len(nodes)))
	ch <- prometheus.MustNewConstMetric(sc.nacking, prometheus.GaugeValue, float64(nacking))
	ch <- prometheus.MustNewConstMetric(sc.behind, prometheus.GaugeValue, float64(pending))
	acks, nacks := sc.s.Answers()
	for _, typeURL := range agentauthv1.ServedTypes() {
		t := xds.ShortType(typeURL)
		ch <- prometheus.MustNewConstMetric(sc.acks, prometheus.CounterValue, float64(acks[typeURL]), t)
		ch <- prometheus.MustNewConstMetric(sc.nacks, prometheus.CounterValue, float64(nacks[typeURL]), t)
		ch <- prometheus.MustNewConstMetric(sc.resources, prometheus.GaugeValue, float64(sc.s.pub.Len(typeURL)), t)
	}
}

var _ prometheus.Collector = (*ServerCollector)(nil)
