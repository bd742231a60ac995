package signals

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// StreamIDs remembers the stream a receiver created at each transmitter, so that a restarted receiver finds it
// again instead of creating another. The controller's store (store.Store) is one.
type StreamIDs interface {
	// SSFStreamID returns the id remembered for the transmitter issuer, or "" when none is.
	SSFStreamID(issuer string) (string, error)
	// SetSSFStreamID remembers id for the transmitter issuer.
	SetSSFStreamID(issuer, id string) error
}

// ManagedStream is this receiver's stream at one transmitter, as ManageStream keeps it (SSF §8).
type ManagedStream struct {
	// Issuer is the transmitter's iss, a configured transmitter of the receiver; its metadata is read from the
	// issuer's /.well-known/ssf-configuration (SSF §7.2).
	Issuer string
	// Authorization is sent as the Authorization header of management calls.
	Authorization string
	// Request is the stream wanted: its delivery (nil for poll) and the events requested. An existing stream
	// that delivers otherwise is replaced.
	Request StreamRequest
	// Poll configures the polling of a poll-delivery stream; Issuer and EndpointURL are taken from the stream.
	Poll PollConfig
	// IDs remembers the stream's id across restarts (required).
	IDs StreamIDs
	// Verified, if set, is called once the stream delivered the verification event asked for.
	Verified func()
	// Created, if set, is called after a new stream was created at the transmitter (the controller audits it).
	Created func(ctx context.Context, streamID string, events []string)
	// Logger defaults to the receiver's, with the transmitter named.
	Logger *zap.Logger
}

// ManageStream discovers the transmitter, makes sure the stream exists and is enabled, polls it for poll
// delivery, then asks for a verification event and waits for it. Every step is retried with backoff until it
// succeeds or ctx ends: a transmitter that is down delays nothing else. ManageStream returns when ctx ends, or
// once the stream is verified (or cannot be) when there is nothing to poll; when it returns, the SETs it polled
// are applied and their acknowledgements flushed.
func (r *Receiver) ManageStream(ctx context.Context, m ManagedStream) {
	log := m.Logger
	if log == nil {
		log = r.log.With(zap.String("transmitter", m.Issuer))
	}
	var client *StreamClient
	var stream *StreamConfig
	var poller *Poller
	ok := retry(ctx, log, "SSF stream setup", func(ctx context.Context) error {
		var err error
		if client, err = Discover(ctx, StreamClientConfig{Issuer: m.Issuer, Authorization: m.Authorization}); err != nil {
			return err
		}
		md := client.Metadata()
		log.Info("SSF transmitter metadata read", zap.Strings("delivery_methods", md.DeliveryMethodsSupported),
			zap.String("configuration_endpoint", md.ConfigurationEndpoint), zap.String("spec_version", md.SpecVersion))
		if stream, err = ensureStream(ctx, client, m, log); err != nil {
			return err
		}
		if m.Request.Delivery != nil {
			return nil
		}
		if stream.Delivery == nil || stream.Delivery.EndpointURL == "" {
			return fmt.Errorf("stream %q has no poll endpoint_url", stream.StreamID)
		}
		pc := m.Poll
		pc.Issuer, pc.EndpointURL = m.Issuer, stream.Delivery.EndpointURL
		poller, err = r.NewPoller(pc)
		return err
	})
	if !ok {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if poller != nil {
		wg.Go(func() { RunPoller(ctx, poller, log, stream.Delivery.EndpointURL) })
	}
	if client.Metadata().VerificationEndpoint == "" {
		log.Info("SSF transmitter offers no verification endpoint; stream not verified", zap.String("stream", stream.StreamID))
		return
	}
	ok = retry(ctx, log, "SSF stream verification", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		log.Info("SSF verification requested", zap.String("stream", stream.StreamID))
		return r.Verify(ctx, client, stream.StreamID)
	})
	if ok {
		if m.Verified != nil {
			m.Verified()
		}
		delivery := "poll"
		if m.Request.Delivery != nil {
			delivery = "push"
		}
		log.Info("SSF stream verified: the transmitter's events reach this controller", zap.String("stream", stream.StreamID),
			zap.String("delivery", delivery))
	}
}

