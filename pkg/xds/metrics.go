package xds

import (
	"github.com/prometheus/client_golang/prometheus"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// ClientCollector exposes a Client's Status as Prometheus metrics (read at scrape time), so a dashboard shows a
// sidecar that is enforcing its last state with the controller away, or that rejected an update.
type ClientCollector struct {
	c                                                    *Client
	connected, synced, lastContact                       *prometheus.Desc
	connects, applied, rejected, received, resourceCount *prometheus.Desc
}

// NewClientCollector returns the collector for c; register it with a prometheus.Registerer.
func NewClientCollector(c *Client) *ClientCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("agentauth_xds_"+name, help, labels, nil)
	}
	return &ClientCollector{
		c:             c,
		connected:     d("connected", "1 while the stream to the controller is up, 0 while the sidecar runs on its last state."),
		synced:        d("synced", "1 once every resource type has been received (the state is complete)."),
		lastContact:   d("last_contact_timestamp_seconds", "When the controller last sent anything (Unix time)."),
		connects:      d("connects_total", "Streams that reached the controller."),
		applied:       d("updates_applied_total", "Updates validated, applied and ACKed."),
		rejected:      d("updates_rejected_total", "Updates NACKed; the last good state was kept."),
		received:      d("resources_received_total", "Resources received (a resumed stream receives only changes)."),
		resourceCount: d("resources", "Resources held, by type.", "type"),
	}
}

// Describe implements prometheus.Collector.
func (cc *ClientCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cc.connected, cc.synced, cc.lastContact, cc.connects, cc.applied,
		cc.rejected, cc.received, cc.resourceCount} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (cc *ClientCollector) Collect(ch chan<- prometheus.Metric) {
	st := cc.c.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(cc.connected, boolFloat(st.Connected))
	gauge(cc.synced, boolFloat(st.Synced))
	if !st.LastContact.IsZero() {
		gauge(cc.lastContact, float64(st.LastContact.UnixNano())/1e9)
	}
	counter(cc.connects, st.Connects)
	counter(cc.applied, st.Applied)
	counter(cc.rejected, st.NACKs)
	counter(cc.received, st.Received)
	state := cc.c.State()
	for _, typeURL := range agentauthv1.ServedTypes() {
		gauge(cc.resourceCount, float64(state.Len(typeURL)), shortType(typeURL))
	}
}

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
		t := shortType(typeURL)
		ch <- prometheus.MustNewConstMetric(sc.acks, prometheus.CounterValue, float64(acks[typeURL]), t)
		ch <- prometheus.MustNewConstMetric(sc.nacks, prometheus.CounterValue, float64(nacks[typeURL]), t)
		ch <- prometheus.MustNewConstMetric(sc.resources, prometheus.GaugeValue, float64(sc.s.pub.Len(typeURL)), t)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var (
	_ prometheus.Collector = (*ClientCollector)(nil)
	_ prometheus.Collector = (*ServerCollector)(nil)
)
