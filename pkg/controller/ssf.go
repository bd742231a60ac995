package controller

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/certfile"
	"github.com/agentauth/agentauth/internal/netlimit"
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
			if why := s.c.resolveUser(ch.Revocation); why != "" {
				s.c.log.Warn("security event revokes a user the token service names nowhere; the revocation refuses nothing",
					zap.String("id", ch.Revocation.GetId()), zap.String("subject", ch.Revocation.GetSubject().Key()),
					zap.String("event", ch.Revocation.GetCause().GetEventType()), zap.String("set_jti", ch.Revocation.GetCause().GetSetJti()),
					zap.String("why", why))
			}
			if err := s.c.state.UpsertRevocation(ch.Revocation); err != nil {
				return fmt.Errorf("revocation %s: %w", ch.Revocation.GetId(), err)
			}
		case ch.Risk != nil:
			stored, err := s.c.store.Risk().Get(ch.Risk.GetSubject().Key())
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if merged := signals.MergeRisk(stored, ch.Risk); merged != nil {
				if err := s.c.state.SetRisk(merged); err != nil {
					return fmt.Errorf("risk state: %w", err)
				}
			}
		}
	}
	return nil
}

// ssfClients is the receiver's outbound side: pollers and stream management, started by Run.
type ssfClients struct {
	rcv *signals.Receiver
	// pollers are the ones with a configured URL, built (and their URLs checked) at start.
	pollers map[string]*signals.Poller
	// verified is 1 per transmitter whose stream passed verification since start: the readiness detail of SSF.
	verified *prometheus.GaugeVec
	// certReloads counts reloads of ssf.tls (set with it).
	certReloads *prometheus.CounterVec
	// streamsFile remembers the stream created at each transmitter (issuer → stream_id), so a restart reuses it.
	streamsFile string
	streamsMu   sync.Mutex
}

// startSSF builds the receiver, its pollers and its HTTP server; Run serves it and starts the clients.
func (c *Controller) startSSF() (*http.Server, error) {
	cfg := c.cfg.SSF
	ts := make([]signals.TransmitterConfig, 0, len(cfg.Transmitters))
	for _, t := range cfg.Transmitters {
		ts = append(ts, signals.TransmitterConfig{Issuer: t.Issuer, Audience: t.Audience, JWKSFile: t.JWKSFile,
			JWKSURL: t.JWKSURL, PushAuthorization: t.pushAuthorization()})
	}
	rcv, err := signals.NewReceiver(signals.ReceiverConfig{
		Transmitters: ts,
		Sink:         ssfSink{c},
		Dedup:        signals.NewStoreDedup(c.store, nil),
		Logger:       c.log.Named("ssf"),
		Observe:      c.metrics.observeSET,
	})
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	sc := &ssfClients{rcv: rcv, pollers: map[string]*signals.Poller{},
		streamsFile: filepath.Join(c.cfg.DataDir, "ssf-streams.json"),
		verified: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agentauth_ssf_stream_verified",
			Help: "1 once the transmitter's SSF stream delivered the verification event asked for since start."},
			[]string{"issuer"})}
	for i, t := range cfg.Transmitters {
		if t.Stream != nil {
			sc.verified.WithLabelValues(t.Issuer).Set(0)
		}
		if t.Poll == nil || t.Poll.URL == "" {
			continue
		}
		if sc.pollers[t.Issuer], err = newPoller(rcv, t, t.Poll.URL); err != nil {
			return nil, fmt.Errorf("ssf.transmitters[%d].poll: %w", i, err)
		}
	}
	if err := c.reg.Register(sc.verified); err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	c.ssfClients = sc
	mux := http.NewServeMux()
	mux.Handle("POST /ssf/events", rcv)
	srv := cfg.Limits.Server(netlimit.NewRateLimiter(cfg.RateLimit).Handler(mux))
	if cfg.TLS != nil {
		if c.ssfCert, err = certfile.New(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return nil, fmt.Errorf("ssf.tls: %w", err)
		}
		sc.certReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentauth_ssf_tls_reloads_total",
			Help: "Reloads of the SSF receiver's certificate files after they changed: result ok, or error (the " +
				"certificate in use is kept)."}, []string{"result"})
		if err := c.reg.Register(sc.certReloads); err != nil {
			return nil, fmt.Errorf("ssf: %w", err)
		}
		srv.TLSConfig = &tls.Config{GetCertificate: c.ssfCert.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	return srv, nil
}

// ssfScheme is the SSF receiver's URL scheme.
func (c *Controller) ssfScheme() string {
	if c.ssfCert != nil {
		return "https"
	}
	return "http"
}

