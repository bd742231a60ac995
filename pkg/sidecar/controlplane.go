package sidecar

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/xds"
	"github.com/agentauth/agentauth/pkg/xds/xdsclient"
)

// openIssuer attests to the controller's built-in issuer (join token or local socket the first time, renewal
// afterwards).
func (s *Sidecar) openIssuer(ctx context.Context, c *ControllerIdentityConfig) (identity.Source, error) {
	bundle, err := loadBootstrapBundle(c.Bundle)
	if err != nil {
		return nil, fmt.Errorf("identity.controller.bundle: %w", err)
	}
	token, err := joinToken(c)
	if err != nil {
		return nil, err
	}
	icfg := identity.IssuerConfig{
		Address:     c.Address,
		Bundle:      bundle,
		JoinToken:   token,
		LocalSocket: c.LocalSocket,
		StateDir:    c.StateDir,
		WITAlg:      s.cfg.Identity.workloadKeyAlgorithm(),
		Observer:    s.observer(),

		KubernetesTokenFile: c.KubernetesTokenFile,
	}
	// A controller that is not up yet (both started together, or it is restarting) is waited for, with jittered
	// backoff, while /readyz says so; a refusal (a spent join token, an unknown uid) ends the start at once.
	var waiting atomic.Pointer[string]
	s.admin.AddCheck("credentials", func(context.Context) (string, error) {
		if last := waiting.Load(); last != nil {
			return "", fmt.Errorf("waiting for controller at %s: %s", c.Address, *last)
		}
		return "", fmt.Errorf("attesting to the controller at %s", c.Address)
	})
	for attempt := 0; ; attempt++ {
		src, err := identity.NewIssuerSource(ctx, icfg)
		if err == nil {
			return src, nil
		}
		if !unreachable(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("identity.controller: %w", err)
		}
		msg := err.Error()
		waiting.Store(&msg)
		delay := fullJitter(attempt, waitControllerMin, waitControllerMax)
		s.log.Warn("waiting for controller: attestation failed, retrying", zap.String("address", c.Address),
			zap.Error(err), zap.Duration("retry_in", delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// xdsStateFile is the name of the saved xDS state in identity.controller.stateDir.
const xdsStateFile = "xds-state.json"

// Bounds of the backoff while waiting for the controller at first start.
const (
	waitControllerMin = 250 * time.Millisecond
	waitControllerMax = 15 * time.Second
)

// unreachable reports whether err means the controller could not be reached (rather than refused us).
func unreachable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// fullJitter is uniform in [0, min(hi, lo·2^attempt)): sidecars started together do not retry together.
func fullJitter(attempt int, lo, hi time.Duration) time.Duration {
	ceiling := lo
	for i := 0; i < attempt && ceiling < hi; i++ {
		ceiling *= 2
	}
	return time.Duration(rand.Int64N(int64(min(ceiling, hi)))) + 1
}

// joinToken is identity.controller's join token, inline or read from joinTokenFile.
func joinToken(c *ControllerIdentityConfig) (string, error) {
	if c.JoinTokenFile == "" {
		return c.JoinToken, nil
	}
	token, err := confyaml.ReadSecret(c.JoinTokenFile)
	if err != nil {
		return "", fmt.Errorf("identity.controller.joinTokenFile: %w", err)
	}
	return token, nil
}

// loadBootstrapBundle reads the controller's CA root (bundle.pem); its trust domain is the root's SPIFFE ID.
func loadBootstrapBundle(path string) (*x509bundle.Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	if len(certs[0].URIs) != 1 {
		return nil, fmt.Errorf("%s: the CA certificate has no SPIFFE ID naming its trust domain", path)
	}
	td, err := spiffeid.TrustDomainFromURI(certs[0].URIs[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return x509bundle.FromX509Authorities(td, certs), nil
}

// controlPlane is the sidecar's view of the controller: the xDS client's state, and what is derived from it
// (the compiled policy set).
type controlPlane struct {
	client *xdsclient.Client
	engine *policy.Engine
	log    *zap.Logger
	src    identity.Source
	// renew, when the credential source can, fetches fresh credentials now; renewedAt is when it last did.
	renew     func(context.Context) error
	renewedAt atomic.Pointer[time.Time]
	renewing  atomic.Bool
	// audit records the remediations updates apply; nil without an audit log.
	audit *auditLog
}

// renewIfRevoked gets this workload fresh credentials when a revocation refuses its current ones (CAEP
// session-revoked, RISC credential-compromise: everything issued before the event). Withheld credentials (no
// not_before) are refused by the issuer too, so the sidecar keeps failing closed.
func (cp *controlPlane) renewIfRevoked() {
	if cp.renew == nil {
		return
	}
	svid, err := cp.src.GetX509SVID()
	if err != nil {
		return
	}
	// Certificates are backdated a little, so the time of our own last renewal is the better "issued at", in
	// whole seconds as our WIT's iat: other sidecars judge by that, and refuse it in the second of the event.
	issued := svid.Certificates[0].NotBefore
	if last := cp.renewedAt.Load(); last != nil && last.After(issued) {
		issued = last.Truncate(time.Second)
	}
	r := cp.client.State().Revoked("spiffe", "", svid.ID.String(), issued, time.Now())
	if r == nil || r.GetNotBefore() == nil || !cp.renewing.CompareAndSwap(false, true) {
		return
	}
	nb := r.GetNotBefore().AsTime()
	cp.log.Warn("this workload's credentials were revoked; getting new ones", zap.Stringer("id", svid.ID),
		zap.String("revocation", r.Describe()))
	go func() {
		renewed := cp.renewAfter(nb)
		cp.renewing.Store(false)
		if renewed {
			// A revocation that arrived while we renewed was not acted on (one renewal at a time), and it may
			// cover the new credentials too (a credential-compromise in the same second): check them again.
			cp.renewIfRevoked()
		}
	}()
}

// renewAfter renews the credentials once the second of a revocation's not_before has passed, and reports whether
// it did.
func (cp *controlPlane) renewAfter(nb time.Time) bool {
	// Token times are whole seconds: credentials stamped in the event's second would still be refused.
	if wait := time.Until(nb.Truncate(time.Second).Add(time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cp.renew(ctx); err != nil {
		cp.log.Error("renewing revoked credentials failed", zap.Error(err))
		return false
	}
	now := time.Now()
	cp.renewedAt.Store(&now)
	return true
}

// startControlPlane connects to the controller's ADS endpoint with our SVID and keeps the policy engine in step
// with the policies it serves. Until the first full sync the sidecar is not ready; afterwards it keeps enforcing
// its last state if the controller goes away (fail-static), and /readyz says so.
func (s *Sidecar) startControlPlane(self spiffeid.ID) (*controlPlane, error) {
	cp := &controlPlane{log: s.log.Named("xds"), src: s.src, audit: s.audit}
	if r, ok := s.src.(interface{ Renew(context.Context) error }); ok {
		cp.renew = r.Renew
	}
	tlsConf := mtls.ClientConfig(s.src, mtls.AuthorizeIDs(wire.ControllerID(self.TrustDomain())))
	// The last state from the controller is kept beside the credentials (identity.controller.stateDir), so a
	// restart during a controller outage enforces it instead of refusing everything.
	var stateFile string
	if c := s.cfg.Identity.Controller; c != nil && c.StateDir != "" {
		stateFile = filepath.Join(c.StateDir, xdsStateFile)
	}
	client, err := xdsclient.NewClient(xdsclient.ClientConfig{
		Target:      s.cfg.Controller.Address,
		TLSConfig:   tlsConf,
		NodeID:      self.String(),
		Validators:  map[string]xds.Validator{agentauthv1.PolicyType: policy.ValidateResource},
		OnUpdate:    cp.onUpdate,
		Logger:      cp.log,
		StateFile:   stateFile,
		TrustDomain: self.TrustDomain().Name(),
	})
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	cp.client = client
	// No policy set until the controller sends one (or the saved state has one): the engine denies everything
	// meanwhile. Revocations are not the engine's: the ingress checks them in their own step (Check), once.
	cp.engine = policy.NewEngine(nil)
	if client.Status().Synced {
		cp.onUpdate(xdsclient.Update{TypeURL: agentauthv1.PolicyType, Version: client.Status().Versions[agentauthv1.PolicyType]})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = client.Run(ctx) }()
	s.closers = append(s.closers, func() { cancel(); <-done })
	s.metrics.Registry.MustRegister(xdsclient.NewClientCollector(client))
	s.admin.AddCheck("controller", cp.ready)
	return cp, nil
}

// onUpdate recompiles the policy set when policies change. Revocations need nothing here: every check reads the
// client's current state, so the next request after an update sees it.
func (cp *controlPlane) onUpdate(u xdsclient.Update) {
	if cp.audit != nil {
		// The new state already applies; recording it before the ACK means the controller never sees a remediation
		// taken up that this log does not hold.
		cp.audit.remediations(u, cp.client.State())
	}
	if u.TypeURL == agentauthv1.RevocationType {
		cp.renewIfRevoked()
		return
	}
	if u.TypeURL != agentauthv1.PolicyType {
		return
	}
	set, err := policy.CompileResources(cp.client.State().Policies())
	if err != nil {
		// Each document compiled on its own (the validator), but not together (e.g. duplicate ids across files):
		// keep enforcing the previous set.
		cp.log.Error("policy set from the controller does not compile; keeping the previous one", zap.Error(err))
		return
	}
	cp.engine.Swap(set)
	cp.log.Info("policy set applied", zap.String("version", u.Version), zap.Int("policies", set.Len()))
}

// risk is the highest current CAEP risk level of the agent and of the user it acts for (any identifier kind,
// any issuer, as revocations are matched), and the latest assurance level among them, as the controller serves
// them.
func (cp *controlPlane) risk(agent, user string) (policy.RiskLevel, string) {
	st := cp.client.State()
	var level policy.RiskLevel
	var assurance string
	var assuredAt time.Time
	// Folded as they are found: this runs on every request.
	consider := func(kind, value string) {
		for _, r := range st.Risks(kind, "", value) {
			if r.GetRiskLevel() != "" {
				level = policy.HigherRisk(level, policy.RiskLevel(r.GetRiskLevel()))
			}
			if at := r.GetUpdated().AsTime(); r.GetAssuranceLevel() != "" && (assurance == "" || at.After(assuredAt)) {
				assurance, assuredAt = r.GetAssuranceLevel(), at
			}
		}
	}
	for _, k := range revocation.ClassAgent.Kinds() {
		consider(string(k), agent)
	}
	if user != "" {
		for _, k := range revocation.ClassUser.Kinds() {
			consider(string(k), revocation.Normal(k, user))
		}
	}
	return level, assurance
}

func (cp *controlPlane) ready(context.Context) (string, error) {
	st := cp.client.Status()
	switch {
	case !st.Synced && st.LastError != "":
		return "", fmt.Errorf("no state from the controller yet: %s", st.LastError)
	case !st.Synced:
		return "", errors.New("no state from the controller yet")
	case !st.Connected && st.LastContact.IsZero():
		return fmt.Sprintf("fail-static: controller unreachable, enforcing the state saved at %s (restored at start) (%s)",
			st.RestoredAt.UTC().Format(time.RFC3339), st.LastError), nil
	case !st.Connected:
		return fmt.Sprintf("fail-static: controller unreachable, enforcing the state received at %s (%s)",
			st.LastContact.UTC().Format(time.RFC3339), st.LastError), nil
	}
	return "connected", nil
}

// Check implements proxy.RevocationChecker, the ingress's one revocation step: it runs after the Txn-Token step
// and before policy, so everything the request names is checked once against the controller's revocations — the
// caller's workload identity, its WIT and its client certificate, then the user (or system) its Txn-Token acts
// for and the transaction. The WIT's jti is matched under any issuer: a revocation by jti alone (agentauthctl
// without -iss) names no issuer, and jtis are unique anyway.
func (cp *controlPlane) Check(_ context.Context, id *proxy.Identity) error {
	revs, now := cp.client.State().RevocationIndex(), time.Now()
	issued := id.IssuedAt
	if r := revs.RefusingClass(revocation.ClassAgent, id.Subject, issued, now); r != nil {
		return proxy.Revoked(r.GetId(), r.Describe())
	}
	if jti := id.WITID; jti != "" {
		if r := revs.Refusing(revocation.KindJTI, "", jti, issued, now); r != nil {
			return proxy.Revoked(r.GetId(), r.Describe())
		}
	}
	// A certificate revoked by serial (CAEP credential-change, x509) is refused for good. Its issuer is matched
	// loosely, like the jti's: a DN has many spellings, and serials are random.
	if c := id.PeerCert; c != nil {
		serial := hex.EncodeToString(c.SerialNumber.Bytes())
		if r := revs.Refusing(revocation.KindX509Serial, "", serial, c.NotBefore, now); r != nil {
			return proxy.Revoked(r.GetId(), r.Describe())
		}
	}
	// The Txn-Token's subject and transaction, as of when the user's token was issued. The workload that began a
	// transaction for itself (a system subject) is revoked as an agent.
	call := revocation.Call{Delegated: id.DelegatedSubject, DelegatedIssuedAt: id.DelegatedIssuedAt,
		DelegatedIsAgent: id.SubjectKind == oauth.SubjectSystem, Txn: id.TransactionID}
	for _, ch := range call.Checks() {
		r := revs.RefusingClass(ch.Class, ch.Value, ch.IssuedAt, now)
		switch {
		case r == nil:
		case ch.Class == revocation.ClassTxn:
			return proxy.Revoked(r.GetId(), fmt.Sprintf("transaction %q: %s", ch.Value, r.Describe()))
		default:
			return proxy.Revoked(r.GetId(), fmt.Sprintf("%s %q: %s", ch.Class, ch.Value, r.Describe()))
		}
	}
	return nil
}

var _ proxy.RevocationChecker = (*controlPlane)(nil)