// RunPoller runs p until ctx ends, logging its start and a failure to flush acknowledgements at the end.
func RunPoller(ctx context.Context, p *Poller, log *zap.Logger, endpoint string) {
	log.Info("SSF poll delivery started", zap.String("endpoint", endpoint))
	if err := p.Run(ctx); err != nil {
		log.Warn("flushing SET acknowledgements failed; the transmitter will deliver those SETs again", zap.Error(err))
	}
}

// ensureStream returns our stream at the transmitter: the one remembered from before when it still exists and
// matches the request, else a new one (replacing the remembered one). A stream that is not enabled is asked to
// be.
func ensureStream(ctx context.Context, client *StreamClient, m ManagedStream, log *zap.Logger) (*StreamConfig, error) {
	want := m.Request
	id, err := m.IDs.SSFStreamID(m.Issuer)
	if err != nil {
		log.Warn("remembered SSF streams unreadable; creating a new stream", zap.Error(err))
	}
	var stream *StreamConfig
	if id != "" {
		switch s, err := client.Stream(ctx, id); {
		case err == nil && streamMatches(s, want):
			stream = s
			log.Info("SSF stream found", zap.String("stream", id))
		case err == nil:
			log.Info("SSF stream differs from the configuration; replacing it", zap.String("stream", id))
			if err := client.DeleteStream(ctx, id); err != nil && !notFound(err) {
				return nil, err
			}
		case notFound(err):
			log.Info("SSF stream no longer exists at the transmitter; creating a new one", zap.String("stream", id))
		default:
			return nil, err
		}
	}
	if stream == nil {
		if stream, err = client.CreateStream(ctx, want); err != nil {
			return nil, err
		}
		if err := m.IDs.SetSSFStreamID(m.Issuer, stream.StreamID); err != nil {
			// Not fatal: the next start creates another stream.
			log.Error("remembering the SSF stream failed", zap.Error(err))
		}
		log.Info("SSF stream created", zap.String("stream", stream.StreamID), zap.Strings("events_delivered", stream.EventsDelivered))
		if m.Created != nil {
			m.Created(ctx, stream.StreamID, stream.EventsDelivered)
		}
	}
	st, err := client.Status(ctx, stream.StreamID)
	switch {
	case err != nil:
		log.Warn("reading the SSF stream status failed", zap.String("stream", stream.StreamID), zap.Error(err))
	case st.Status == "enabled":
		log.Info("SSF stream status", zap.String("stream", stream.StreamID), zap.String("status", st.Status))
	default:
		log.Warn("SSF stream is not enabled; enabling it", zap.String("stream", stream.StreamID),
			zap.String("status", st.Status), zap.String("reason", st.Reason))
		if _, err := client.SetStatus(ctx, StreamStatus{StreamID: stream.StreamID, Status: "enabled"}); err != nil {
			log.Warn("enabling the SSF stream failed", zap.String("stream", stream.StreamID), zap.Error(err))
		}
	}
	return stream, nil
}

// streamMatches reports whether an existing stream delivers as requested. Events are compared only when the
// transmitter echoes events_requested.
func streamMatches(s *StreamConfig, want StreamRequest) bool {
	method := DeliveryPoll
	if want.Delivery != nil {
		method = want.Delivery.Method
	}
	if s.Delivery == nil || s.Delivery.Method != method {
		return false
	}
	if method == DeliveryPush && s.Delivery.EndpointURL != want.Delivery.EndpointURL {
		return false
	}
	if len(s.EventsRequested) > 0 {
		got, wanted := slices.Sorted(slices.Values(s.EventsRequested)), slices.Sorted(slices.Values(want.EventsRequested))
		return slices.Equal(got, wanted)
	}
	return true
}

// notFound recognises the transmitter's 404 for an unknown stream (SSF §8.1.1.2), which StreamClient reports
// only in the error text.
func notFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), ": HTTP 404 ")
}

// retry runs f until it succeeds (true) or ctx ends (false), waiting between failures with exponential backoff
// from 1s to 5m with jitter.
func retry(ctx context.Context, log *zap.Logger, what string, f func(context.Context) error) bool {
	var backoff time.Duration
	for {
		err := f(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		backoff = min(max(2*backoff, time.Second), 5*time.Minute)
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Warn(what+" failed; retrying", zap.Error(err), zap.Duration("retry_in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