// watchSSFCert reloads the SSF receiver's certificate when its files change, until ctx ends.
func (c *Controller) watchSSFCert(ctx context.Context) {
	log := c.log.Named("ssf")
	c.ssfCert.Watch(ctx, c.cfg.SSF.TLS.ReloadInterval, func(err error) {
		if err != nil {
			c.ssfClients.certReloads.WithLabelValues("error").Inc()
			log.Error("reloading the SSF receiver's certificate failed; still serving the previous one",
				zap.String("cert", c.cfg.SSF.TLS.Cert), zap.Error(err))
			return
		}
		c.ssfClients.certReloads.WithLabelValues("ok").Inc()
		log.Info("SSF receiver's certificate reloaded", zap.String("cert", c.cfg.SSF.TLS.Cert),
			zap.Time("not_after", c.ssfCert.Leaf().NotAfter))
	})
}

// longPollTimeout bounds one long poll; transmitters hold a request for seconds to a few minutes.
const longPollTimeout = 5 * time.Minute

func newPoller(rcv *signals.Receiver, t TransmitterConfig, endpoint string) (*signals.Poller, error) {
	pc := signals.PollConfig{Issuer: t.Issuer, EndpointURL: endpoint}
	if t.Stream != nil {
		pc.Authorization = t.Stream.authorization()
	}
	if p := t.Poll; p != nil {
		if a := p.authorization(); a != "" {
			pc.Authorization = a
		}
		pc.MaxEvents, pc.Interval, pc.ReturnImmediately = p.MaxEvents, p.Interval, p.Interval > 0
	}
	if !pc.ReturnImmediately {
		pc.HTTPClient = &http.Client{Timeout: longPollTimeout}
	}
	return rcv.NewPoller(pc)
}

// runSSFClients starts the reloading of ssf.tls, the configured pollers and, per transmitter with a stream, its
// management in the background: a transmitter that is down delays nothing, it is retried with backoff. stop cancels them and waits
// until SETs in flight are applied and the pollers have flushed their acknowledgements.
func (c *Controller) runSSFClients(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if c.ssfCert != nil {
		wg.Go(func() { c.watchSSFCert(ctx) })
	}
	for _, t := range c.cfg.SSF.Transmitters {
		log := c.log.Named("ssf").With(zap.String("transmitter", t.Issuer))
		if p := c.ssfClients.pollers[t.Issuer]; p != nil {
			wg.Go(func() { runPoller(ctx, p, log, t.Poll.URL) })
		}
		if t.Stream != nil {
			wg.Go(func() { c.manageStream(ctx, t, log, &wg) })
		}
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func runPoller(ctx context.Context, p *signals.Poller, log *zap.Logger, endpoint string) {
	log.Info("SSF poll delivery started", zap.String("endpoint", endpoint))
	if err := p.Run(ctx); err != nil {
		log.Warn("flushing SET acknowledgements failed; the transmitter will deliver those SETs again", zap.Error(err))
	}
}

// manageStream discovers the transmitter, makes sure our stream exists and is enabled, starts polling it for
// poll delivery, then asks for a verification event and waits for it. Every step is retried until it succeeds
// or ctx ends.
func (c *Controller) manageStream(ctx context.Context, t TransmitterConfig, log *zap.Logger, wg *sync.WaitGroup) {
	var client *signals.StreamClient
	var stream *signals.StreamConfig
	var poller *signals.Poller
	ok := retry(ctx, log, "SSF stream setup", func(ctx context.Context) error {
		var err error
		if client, err = signals.Discover(ctx, signals.StreamClientConfig{Issuer: t.Issuer, Authorization: t.Stream.authorization()}); err != nil {
			return err
		}
		md := client.Metadata()
		log.Info("SSF transmitter metadata read", zap.Strings("delivery_methods", md.DeliveryMethodsSupported),
			zap.String("configuration_endpoint", md.ConfigurationEndpoint), zap.String("spec_version", md.SpecVersion))
		if stream, err = c.ensureStream(ctx, client, t, log); err != nil {
			return err
		}
		if t.Stream.Delivery != "poll" {
			return nil
		}
		if stream.Delivery == nil || stream.Delivery.EndpointURL == "" {
			return fmt.Errorf("stream %q has no poll endpoint_url", stream.StreamID)
		}
		poller, err = newPoller(c.ssfClients.rcv, t, stream.Delivery.EndpointURL)
		return err
	})
	if !ok {
		return
	}
	if poller != nil {
		wg.Go(func() { runPoller(ctx, poller, log, stream.Delivery.EndpointURL) })
	}
	if client.Metadata().VerificationEndpoint == "" {
		log.Info("SSF transmitter offers no verification endpoint; stream not verified", zap.String("stream", stream.StreamID))
		return
	}
	ok = retry(ctx, log, "SSF stream verification", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		log.Info("SSF verification requested", zap.String("stream", stream.StreamID))
		return c.ssfClients.rcv.Verify(ctx, client, stream.StreamID)
	})
	if ok {
		c.ssfClients.verified.WithLabelValues(t.Issuer).Set(1)
		log.Info("SSF stream verified: the transmitter's events reach this controller", zap.String("stream", stream.StreamID),
			zap.String("delivery", t.Stream.Delivery))
	}
}

// ensureStream returns our stream at the transmitter: the one remembered from before when it still exists and
// matches the configuration, else a new one (replacing the remembered one). A stream that is not enabled is
// asked to be.
func (c *Controller) ensureStream(ctx context.Context, client *signals.StreamClient, t TransmitterConfig, log *zap.Logger) (*signals.StreamConfig, error) {
	want := streamRequest(t, c.td.Name())
	id, err := c.ssfClients.rememberedStream(t.Issuer)
	if err != nil {
		log.Warn("remembered SSF streams unreadable; creating a new stream", zap.Error(err))
	}
	var stream *signals.StreamConfig
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
		if err := c.ssfClients.rememberStream(t.Issuer, stream.StreamID); err != nil {
			// Not fatal: the next start creates another stream.
			log.Error("remembering the SSF stream failed", zap.Error(err))
		}
		log.Info("SSF stream created", zap.String("stream", stream.StreamID), zap.Strings("events_delivered", stream.EventsDelivered))
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
		if _, err := client.SetStatus(ctx, signals.StreamStatus{StreamID: stream.StreamID, Status: "enabled"}); err != nil {
			log.Warn("enabling the SSF stream failed", zap.String("stream", stream.StreamID), zap.Error(err))
		}
	}
	return stream, nil
}

