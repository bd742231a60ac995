package witness

import dto "github.com/prometheus/client_model/go"

// AlarmCount is agentauth_audit_witness_alarms_total{kind}.
func AlarmCount(w *Witness, kind string) float64 {
	var m dto.Metric
	if err := w.alarms.WithLabelValues(kind).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
