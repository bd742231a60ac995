package controller

import (
	"context"
	"crypto/x509"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/signals"
)

// Attestation kinds, the attestation label of agentauth_issuer_svids_total.
const (
	attestJoinToken = "join_token" // Attest with a join token
	attestUnixPeer  = "unix_peer"  // Attest on issuer.localSocket, by Unix peer credentials
	attestRenew     = "renew"      // Renew with the current X.509-SVID
	attestK8s       = "kubernetes" // Attest with a Kubernetes service-account token (issuer.kubernetes)
)

// attestation is the attestation kind of an issuer call, and false for a method that issues nothing. local is true
// on issuer.localSocket, where an Attest without a join token attests by Unix peer credentials.
func attestation(req any, fullMethod string, local bool) (string, bool) {
	ar, ok := req.(*agentauthv1.AttestRequest)
	switch {
	case !ok:
		return attestRenew, fullMethod == agentauthv1.IssuerService_Renew_FullMethodName
	case ar.GetKubernetesToken() != "":
		return attestK8s, true
	case local && ar.GetJoinToken() == "":
		return attestUnixPeer, true
	default:
		return attestJoinToken, true
	}
}

// Results of an SVID request.
const (
	svidIssued  = "issued"
	svidRefused = "refused"
)

// metrics are the controller's own series, beside the xDS server's collector, on the controller's registry.
type metrics struct {
	svids  *prometheus.CounterVec
	tokens *prometheus.CounterVec
	sets   *prometheus.CounterVec
	// singletons is 1 per singleton work (leaderOnly) while it runs on this controller.
	singletons *prometheus.GaugeVec
	// caSteps counts the CA rotation steps this controller took, and its failed attempts.
	caSteps *prometheus.CounterVec
}

// newMetrics registers the controller's series on reg, with the zero series of the common outcomes, so a
// dashboard's rate() sees the first event.
func (c *Controller) newMetrics() *metrics {
	m := &metrics{
		svids: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_issuer_svids_total",
			Help: "SVID requests to the issuer, by attestation (join_token, unix_peer, kubernetes, renew), result (issued, refused) and the refusal's reason code.",
		}, []string{"attestation", "result", "reason"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_token_exchanges_total",
			Help: "Token requests to the token service, by result (issued, refused, error) and the refusal's reason code.",
		}, []string{"result", "reason"}),
		sets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_ssf_sets_total",
			Help: "Security Event Tokens delivered (push or poll), by result (accepted, duplicate, refused, failed) and the refusal's reason code.",
		}, []string{"result", "reason"}),
		singletons: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentauth_singleton_running",
			Help: "1 while this controller runs the singleton work (housekeeping, ca_rotation, ssf_clients): with state.backend kubernetes, only the replica holding the Lease does.",
		}, []string{"work"}),
		caSteps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_ca_rotation_steps_total",
			Help: "CA rotation steps this controller took, by step (prepared, activated, retired, dropped, failed).",
		}, []string{"step"}),
	}
	for _, s := range []issuer.Step{issuer.StepPrepared, issuer.StepActivated, issuer.StepRetired, issuer.StepDropped, "failed"} {
		m.caSteps.WithLabelValues(string(s))
	}
	for _, kind := range []string{attestJoinToken, attestUnixPeer, attestK8s, attestRenew} {
		m.svids.WithLabelValues(kind, svidIssued, "")
	}
	m.tokens.WithLabelValues(oauth.ResultIssued, "")
	for _, r := range []string{signals.ResultAccepted, signals.ResultDuplicate, signals.ResultFailed} {
		m.sets.WithLabelValues(r, "")
	}
	c.reg.MustRegister(m.svids, m.tokens, m.sets, m.singletons, m.caSteps, trustCollector{c})
	return m
}

// issuerInterceptor counts every Attest and Renew call by attestation kind and outcome; local is true on
// issuer.localSocket, where an Attest without a join token attests by Unix peer credentials.
func (m *metrics) issuerInterceptor(local bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		kind, ok := attestation(req, info.FullMethod, local)
		if !ok {
			return resp, err
		}
		if err == nil {
			m.svids.WithLabelValues(kind, svidIssued, "").Inc()
		} else {
			m.svids.WithLabelValues(kind, svidRefused, grpcReason(err)).Inc()
		}
		return resp, err
	}
}

// grpcReason is the autherr code an issuer error carries in its ErrorInfo, or autherr.Internal.
func grpcReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() != "" {
			return ei.GetReason()
		}
	}
	return autherr.Internal
}

func (m *metrics) observeToken(result, reason string) { m.tokens.WithLabelValues(result, reason).Inc() }

func (m *metrics) observeSET(result, reason string) { m.sets.WithLabelValues(result, reason).Inc() }

// trustCollector reads, at scrape time, when the CA certificate and the trust bundles sidecars are given expire.
type trustCollector struct{ c *Controller }

var (
	caExpiryDesc = prometheus.NewDesc("agentauth_ca_expiry_timestamp_seconds",
		"When the issuer's active CA root certificate expires (Unix seconds).", nil, nil)
	caGenerationDesc = prometheus.NewDesc("agentauth_ca_generation",
		"The active CA root's generation (0 for the first root; each rotation adds one).", nil, nil)
	caPreparedDesc = prometheus.NewDesc("agentauth_ca_prepared",
		"1 while a successor CA root is prepared (published, not yet signing).", nil, nil)
	bundleExpiryDesc = prometheus.NewDesc("agentauth_trust_bundle_expiry_timestamp_seconds",
		"When the first X.509 authority of the trust bundle served to sidecars expires (Unix seconds), by trust domain.",
		[]string{"trust_domain"}, nil)
)

// Describe implements prometheus.Collector.
func (tc trustCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- caExpiryDesc
	ch <- caGenerationDesc
	ch <- caPreparedDesc
	ch <- bundleExpiryDesc
}

// Collect implements prometheus.Collector.
func (tc trustCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(caExpiryDesc, prometheus.GaugeValue, float64(tc.c.ca.Root().NotAfter.Unix()))
	ch <- prometheus.MustNewConstMetric(caGenerationDesc, prometheus.GaugeValue, float64(tc.c.ca.Generation()))
	prepared := 0.0
	if tc.c.ca.Prepared() != nil {
		prepared = 1
	}
	ch <- prometheus.MustNewConstMetric(caPreparedDesc, prometheus.GaugeValue, prepared)
	bundles, err := tc.c.store.TrustBundles().List()
	if err != nil {
		tc.c.log.Warn("metrics: reading trust bundles", zap.Error(err))
		return
	}
	for _, b := range bundles {
		var first float64
		for _, der := range b.GetX509Authorities() {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				continue // the publisher checked every authority before storing it
			}
			if t := float64(cert.NotAfter.Unix()); first == 0 || t < first {
				first = t
			}
		}
		if first != 0 {
			ch <- prometheus.MustNewConstMetric(bundleExpiryDesc, prometheus.GaugeValue, first, b.GetTrustDomain())
		}
	}
}

var _ prometheus.Collector = trustCollector{}
