// Package witness is the controller's witness of the sidecars' audit logs, and the sidecar's client of it.
//
// A sidecar sends each new signed checkpoint of its log, the certificate of its checkpoint key (signed with its
// X.509-SVID) and an RFC 6962 consistency proof from the last checkpoint the controller accepted, over its mTLS
// connection to the controller (agentauth.v1.AuditWitnessService, on the xDS listener). The controller checks that
// the key is certified by the SVID the connection was made with, that the checkpoint is signed by it, and that it
// extends the stored one (github.com/transparency-dev/merkle/proof.VerifyConsistency), then stores it. A
// checkpoint that does not extend the stored one — a smaller tree (shrink) or one whose root is not consistent
// with it (fork) — is refused and raises an alarm: a log line, agentauth_audit_witness_alarms_total and an audit
// record. So a sidecar that rewrites or truncates its log after a witnessed checkpoint is caught the next time it
// reports, even by whoever controls its host.
//
// The exchange follows the C2SP tlog-witness add-checkpoint request: old size, consistency proof, checkpoint. An
// old size that is not the stored one is refused with the stored size, and the client proves again from there.
package witness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/autherr"
)

// Bounds of a request's parts: a checkpoint is a few hundred bytes, a key certificate a JWS around an SVID chain,
// and a consistency proof of a tree below 2^64 has at most 2·64 hashes.
const (
	maxKeyCertBytes = 16 << 10
	maxProofHashes  = 128
	recordTimeout   = 30 * time.Second
)

// What an alarm is about.
const (
	AlarmFork   = "fork"   // the checkpoint is not consistent with the witnessed one
	AlarmShrink = "shrink" // the checkpoint is of a smaller tree than the witnessed one
)

// Errors Add returns; callers branch on them.
var (
	// ErrInconsistent wraps every alarm: the log forked or shrank. See *Alarm.
	ErrInconsistent = errors.New("witness: the checkpoint does not extend the witnessed one")
	// ErrOldSize: the request proves from a size other than the witnessed one. See *OldSizeError.
	ErrOldSize = errors.New("witness: old size is not the witnessed size")
)

// Alarm describes a fork or shrink.
type Alarm struct {
	Kind      string
	Sidecar   spiffeid.ID
	Witnessed audit.Checkpoint
	Got       audit.Checkpoint
	Detail    string
}

func (a *Alarm) Error() string {
	return fmt.Sprintf("witness: audit log of %s %s: witnessed %d records (root %s), now %d (root %s): %s", a.Sidecar, verb(a.Kind),
		a.Witnessed.Size, b64(a.Witnessed.Root), a.Got.Size, b64(a.Got.Root), a.Detail)
}

func (a *Alarm) Unwrap() error { return ErrInconsistent }

func verb(kind string) string {
	if kind == AlarmShrink {
		return "shrank"
	}
	return "forked"
}

// OldSizeError says the size the witness holds, which the client proves from.
type OldSizeError struct{ Witnessed uint64 }

func (e *OldSizeError) Error() string {
	return fmt.Sprintf("witness: old size is not the witnessed size %d", e.Witnessed)
}

func (e *OldSizeError) Unwrap() error { return ErrOldSize }

// Store keeps the latest witnessed checkpoint per sidecar; *store.Store is one.
type Store interface {
	SwapWitnessed(id string, next func(old *agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error)) error
}

// Config configures New.
type Config struct {
	Store Store
	// Bundle verifies the sidecars' SVIDs and the certificates of their checkpoint keys.
	Bundle x509bundle.Source
	// Audit, when set, receives a record of each alarm.
	Audit  audit.Recorder
	Logger *zap.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Connected lists the SPIFFE IDs of the sidecars connected to this controller (their xDS streams). Only
	// these get a last-checkpoint series, so a sidecar that went away does not look like one that stopped
	// reporting; nil: every sidecar heard from.
	Connected func() []string
}

