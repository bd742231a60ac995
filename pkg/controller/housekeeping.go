package controller

import (
	"context"
	"time"

	"go.uber.org/zap"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// housekeepingEvery is how often records that can no longer matter are dropped from the store.
const housekeepingEvery = time.Hour

// issuedRetention keeps the record of an issued certificate this long after it expired, for whoever audits
// which serial went to which workload.
const issuedRetention = 7 * 24 * time.Hour

// housekeeper drops, at start and then hourly until it stops, what can no longer matter: de-duplication
// records of SETs too old to be accepted again, expired revocations (sidecars already ignore them), expired join
// tokens (used or not: either way they admit no one), and issued-certificate records past their retention.
// It is singleton work (leaderOnly): it starts again each time this replica becomes leader.
type housekeeper struct {
	c       *Controller
	done    chan struct{} // closed by stop
	stopped chan struct{} // closed when the loop has returned
}

func (h *housekeeper) provision(context.Context) error { return nil }

func (h *housekeeper) start(context.Context, func(error)) error {
	h.done, h.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.stopped)
		h.run()
	}()
	return nil
}

// stop waits for a pruning under way: it needs the store, which closes after.
func (h *housekeeper) stop(context.Context) {
	close(h.done)
	<-h.stopped
}

func (h *housekeeper) run() {
	t := time.NewTicker(housekeepingEvery)
	defer t.Stop()
	now := time.Now()
	for {
		h.c.prune(now)
		select {
		case <-h.done:
			return
		case now = <-t.C:
		}
	}
}

func (c *Controller) prune(now time.Time) {
	for _, p := range []struct {
		what string
		fn   func() (int, error)
	}{
		{"SET records", func() (int, error) { return c.store.PruneSETs(now) }},
		{"expired revocations", func() (int, error) { return c.state.PruneRevocations(now) }},
		{"expired join tokens", func() (int, error) {
			return c.store.JoinTokens().DeleteFunc(func(t *agentauthv1.JoinToken) bool {
				return t.GetExpires() != nil && !now.Before(t.GetExpires().AsTime())
			})
		}},
		{"issued-certificate records", func() (int, error) {
			return c.store.IssuedCerts().DeleteFunc(func(ic *agentauthv1.IssuedCert) bool {
				return ic.GetNotAfter() != nil && now.Sub(ic.GetNotAfter().AsTime()) > issuedRetention
			})
		}},
	} {
		if n, err := p.fn(); err != nil {
			c.log.Warn("housekeeping: pruning failed", zap.String("what", p.what), zap.Error(err))
		} else if n > 0 {
			c.log.Info("housekeeping: pruned", zap.String("what", p.what), zap.Int("count", n))
		}
	}
}

var _ component = (*housekeeper)(nil)
