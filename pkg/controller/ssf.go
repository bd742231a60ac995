package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/store"
)

// ssfSink applies what Security Event Tokens change: revocations and risk states are written to the store (durable
// before the receiver answers 202) and published to every sidecar over xDS.
type ssfSink struct{ c *Controller }

func (s ssfSink) Apply(_ context.Context, changes []signals.Change) error {
	for _, ch := range changes {
		switch {
		case ch.Revocation != nil:
			if err := s.c.pub.UpsertRevocation(ch.Revocation); err != nil {
				return fmt.Errorf("revocation %s: %w", ch.Revocation.GetId(), err)
			}
		case ch.Risk != nil:
			stored, err := s.c.store.Risk().Get(ch.Risk.GetSubject().Key())
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if merged := signals.MergeRisk(stored, ch.Risk); merged != nil {
				if err := s.c.pub.SetRisk(merged); err != nil {
					return fmt.Errorf("risk state: %w", err)
				}
			}
		}
	}
	return nil
}

// startSSF builds the receiver and its HTTP server; the caller serves it.
func (c *Controller) startSSF() (*http.Server, error) {
	cfg := c.cfg.SSF
	ts := make([]signals.TransmitterConfig, 0, len(cfg.Transmitters))
	for _, t := range cfg.Transmitters {
		ts = append(ts, signals.TransmitterConfig{Issuer: t.Issuer, Audience: t.Audience, JWKSFile: t.JWKSFile,
			JWKSURL: t.JWKSURL, PushAuthorization: t.PushAuthorization})
	}
	rcv, err := signals.NewReceiver(signals.ReceiverConfig{
		Transmitters: ts,
		Sink:         ssfSink{c},
		Dedup:        signals.NewStoreDedup(c.store, nil),
		Logger:       c.log.Named("ssf"),
	})
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /ssf/events", rcv)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}, nil
}

// pruneSETs drops de-duplication records of SETs too old to be accepted again, hourly.
func (c *Controller) pruneSETs() {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			if n, err := c.store.PruneSETs(now); err != nil {
				c.log.Warn("pruning SET records failed", zap.Error(err))
			} else if n > 0 {
				c.log.Info("pruned SET records", zap.Int("count", n))
			}
		}
	}
}