// Witness implements agentauth.v1.AuditWitnessService.
type Witness struct {
	agentauthv1.UnimplementedAuditWitnessServiceServer

	cfg      Config
	log      *zap.Logger
	alarms   *prometheus.CounterVec
	accepted prometheus.Counter
	refused  *prometheus.CounterVec

	// raised remembers the last alarm per sidecar, so that a sidecar sending the same bad checkpoint every
	// interval raises it once.
	mu     sync.Mutex
	raised map[string][32]byte
	// heard is when each sidecar last sent a checkpoint that was accepted (a new one, or the same again).
	heard map[string]time.Time
}

// New returns a Witness; register it on a gRPC server whose connections are mTLS with client certificates.
func New(cfg Config) (*Witness, error) {
	if cfg.Store == nil || cfg.Bundle == nil {
		return nil, errors.New("witness: Config needs Store and Bundle")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Witness{cfg: cfg, log: cfg.Logger, raised: map[string][32]byte{}, heard: map[string]time.Time{},
		alarms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_audit_witness_alarms_total",
			Help: "Sidecar audit logs caught forking or shrinking after a witnessed checkpoint, by kind (fork, shrink).",
		}, []string{"kind"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentauth_audit_witness_checkpoints_total",
			Help: "Sidecar audit checkpoints witnessed (verified and consistent with the previous one).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_audit_witness_refused_total",
			Help: "Sidecar audit checkpoints refused, by reason (an alarm, a stale old size, a bad signature or certificate, malformed).",
		}, []string{"reason"}),
	}
	if w.log == nil {
		w.log = zap.NewNop()
	}
	w.alarms.WithLabelValues(AlarmFork)
	w.alarms.WithLabelValues(AlarmShrink)
	w.refused.WithLabelValues("old_size")
	return w, nil
}

// Collectors are the witness's metrics.
func (w *Witness) Collectors() []prometheus.Collector {
	return []prometheus.Collector{w.alarms, w.accepted, w.refused, lastCheckpoint{w}}
}

var lastCheckpointDesc = prometheus.NewDesc("agentauth_audit_witness_last_checkpoint_timestamp_seconds",
	"When each connected sidecar last sent a checkpoint of its audit log that the witness accepted (Unix seconds). "+
		"Sidecars resend their latest checkpoint every interval, so an old value means the sidecar stopped reporting.",
	[]string{"sidecar"}, nil)

// lastCheckpoint exposes, per sidecar heard from and still connected, when its last checkpoint was accepted.
type lastCheckpoint struct{ w *Witness }

func (c lastCheckpoint) Describe(ch chan<- *prometheus.Desc) { ch <- lastCheckpointDesc }

func (c lastCheckpoint) Collect(ch chan<- prometheus.Metric) {
	var connected map[string]bool
	if c.w.cfg.Connected != nil {
		connected = map[string]bool{}
		for _, id := range c.w.cfg.Connected() {
			connected[id] = true
		}
	}
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	for id, t := range c.w.heard {
		if connected == nil || connected[id] {
			ch <- prometheus.MustNewConstMetric(lastCheckpointDesc, prometheus.GaugeValue, float64(t.UnixNano())/1e9, id)
		}
	}
}

