package controller

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/atomicfile"
	"github.com/agentauth/agentauth/pkg/audit"
)

// AuditConfig is the controller's own tamper-evident log of what it does (pkg/audit): issuance, renewal and
// refusal; policy apply, revoke, unrevoke and join tokens with the admin's peer identity; Security Event Tokens
// applied and SSF streams; witness alarms.
type AuditConfig struct {
	// Dir holds the log files, the signed checkpoints, the checkpoint key (audit.key) and its certificate by the
	// controller's SVID (audit-key.jws).
	Dir string `yaml:"dir"`
	// Durability is sync (default) or batched, as for the sidecar.
	Durability string `yaml:"durability,omitempty"`
	// MaxFileBytes rotates to a new file past this size (default 64 MiB).
	MaxFileBytes int64 `yaml:"maxFileBytes,omitempty"`
	// CheckpointInterval is how often a signed checkpoint is written (default 10s, at least 1s).
	CheckpointInterval time.Duration `yaml:"checkpointInterval,omitempty"`
}

func (a *AuditConfig) validate(add func(field, format string, args ...any)) {
	if a.Dir == "" {
		add("audit.dir", "required: where the controller's audit log lives")
	}
	switch audit.Durability(a.Durability) {
	case "", audit.Sync, audit.Batched:
	default:
		add("audit.durability", "%q is not one of sync, batched", a.Durability)
	}
	if a.CheckpointInterval != 0 && a.CheckpointInterval < time.Second {
		add("audit.checkpointInterval", "%s is below the minimum of 1s", a.CheckpointInterval)
	}
}

// Controller audit actions.
const (
	ActionSVIDIssued  = "svid-issued"
	ActionSVIDRefused = "svid-refused"
	ActionPolicyApply = "policy-apply"
	ActionRevoke      = "revoke"
	ActionUnrevoke    = "unrevoke"
	ActionJoinToken   = "join-token"
	ActionSETRevoke   = "set-revoke"
	ActionSETRisk     = "set-risk"
	ActionSSFStream   = "ssf-stream"
)

const controllerAuditKeyFile = "audit.key"

// actionLog is the controller's audit.Recorder. Without audit configured it records nothing. The action a record
// describes has happened (or been refused) when it is written: a write failure is logged and counted, and the
// action stands.
type actionLog struct {
	w      *audit.Writer
	log    *zap.Logger
	failed prometheus.Counter
}

// openAudit opens the controller's audit log, its checkpoint key certified by the controller's SVID.
func (c *Controller) openAudit() (*actionLog, error) {
	a := &actionLog{log: c.log.Named("audit"), failed: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentauth_controller_audit_failures_total",
		Help: "Controller actions whose audit record could not be written.",
	})}
	c.reg.MustRegister(a.failed)
	cfg := c.cfg.Audit
	if cfg == nil {
		return a, nil
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	svid, err := c.self.GetX509SVID()
	if err != nil {
		return nil, err
	}
	signer, verifier, err := audit.LoadOrCreateKey(filepath.Join(cfg.Dir, controllerAuditKeyFile), audit.OriginFor(svid.ID))
	if err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	cert, err := audit.CertifyKey(audit.VerifierKey(verifier), svid, time.Now())
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(cfg.Dir, audit.KeyCertFile), append(cert, '\n')); err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	if a.w, err = audit.Open(audit.Options{Dir: cfg.Dir, Signer: signer, Durability: audit.Durability(cfg.Durability),
		MaxFileBytes: cfg.MaxFileBytes, CheckpointInterval: cfg.CheckpointInterval}); err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	c.closers = append(c.closers, func() {
		if err := a.w.Close(); err != nil {
			c.log.Error("closing the audit log", zap.Error(err))
		}
	})
	c.log.Info("audit log open", zap.String("dir", cfg.Dir), zap.String("origin", a.w.Origin()), zap.Uint64("records", a.w.Size()))
	return a, nil
}

// Append implements audit.Recorder.
func (a *actionLog) Append(ctx context.Context, r *audit.Record) (uint64, error) {
	if a == nil || a.w == nil {
		return 0, nil
	}
	r.Kind = audit.KindController
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	i, err := a.w.Append(ctx, r)
	if err != nil {
		a.failed.Inc()
		a.log.Error("audit record not written", zap.String("action", r.Action), zap.Error(err))
	}
	return i, err
}

// record writes r, even if the caller that caused it has gone away.
func (a *actionLog) record(ctx context.Context, r *audit.Record) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, _ = a.Append(ctx, r)
}

// adminActor is the admin's peer identity: the kernel's credentials of the process on the admin socket.
func adminActor(r *http.Request) string {
	p, _ := r.Context().Value(peerCredKey{}).(peerCredResult)
	if p.err != nil {
		return "unknown"
	}
	return fmt.Sprintf("unix:uid=%d,gid=%d,pid=%d", p.cred.UID, p.cred.GID, p.cred.PID)
}

// subjectFields names a revocation's subject on a record: a workload as the agent, anyone else as the subject.
func subjectFields(r *audit.Record, s *agentauthv1.Subject) {
	r.SubjectKind = s.GetKind()
	if s.GetKind() == "spiffe" {
		r.Agent = s.GetValue()
		return
	}
	r.Subject = s.GetValue()
}

// issuerInterceptor records every Attest and Renew: the SPIFFE ID issued (or, refused, the presented one), the
// attestation kind, and the refusal's reason code.
func (a *actionLog) issuerInterceptor(local bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		kind, ok := attestation(req, info.FullMethod, local)
		if !ok {
			return resp, err
		}
		rec := &audit.Record{Action: ActionSVIDIssued, Attestation: kind, Decision: audit.Allow}
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			rec.Actor = p.Addr.String()
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
				if id, err := x509svid.IDFromCert(ti.State.PeerCertificates[0]); err == nil {
					rec.Agent = id.String()
				}
			}
		}
		if out, ok := resp.(interface {
			GetCredentials() *agentauthv1.Credentials
		}); ok && out.GetCredentials().GetSpiffeId() != "" {
			rec.Agent = out.GetCredentials().GetSpiffeId()
		}
		if err != nil {
			rec.Action, rec.Decision, rec.Reason = ActionSVIDRefused, audit.Deny, grpcReason(err)
		}
		a.record(ctx, rec)
		return resp, err
	}
}