func streamRequest(t TransmitterConfig, trustDomain string) signals.StreamRequest {
	req := signals.StreamRequest{Description: "agentauth controller, trust domain " + trustDomain}
	for _, e := range t.Stream.EventsRequested {
		uri, _ := signals.EventURI(e) // validated with the config
		req.EventsRequested = append(req.EventsRequested, uri)
	}
	if len(req.EventsRequested) == 0 {
		for _, uri := range signals.KnownEventTypes() {
			if uri != signals.EventVerification && uri != signals.EventStreamUpdated {
				req.EventsRequested = append(req.EventsRequested, uri)
			}
		}
	}
	if t.Stream.Delivery == "push" {
		req.Delivery = &signals.Delivery{Method: signals.DeliveryPush, EndpointURL: t.Stream.PushEndpoint,
			AuthorizationHeader: t.pushAuthorization()}
	}
	return req
}

// streamMatches reports whether an existing stream delivers as requested. Events are compared only when the
// transmitter echoes events_requested.
func streamMatches(s *signals.StreamConfig, want signals.StreamRequest) bool {
	method := signals.DeliveryPoll
	if want.Delivery != nil {
		method = want.Delivery.Method
	}
	if s.Delivery == nil || s.Delivery.Method != method {
		return false
	}
	if method == signals.DeliveryPush && s.Delivery.EndpointURL != want.Delivery.EndpointURL {
		return false
	}
	if len(s.EventsRequested) > 0 {
		got, wanted := slices.Sorted(slices.Values(s.EventsRequested)), slices.Sorted(slices.Values(want.EventsRequested))
		return slices.Equal(got, wanted)
	}
	return true
}

// notFound recognises the transmitter's 404 for an unknown stream (SSF §8.1.1.2), which pkg/signals reports
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

func (sc *ssfClients) rememberedStream(issuer string) (string, error) {
	sc.streamsMu.Lock()
	defer sc.streamsMu.Unlock()
	m, err := sc.readStreams()
	return m[issuer], err
}

func (sc *ssfClients) rememberStream(issuer, id string) error {
	sc.streamsMu.Lock()
	defer sc.streamsMu.Unlock()
	m, _ := sc.readStreams() // an unreadable file is replaced
	if m == nil {
		m = map[string]string{}
	}
	m[issuer] = id
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := sc.streamsFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, sc.streamsFile)
}

func (sc *ssfClients) readStreams() (map[string]string, error) {
	data, err := os.ReadFile(sc.streamsFile)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", sc.streamsFile, err)
	}
	return m, nil
}