// AddCheckpoint implements AuditWitnessServiceServer: the caller is the SPIFFE ID of the connection's verified
// client certificate.
func (w *Witness) AddCheckpoint(ctx context.Context, req *agentauthv1.AddCheckpointRequest) (*agentauthv1.AddCheckpointResponse, error) {
	id, err := w.peerID(ctx)
	if err != nil {
		w.refused.WithLabelValues(autherr.ErrMissing.Code()).Inc()
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	size, err := w.Add(ctx, id, req)
	if err == nil {
		return &agentauthv1.AddCheckpointResponse{WitnessedSize: size}, nil
	}
	var (
		alarm *Alarm
		old   *OldSizeError
	)
	switch {
	case errors.As(err, &alarm):
		w.refused.WithLabelValues("alarm_" + alarm.Kind).Inc()
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	case errors.As(err, &old):
		w.refused.WithLabelValues("old_size").Inc()
		st, serr := status.New(codes.Aborted, err.Error()).WithDetails(&errdetails.ErrorInfo{
			Reason: "WITNESSED_SIZE", Domain: "agentauth",
			Metadata: map[string]string{MetadataWitnessedSize: strconv.FormatUint(old.Witnessed, 10)},
		})
		if serr != nil {
			return nil, status.Error(codes.Internal, serr.Error())
		}
		return nil, st.Err()
	case autherr.Of(err) != nil:
		w.refused.WithLabelValues(autherr.Code(err)).Inc()
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	w.log.Error("witness: checkpoint not processed", zap.Stringer("sidecar", id), zap.Error(err))
	return nil, status.Error(codes.Internal, "witness: internal error; the controller's log has the detail")
}

// MetadataWitnessedSize is the ErrorInfo metadata key of the witnessed size in an ABORTED answer.
const MetadataWitnessedSize = "witnessedSize"

func (w *Witness) peerID(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, errors.New("witness: no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("witness: the connection has no client certificate")
	}
	id, _, err := x509svid.Verify(info.State.PeerCertificates, w.cfg.Bundle, x509svid.WithTime(w.cfg.Now()))
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("witness: client certificate: %w", err)
	}
	return id, nil
}

// Add witnesses a checkpoint from the sidecar id and returns the size now witnessed. A checkpoint not signed by a
// key id's SVID certified, or malformed, is an error wrapping an autherr reason; a fork or shrink is an *Alarm,
// raised before Add returns; an old size other than the witnessed one is an *OldSizeError.
func (w *Witness) Add(ctx context.Context, id spiffeid.ID, req *agentauthv1.AddCheckpointRequest) (uint64, error) {
	got, vkey, err := w.open(id, req)
	if err != nil {
		return 0, err
	}
	var (
		alarm *Alarm
		size  uint64
		grew  bool // a new checkpoint, not the witnessed one sent again
	)
	err = w.cfg.Store.SwapWitnessed(id.String(), func(old *agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error) {
		next := &agentauthv1.WitnessedCheckpoint{SpiffeId: id.String(), Checkpoint: req.GetCheckpoint(),
			VerifierKey: vkey, WitnessedAt: timestamppb.New(w.cfg.Now())}
		if old == nil {
			size, grew = got.Size, true
			return next, nil
		}
		held, err := openStored(old)
		if err != nil {
			return nil, err
		}
		size = held.Size
		fail := func(kind, detail string) error {
			alarm = &Alarm{Kind: kind, Sidecar: id, Witnessed: held, Got: got, Detail: detail}
			return alarm
		}
		switch {
		case got.Size < held.Size:
			return nil, fail(AlarmShrink, "the log holds fewer records than it did")
		case got.Size == held.Size:
			if !bytes.Equal(got.Root, held.Root) {
				return nil, fail(AlarmFork, "same size, another root")
			}
			return nil, nil
		case held.Size == 0:
		case req.GetOldSize() != held.Size:
			return nil, &OldSizeError{Witnessed: held.Size}
		default:
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, held.Size, got.Size, req.GetConsistencyProof(), held.Root, got.Root); err != nil {
				return nil, fail(AlarmFork, "the consistency proof does not hold: "+err.Error())
			}
		}
		size, grew = got.Size, true
		return next, nil
	})
	if alarm != nil {
		w.raise(ctx, alarm)
		return 0, alarm
	}
	if err != nil {
		return 0, err
	}
	if grew {
		w.accepted.Inc()
	}
	w.mu.Lock()
	w.heard[id.String()] = w.cfg.Now()
	w.mu.Unlock()
	return size, nil
}

