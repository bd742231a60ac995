package sidecar

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/audit/witness"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/xds/xdsclient"
)

// auditKeyFile is the checkpoint signing key in the audit directory. It stays on the host: an auditor needs only
// the log files, the checkpoints and audit-key.jws.
const auditKeyFile = "audit.key"

// maxAuditField bounds each caller-controlled string in a record (path, host, names) as written, escapes counted,
// so that no request can make its record too large to write: that would refuse it, or with onWriteError allow let
// it through unaudited.
const maxAuditField = 2048

// auditLog is the proxy.Auditor of a sidecar with audit configured: each decision becomes a record of the
// tamper-evident log, durable before the decision takes effect.
type auditLog struct {
	w        *audit.Writer
	self     string
	failOpen bool
	log      *zap.Logger
	// unaudited counts decisions and remediations that took effect without a durable record, by kind and
	// decision; records counts those written.
	unaudited *prometheus.CounterVec
	records   *prometheus.CounterVec
	// decisions is records' child for decisions, looked up once rather than per request.
	decisions prometheus.Counter
	// failed is set at the first write failure, so it is logged once rather than per request.
	failed atomic.Bool
}

// openAudit opens the log in cfg.Dir, with a checkpoint key kept there (made on first start) and certified by the
// current SVID, so `agentauthctl audit verify DIR --bundle BUNDLE` verifies its checkpoints.
func (s *Sidecar) openAudit(cfg *AuditConfig, svid *x509svid.SVID) (*auditLog, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	signer, verifier, err := audit.LoadOrCreateKey(filepath.Join(cfg.Dir, auditKeyFile), audit.OriginFor(svid.ID))
	if err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	cert, err := audit.CertifyKey(audit.VerifierKey(verifier), svid, time.Now())
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(cfg.Dir, audit.KeyCertFile), append(cert, '\n')); err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	w, err := audit.Open(audit.Options{
		Dir: cfg.Dir, Signer: signer, Durability: audit.Durability(cfg.Durability),
		MaxFileBytes: cfg.MaxFileBytes, CheckpointInterval: cfg.CheckpointInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	l := &auditLog{w: w, self: svid.ID.String(), failOpen: cfg.OnWriteError == AuditAllow, log: s.log.Named("audit"),
		unaudited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_audit_unaudited_total",
			Help: "Decisions and remediations that took effect without a durable audit record, by kind and decision (allow, deny; empty for remediations).",
		}, []string{"kind", "decision"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_audit_records_total",
			Help: "Audit records made durable, by kind.",
		}, []string{"kind"}),
	}
	l.decisions = l.records.WithLabelValues(string(audit.KindDecision))
	l.records.WithLabelValues(string(audit.KindRemediation))
	l.unaudited.WithLabelValues(string(audit.KindDecision), audit.Allow)
	l.unaudited.WithLabelValues(string(audit.KindDecision), audit.Deny)
	l.unaudited.WithLabelValues(string(audit.KindRemediation), "")
	s.metrics.Registry.MustRegister(l.unaudited, l.records)
	s.closers = append(s.closers, func() {
		if err := w.Close(); err != nil {
			s.log.Error("closing the audit log", zap.Error(err))
		}
	})
	s.log.Info("audit log open", zap.String("dir", cfg.Dir), zap.String("origin", w.Origin()),
		zap.Uint64("records", w.Size()), zap.String("durability", cfg.Durability))
	return l, nil
}

// startWitnessing sends the log's checkpoints to the controller's witness, on the controller's xDS address with
// the same mTLS credentials as the ADS stream, every checkpoint interval.
func (s *Sidecar) startWitnessing(self spiffeid.ID) error {
	tlsConf := mtls.ClientConfig(s.src, mtls.AuthorizeIDs(wire.ControllerID(self.TrustDomain())))
	cc, err := grpc.NewClient(s.cfg.Controller.Address, grpc.WithTransportCredentials(mtls.GRPCCredentials(tlsConf, nil)))
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	client := witness.NewClient(s.cfg.Audit.Dir, cc, s.log.Named("witness"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); client.Run(ctx, s.cfg.Audit.CheckpointInterval) }()
	s.closers = append(s.closers, func() { cancel(); <-done; _ = cc.Close() })
	return nil
}

// writeFileAtomic replaces path with data, so a reader never sees half a certificate.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Audit implements proxy.Auditor. With onWriteError allow, a failed write is counted and the decision goes ahead;
// with refuse, the error refuses it. A request whose caller went away while it waited is refused either way.
func (l *auditLog) Audit(ctx context.Context, d *proxy.DecisionRecord) error {
	var rec audit.Record // on the stack: the writer keeps nothing of it
	l.decisionRecord(&rec, d)
	if _, err := l.w.Append(ctx, &rec); err != nil {
		if ctx.Err() != nil {
			return err
		}
		l.writeFailed(audit.KindDecision, rec.Decision, err)
		// In refuse mode only a refusal still takes effect unaudited: an allowed request is refused instead.
		if l.failOpen || rec.Decision == audit.Deny {
			l.unaudited.WithLabelValues(string(audit.KindDecision), rec.Decision).Inc()
		}
		if l.failOpen {
			return nil
		}
		return err
	}
	l.decisions.Inc()
	return nil
}

