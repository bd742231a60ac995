package controller

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/store"
)

// ActionCARotation is the audit action of each step of a CA rotation (prepared, activated, retired, dropped).
const ActionCARotation = "ca-rotation"

// Bounds of the rotator's wait: it checks at least every caCheckEvery (a clock that jumped, a step another leader
// took), and waits caRetry after a failed step.
const (
	caCheckEvery = time.Minute
	caRetry      = 5 * time.Second
)

// caRotator takes the CA's rotation steps when they are due (issuer.CA.Rotate). It is singleton work: with
// state.backend kubernetes only the leader runs it, and the other replicas follow through caWatcher.
type caRotator struct {
	c       *Controller
	cancel  context.CancelFunc
	stopped chan struct{}
}

func (r *caRotator) provision(context.Context) error { return nil }

func (r *caRotator) start(context.Context, func(error)) error {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.stopped = cancel, make(chan struct{})
	go func() {
		defer close(r.stopped)
		r.run(ctx)
	}()
	return nil
}

func (r *caRotator) stop(context.Context) {
	r.cancel()
	<-r.stopped
}

func (r *caRotator) run(ctx context.Context) {
	c := r.c
	for {
		wait := caCheckEvery
		if err := c.rotateCA(ctx); err != nil && ctx.Err() == nil {
			c.metrics.caSteps.WithLabelValues("failed").Inc()
			c.log.Error("CA rotation step failed; retrying", zap.Error(err))
			wait = caRetry
		} else if next := time.Until(c.ca.NextRotation()); next < wait {
			wait = next
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 10*time.Millisecond)):
		}
	}
}

// rotateCA takes the due rotation steps, records each (log, audit, metric), and applies the new CA state.
func (c *Controller) rotateCA(ctx context.Context) error {
	events, err := c.ca.Rotate(ctx)
	for _, e := range events {
		c.metrics.caSteps.WithLabelValues(string(e.Step)).Inc()
		c.log.Info("CA rotation: "+string(e.Step), zap.Int("generation", e.Generation),
			zap.String("serial", fmt.Sprintf("%x", e.Root.SerialNumber)), zap.Time("not_after", e.Root.NotAfter))
		c.actions.record(ctx, &audit.Record{Action: ActionCARotation, Actor: c.replicaName(),
			Reason: fmt.Sprintf("%s generation %d (serial %x, not after %s)", e.Step, e.Generation, e.Root.SerialNumber,
				e.Root.NotAfter.UTC().Format(time.RFC3339))})
	}
	if len(events) > 0 {
		if aerr := c.applyCA(ctx); aerr != nil {
			err = errors.Join(err, aerr)
		}
	}
	return err
}

// replicaName names this controller in audit records: its Lease identity with the kubernetes backend.
func (c *Controller) replicaName() string {
	if k := c.cfg.State.Kubernetes; k != nil && k.Identity != "" {
		return "controller " + k.Identity
	}
	return "controller"
}

// applyCA makes what is derived from the CA follow its current state: the trust bundle served over xDS, the
// bundle.pem file, and the controller's own SVID (the xDS, issuer and token service serving certificate), which
// is reissued at once when another root has become active. The webhook's serving certificate moves to the new
// root at its next renewal (half its lifetime); until then the retired root that signed it stays in its caBundle.
func (c *Controller) applyCA(ctx context.Context) error {
	c.caMu.Lock()
	defer c.caMu.Unlock()
	var errs []error
	if err := c.publishTrustBundle(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := writeBundle(filepath.Join(c.cfg.DataDir, "bundle.pem"), c.ca); err != nil {
		errs = append(errs, err)
	}
	if svid, _ := c.self.GetX509SVID(); svid.Certificates[0].CheckSignatureFrom(c.ca.Root()) != nil {
		if err := c.self.renew(ctx); err != nil {
			errs = append(errs, fmt.Errorf("reissuing the controller's SVID from the new root: %w", err))
		} else {
			c.log.Info("controller SVID reissued from the active CA root", zap.Int("generation", c.ca.Generation()))
		}
	}
	return errors.Join(errs...)
}

// publishTrustBundle stores the CA's trust bundle for xDS. A replica whose CA state is older than the stored
// bundle's (another replica stored a later rotation it has not loaded yet) reloads the CA first, rather than be
// refused for rolling the bundle back.
func (c *Controller) publishTrustBundle(ctx context.Context) error {
	b := trustBundle(c.ca)
	if stored, err := c.store.TrustBundles().Get(b.GetTrustDomain()); err == nil && stored.GetSequence() > b.GetSequence() {
		if _, err := c.ca.Reload(ctx); err != nil {
			return fmt.Errorf("publishing the trust bundle: the stored one is newer; reloading the CA: %w", err)
		}
		b = trustBundle(c.ca)
	}
	if err := c.state.SetTrustBundle(b); err != nil {
		return fmt.Errorf("publishing the trust bundle: %w", err)
	}
	return nil
}

// caWatcher follows rotations another replica makes: with state.backend kubernetes, when a CA record changes in
// the shared state, it reloads the CA (every replica then issues from the same active root and serves the same
// bundles) and applies it. With bbolt the rotator is in this process and applies what it does itself.
type caWatcher struct {
	c       *Controller
	cancel  func()
	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
}

func (w *caWatcher) provision(context.Context) error { return nil }

func (w *caWatcher) start(context.Context, func(error)) error {
	w.kick, w.done, w.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	w.cancel = w.c.store.Subscribe(func(changes []store.Change) {
		for _, ch := range changes {
			if ch.Bucket == store.BucketCA && !strings.HasPrefix(ch.Key, keyRecordPrefix) {
				select {
				case w.kick <- struct{}{}:
				default: // a reload is pending already
				}
				return
			}
		}
	})
	go func() {
		defer close(w.stopped)
		w.run()
	}()
	return nil
}

func (w *caWatcher) run() {
	c := w.c
	for {
		select {
		case <-w.done:
			return
		case <-w.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		changed, err := c.ca.Reload(ctx)
		switch {
		case err != nil:
			c.log.Error("reloading the CA after a change in the shared state", zap.Error(err))
		case changed:
			c.log.Info("CA state changed in the shared state; following it", zap.Int("generation", c.ca.Generation()))
			if err := c.applyCA(ctx); err != nil {
				c.log.Error("applying the CA state", zap.Error(err))
			}
		}
		cancel()
	}
}

func (w *caWatcher) stop(context.Context) {
	w.cancel()
	close(w.done)
	<-w.stopped
}

var (
	_ component = (*caRotator)(nil)
	_ component = (*caWatcher)(nil)
)

// caRotation is the issuer.Rotation of the config.
func (c *Controller) caRotation() issuer.Rotation {
	return issuer.Rotation{PrepareAt: c.cfg.Issuer.CAPrepareAt, ActivateAt: c.cfg.Issuer.CAActivateAt}
}