// open checks the request's parts and returns its checkpoint, verified with the key id's SVID certified.
func (w *Witness) open(id spiffeid.ID, req *agentauthv1.AddCheckpointRequest) (audit.Checkpoint, string, error) {
	if n := len(req.GetKeyCertificate()); n == 0 || n > maxKeyCertBytes {
		return audit.Checkpoint{}, "", fmt.Errorf("witness: %w: key certificate of %d bytes", autherr.ErrMalformed, n)
	}
	if n := len(req.GetConsistencyProof()); n > maxProofHashes {
		return audit.Checkpoint{}, "", fmt.Errorf("witness: %w: consistency proof of %d hashes", autherr.ErrMalformed, n)
	}
	for i, h := range req.GetConsistencyProof() {
		if len(h) != rfc6962.DefaultHasher.Size() {
			return audit.Checkpoint{}, "", fmt.Errorf("witness: %w: consistency proof hash %d is %d bytes", autherr.ErrMalformed, i, len(h))
		}
	}
	v, certified, err := audit.VerifyKeyCertificate(req.GetKeyCertificate(), w.cfg.Bundle)
	if err != nil {
		return audit.Checkpoint{}, "", fmt.Errorf("witness: %w: %w", autherr.ErrUntrustedIssuer, err)
	}
	if certified != id {
		return audit.Checkpoint{}, "", fmt.Errorf("witness: %w: the checkpoint key is certified by %s, the connection is %s",
			autherr.ErrMismatch, certified, id)
	}
	c, err := audit.OpenCheckpoint(req.GetCheckpoint(), v)
	switch {
	case errors.Is(err, audit.ErrCheckpointSignature):
		return audit.Checkpoint{}, "", fmt.Errorf("witness: %w: %w", autherr.ErrBadSignature, err)
	case err != nil:
		return audit.Checkpoint{}, "", fmt.Errorf("witness: %w: %w", autherr.ErrMalformed, err)
	}
	return c, audit.VerifierKey(v), nil
}

// openStored reads a stored checkpoint back, verified with the key stored with it.
func openStored(s *agentauthv1.WitnessedCheckpoint) (audit.Checkpoint, error) {
	v, err := audit.NewVerifier(s.GetVerifierKey())
	if err != nil {
		return audit.Checkpoint{}, fmt.Errorf("witness: the stored checkpoint of %s: %w", s.GetSpiffeId(), err)
	}
	c, err := audit.OpenCheckpoint(s.GetCheckpoint(), v)
	if err != nil {
		return audit.Checkpoint{}, fmt.Errorf("witness: the stored checkpoint of %s: %w", s.GetSpiffeId(), err)
	}
	return c, nil
}

// raise logs, counts and records an alarm, once per distinct bad checkpoint of a sidecar.
func (w *Witness) raise(ctx context.Context, a *Alarm) {
	key := sha256.Sum256([]byte(a.Kind + "\n" + a.Got.Text()))
	w.mu.Lock()
	repeat := w.raised[a.Sidecar.String()] == key
	w.raised[a.Sidecar.String()] = key
	w.mu.Unlock()
	if repeat {
		return
	}
	w.alarms.WithLabelValues(a.Kind).Inc()
	w.log.Error("AUDIT LOG TAMPERED: a sidecar's audit log "+verb(a.Kind)+" after a witnessed checkpoint",
		zap.String("alarm", a.Kind), zap.Stringer("sidecar", a.Sidecar),
		zap.Uint64("witnessed_size", a.Witnessed.Size), zap.String("witnessed_root", b64(a.Witnessed.Root)),
		zap.Uint64("size", a.Got.Size), zap.String("root", b64(a.Got.Root)), zap.String("detail", a.Detail))
	if w.cfg.Audit == nil {
		return
	}
	rec := &audit.Record{Time: w.cfg.Now(), Kind: audit.KindController, Action: "witness-alarm-" + a.Kind,
		Agent: a.Sidecar.String(), Reason: a.Error()}
	// Recorded even if the sidecar hangs up meanwhile.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if _, err := w.cfg.Audit.Append(ctx, rec); err != nil {
		w.log.Error("witness: the alarm could not be recorded", zap.Error(err))
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
