package xdsclient

import (
	"github.com/prometheus/client_golang/prometheus"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/xds"
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
		gauge(cc.resourceCount, float64(state.Len(typeURL)), xds.ShortType(typeURL))
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var _ prometheus.Collector = (*ClientCollector)(nil)
