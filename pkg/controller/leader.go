package controller

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/pkg/leader"
)

// leaderOnly wraps the singleton work of inner (housekeeping, SSF polling and stream management, applying the
// CedarPolicy objects): work only one controller may do at a time. With state.backend kubernetes, inner starts each time this replica gains the Lease
// and stops when it loses it; with bbolt there is no election, this controller is the only one and always leads:
// inner starts and stops with the controller. inner is provisioned once and must be startable again after a stop.
type leaderOnly struct {
	c     *Controller
	work  string // the agentauth_singleton_running label
	inner component
}

func (l *leaderOnly) provision(ctx context.Context) error { return l.inner.provision(ctx) }

func (l *leaderOnly) start(ctx context.Context, fail func(error)) error {
	e := l.c.elector
	if e == nil {
		if err := l.inner.start(ctx, fail); err != nil {
			return err
		}
		l.c.metrics.singletons.WithLabelValues(l.work).Set(1)
		return nil
	}
	e.Go(func(term context.Context) {
		if err := l.inner.start(term, fail); err != nil {
			fail(fmt.Errorf("%s: %w", l.work, err))
			return
		}
		l.c.metrics.singletons.WithLabelValues(l.work).Set(1)
		l.c.log.Info("leader: singleton work started", zap.String("work", l.work))
		<-term.Done()
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l.inner.stop(stop)
		l.c.metrics.singletons.WithLabelValues(l.work).Set(0)
		l.c.log.Info("leader: singleton work stopped", zap.String("work", l.work))
	})
	return nil
}

// stop stops inner without an election; with one, leaderElection's stop ended the term, which stopped inner.
func (l *leaderOnly) stop(ctx context.Context) {
	if l.c.elector == nil {
		l.inner.stop(ctx)
		l.c.metrics.singletons.WithLabelValues(l.work).Set(0)
	}
}

// leaderElection campaigns for the Lease of state.kubernetes (pkg/leader) and runs the leaderOnly work while this
// replica holds it. It comes after every leaderOnly component, which register their work when they start, so it
// is the first to stop: the Lease is released once the singleton work has stopped, and another replica takes
// over at its next retry.
type leaderElection struct {
	c    *Controller
	halt func() // cancels Run and waits for it (set by start)
}

func (l *leaderElection) provision(context.Context) error {
	k := l.c.cfg.State.Kubernetes
	id := k.Identity
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("state.kubernetes.identity: none set, and no host name: %w", err)
		}
		id = host
	}
	e, err := leader.New(l.c.kube, leader.Config{Namespace: k.Namespace, Name: k.LeaseName, Identity: id,
		LeaseDuration: k.LeaseDuration, RenewDeadline: k.RenewDeadline, RetryPeriod: k.RetryPeriod,
		Logger: l.c.log.Named("leader")})
	if err != nil {
		return fmt.Errorf("state.kubernetes: %w", err)
	}
	l.c.elector = e
	return nil
}

func (l *leaderElection) start(_ context.Context, fail func(error)) error {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := l.c.elector.Run(ctx); err != nil {
			fail(fmt.Errorf("leader election: %w", err))
		}
	})
	l.halt = func() {
		cancel()
		wg.Wait()
	}
	return nil
}

// stop ends the term, waits for the singleton work to stop, and releases the Lease.
func (l *leaderElection) stop(context.Context) { l.halt() }

var (
	_ component = (*leaderOnly)(nil)
	_ component = (*leaderElection)(nil)
)