func (l *auditLog) writeFailed(kind audit.Kind, decision string, err error) {
	if l.failed.CompareAndSwap(false, true) {
		what := "refusing requests until the sidecar restarts with a writable log"
		if l.failOpen {
			what = "serving unaudited (onWriteError: allow), counted in agentauth_audit_unaudited_total"
		}
		l.log.Error("the audit log cannot be written: "+what, zap.String("kind", string(kind)),
			zap.String("decision", decision), zap.Error(err))
	}
}

func (l *auditLog) decisionRecord(rec *audit.Record, d *proxy.DecisionRecord) {
	*rec = audit.Record{
		Time: d.Time, Kind: audit.KindDecision, Direction: string(d.Direction), Route: d.Route,
		Subject: clip(d.DelegatedSubject), SubjectKind: d.SubjectKind, Host: clip(d.Host), Method: clip(d.Method),
		Path: clip(d.Path), MCPMethod: clip(d.MCPMethod), MCPTool: clip(d.MCPName), Decision: audit.Deny,
		Reason: d.Reason, PolicyIDs: d.PolicyIDs, RevocationID: d.RevocationID, Txn: clip(d.TransactionID),
		Traceparent: clip(d.Traceparent), AuthMethod: d.AuthMethod, Risk: clip(d.Risk),
	}
	if d.Allowed {
		rec.Decision = audit.Allow
	}
	switch d.Direction {
	case proxy.Egress:
		rec.Agent = l.self
	case proxy.Ingress:
		rec.Agent, rec.Tool = clip(d.Subject), l.self
		if rec.Agent == "" {
			rec.Agent = d.PeerID
		}
	}
}

func clip(s string) string { return audit.Clip(s, maxAuditField) }

// remediations records the revocations and risk changes an xDS update applied, with the event behind each. It
// runs before the update is ACKed. A remediation is never held back for its record: a write failure is logged
// and counted.
func (l *auditLog) remediations(u xdsclient.Update, st *xdsclient.State) {
	var recs []*audit.Record
	now := time.Now()
	switch u.TypeURL {
	case agentauthv1.RevocationType:
		for _, name := range u.Updated {
			if r, ok := st.Revocation(name); ok {
				rec := &audit.Record{Time: now, Kind: audit.KindRemediation, Action: "revoke", RevocationID: r.GetId(),
					Reason: clip(r.GetReason())}
				remediationSubject(rec, r.GetSubject())
				remediationCause(rec, r.GetCause())
				recs = append(recs, rec)
			}
		}
		for _, name := range u.Removed {
			recs = append(recs, &audit.Record{Time: now, Kind: audit.KindRemediation, Action: "unrevoke", RevocationID: name})
		}
	case agentauthv1.RiskStateType:
		for _, name := range u.Updated {
			if r, ok := st.RiskState(name); ok {
				rec := &audit.Record{Time: now, Kind: audit.KindRemediation, Action: "risk-change", Risk: clip(r.GetRiskLevel())}
				remediationSubject(rec, r.GetSubject())
				remediationCause(rec, r.GetCause())
				recs = append(recs, rec)
			}
		}
		for _, name := range u.Removed {
			recs = append(recs, &audit.Record{Time: now, Kind: audit.KindRemediation, Action: "risk-cleared", Subject: clip(name)})
		}
	}
	if len(recs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Appended together, committed together: a few fsyncs for a whole update (the first sync brings every
	// revocation at once), with a bounded number of appends waiting at a time.
	for chunk := range slices.Chunk(recs, audit.DefaultBatchMax) {
		errs := make(chan error, len(chunk))
		for _, rec := range chunk {
			go func() {
				_, err := l.w.Append(ctx, rec)
				errs <- err
			}()
		}
		for range chunk {
			if err := <-errs; err != nil {
				l.writeFailed(audit.KindRemediation, "", err)
				l.unaudited.WithLabelValues(string(audit.KindRemediation), "").Inc()
				continue
			}
			l.records.WithLabelValues(string(audit.KindRemediation)).Inc()
		}
	}
}

// remediationSubject names whom a remediation is about: a workload as the agent, anyone else as the subject.
func remediationSubject(rec *audit.Record, s *agentauthv1.Subject) {
	if s == nil {
		return
	}
	rec.SubjectKind = s.GetKind()
	if s.GetKind() == "spiffe" {
		rec.Agent = clip(s.GetValue())
		return
	}
	rec.Subject = clip(s.GetValue())
}

func remediationCause(rec *audit.Record, c *agentauthv1.Cause) {
	if c == nil {
		return
	}
	rec.Cause, rec.SETJti = clip(c.GetEventType()), clip(c.GetSetJti())
}

var _ proxy.Auditor = (*auditLog)(nil)
