package controller

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/certfile"
	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/internal/netlimit"
	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/store"
)

// ssfSink applies what Security Event Tokens change: revocations and risk states are written to the store (durable
// before the receiver answers 202) and published to every sidecar over xDS.
type ssfSink struct{ c *Controller }

func (s ssfSink) Apply(ctx context.Context, changes []signals.Change) error {
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
			rec := &audit.Record{Action: ActionSETRevoke, RevocationID: ch.Revocation.GetId(), Reason: ch.Revocation.GetReason(),
				Cause: ch.Revocation.GetCause().GetEventType(), SETJti: ch.Revocation.GetCause().GetSetJti(),
				Actor: ch.Revocation.GetCause().GetIssuer()}
			subjectFields(rec, ch.Revocation.GetSubject())
			s.c.actions.record(ctx, rec)
		case ch.Risk != nil:
			stored, err := s.c.store.Risk().Get(ch.Risk.GetSubject().Key())
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if merged := signals.MergeRisk(stored, ch.Risk); merged != nil {
				if err := s.c.state.SetRisk(merged); err != nil {
					return fmt.Errorf("risk state: %w", err)
				}
				rec := &audit.Record{Action: ActionSETRisk, Risk: merged.GetRiskLevel(), Cause: ch.Risk.GetCause().GetEventType(),
					SETJti: ch.Risk.GetCause().GetSetJti(), Actor: ch.Risk.GetCause().GetIssuer()}
				subjectFields(rec, merged.GetSubject())
				s.c.actions.record(ctx, rec)
			}
		}
	}
	return nil
}

// ssfServer is the SSF receiver: push delivery over HTTP(S) on ssf.listen and, in the background, its clients:
// the configured pollers, the management of a stream per transmitter with stream (signals.ManageStream, stream
// ids kept in the store) and the reloading of ssf.tls.
type ssfServer struct {
	c   *Controller
	ln  net.Listener
	srv *http.Server
	rcv *signals.Receiver
	// pollers are the ones with a configured URL, built (and their URLs checked) at provision.
	pollers map[string]*signals.Poller
	// verified is 1 per transmitter whose stream passed verification since start: the readiness detail of SSF.
	verified *prometheus.GaugeVec
	// cert is the receiver's certificate and certReloads counts its reloads (set with ssf.tls).
	cert        *certfile.Reloader
	certReloads *prometheus.CounterVec
	// stopCert stops the reloading of ssf.tls (set by start).
	stopCert func()
	// objects follows the SSFTransmitter objects (ssf.transmitterObjects; nil without).
	objects *ssfObjects
}

// legacyStreamsFile is where controllers before the store kept stream ids (issuer → stream_id, JSON), in dataDir.
const legacyStreamsFile = "ssf-streams.json"

func (s *ssfServer) provision(context.Context) (err error) {
	c, cfg := s.c, s.c.cfg.SSF
	if s.ln, err = c.listen("ssf.listen", cfg.Listen, cfg.Limits); err != nil {
		return err
	}
	if err := importStreamsFile(c.store, filepath.Join(c.cfg.DataDir, legacyStreamsFile), c.log.Named("ssf")); err != nil {
		return fmt.Errorf("ssf: %w", err)
	}
	ts := make([]signals.TransmitterConfig, 0, len(cfg.Transmitters))
	for _, t := range cfg.Transmitters {
		ts = append(ts, t.receiverConfig())
	}
	if s.rcv, err = signals.NewReceiver(signals.ReceiverConfig{
		Transmitters: ts,
		Sink:         ssfSink{c},
		Dedup:        signals.NewStoreDedup(c.store, nil),
		Logger:       c.log.Named("ssf"),
		Observe:      c.metrics.observeSET,
	}); err != nil {
		return fmt.Errorf("ssf: %w", err)
	}
	if err := s.provisionClients(); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /ssf/events", s.rcv)
	s.srv = cfg.Limits.Server(netlimit.NewRateLimiter(cfg.RateLimit).Handler(mux))
	if cfg.TLS != nil {
		return s.provisionTLS()
	}
	return nil
}

// provisionClients builds the configured pollers and the stream-verified gauge.
func (s *ssfServer) provisionClients() (err error) {
	s.pollers = map[string]*signals.Poller{}
	s.verified = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agentauth_ssf_stream_verified",
		Help: "1 once the transmitter's SSF stream delivered the verification event asked for since start."},
		[]string{"issuer"})
	for i, t := range s.c.cfg.SSF.Transmitters {
		if t.Stream != nil {
			s.verified.WithLabelValues(t.Issuer).Set(0)
		}
		if t.Poll == nil || t.Poll.URL == "" {
			continue
		}
		if s.pollers[t.Issuer], err = s.rcv.NewPoller(pollConfig(t, t.Poll.URL)); err != nil {
			return fmt.Errorf("ssf.transmitters[%d].poll: %w", i, err)
		}
	}
	if err := s.c.reg.Register(s.verified); err != nil {
		return fmt.Errorf("ssf: %w", err)
	}
	return nil
}

// provisionTLS loads ssf.tls and serves the receiver over HTTPS with it.
func (s *ssfServer) provisionTLS() (err error) {
	cfg := s.c.cfg.SSF
	if s.cert, err = certfile.New(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
		return fmt.Errorf("ssf.tls: %w", err)
	}
	s.certReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentauth_ssf_tls_reloads_total",
		Help: "Reloads of the SSF receiver's certificate files after they changed: result ok, or error (the " +
			"certificate in use is kept)."}, []string{"result"})
	if err := s.c.reg.Register(s.certReloads); err != nil {
		return fmt.Errorf("ssf: %w", err)
	}
	s.srv.TLSConfig = &tls.Config{GetCertificate: s.cert.GetCertificate, MinVersion: tls.VersionTLS12}
	return nil
}

func (s *ssfServer) start(ctx context.Context, fail func(error)) error {
	go func() { fail(serveHTTP(s.srv, s.ln)) }()
	s.stopCert = func() {}
	if s.cert != nil {
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { s.watchCert(ctx) })
		s.stopCert = func() { cancel(); wg.Wait() }
	}
	s.c.log.Info("SSF receiver serving", zap.String("push", s.scheme()+"://"+s.ln.Addr().String()+"/ssf/events"))
	return nil
}

// stop stops the receiver: SETs in flight are applied.
func (s *ssfServer) stop(ctx context.Context) {
	_ = s.srv.Shutdown(ctx)
	s.stopCert()
}

// ssfClients are the SSF receiver's clients of the transmitters: the configured pollers and, per transmitter with
// stream, its management. They are singleton work (leaderOnly): two replicas polling one stream would split its
// events between them and acknowledge each other's, and two managing it would each create one. They come after
// ssfServer, which provisions them, so they stop before it.
type ssfClients struct {
	s    *ssfServer
	halt func() // set by start
}

func (sc *ssfClients) provision(context.Context) error { return nil }

func (sc *ssfClients) start(ctx context.Context, _ func(error)) error {
	sc.halt = sc.s.runClients(ctx)
	return nil
}

// stop cancels the clients and waits until SETs in flight are applied and acknowledgements flushed.
func (sc *ssfClients) stop(context.Context) { sc.halt() }

// scheme is the SSF receiver's URL scheme.
func (s *ssfServer) scheme() string {
	if s.cert != nil {
		return "https"
	}
	return "http"
}

// watchCert reloads the SSF receiver's certificate when its files change, until ctx ends.
func (s *ssfServer) watchCert(ctx context.Context) {
	log, tlsCfg := s.c.log.Named("ssf"), s.c.cfg.SSF.TLS
	s.cert.Watch(ctx, tlsCfg.ReloadInterval, func(err error) {
		if err != nil {
			s.certReloads.WithLabelValues("error").Inc()
			log.Error("reloading the SSF receiver's certificate failed; still serving the previous one",
				zap.String("cert", tlsCfg.Cert), zap.Error(err))
			return
		}
		s.certReloads.WithLabelValues("ok").Inc()
		log.Info("SSF receiver's certificate reloaded", zap.String("cert", tlsCfg.Cert),
			zap.Time("not_after", s.cert.Leaf().NotAfter))
	})
}

// longPollTimeout bounds one long poll; transmitters hold a request for seconds to a few minutes.
const longPollTimeout = 5 * time.Minute

// pollConfig is how the receiver polls t at endpoint.
func pollConfig(t TransmitterConfig, endpoint string) signals.PollConfig {
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
	return pc
}

// runClients starts the configured pollers and, per transmitter with a stream, its management in the background,
// and those of the SSFTransmitter objects (as they come and go).
// stop cancels them and waits until SETs in flight are applied and the pollers have flushed their
// acknowledgements.
func (s *ssfServer) runClients(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, t := range s.c.cfg.SSF.Transmitters {
		wg.Go(func() { s.runTransmitter(ctx, t, s.pollers[t.Issuer]) })
	}
	if s.objects != nil {
		s.objects.clients.start(ctx)
	}
	return func() {
		if s.objects != nil {
			s.objects.clients.stop()
		}
		cancel()
		wg.Wait()
	}
}

// runTransmitter runs the clients of transmitter t, its poller p (nil for none) and the management of its stream,
// until ctx ends and SETs in flight are applied.
func (s *ssfServer) runTransmitter(ctx context.Context, t TransmitterConfig, p *signals.Poller) {
	log := s.c.log.Named("ssf").With(zap.String("transmitter", t.Issuer))
	var wg sync.WaitGroup
	if p != nil {
		wg.Go(func() { signals.RunPoller(ctx, p, log, t.Poll.URL) })
	}
	if t.Stream != nil {
		wg.Go(func() {
			s.rcv.ManageStream(ctx, signals.ManagedStream{Issuer: t.Issuer, Authorization: t.Stream.authorization(),
				Request: streamRequest(t, s.c.td.Name()), Poll: pollConfig(t, ""), IDs: s.c.store,
				Verified: func() { s.verified.WithLabelValues(t.Issuer).Set(1) }, Logger: log,
				Created: func(ctx context.Context, id string, events []string) {
					s.c.actions.record(ctx, &audit.Record{Action: ActionSSFStream, Actor: t.Issuer,
						Reason: fmt.Sprintf("stream %s created, events %v", id, events)})
				}})
		})
	}
	wg.Wait()
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

// importStreamsFile moves the stream ids a controller of an earlier version kept in path (dataDir/ssf-streams.json)
// into the store, once: ids the store already holds are newer and kept, and the file is removed. A file that
// does not parse is removed too, as the earlier versions replaced it: its transmitters get new streams.
func importStreamsFile(st store.Backend, path string, log *zap.Logger) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		log.Warn("remembered SSF streams unreadable; their transmitters get new streams", zap.String("file", path), zap.Error(err))
	}
	for issuer, id := range m {
		if issuer == "" || id == "" {
			continue
		}
		have, err := st.SSFStreamID(issuer)
		if err == nil && have == "" {
			err = st.SetSSFStreamID(issuer, id)
		}
		if err != nil {
			return fmt.Errorf("importing %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("importing %s: %w", path, err)
	}
	log.Info("SSF stream ids moved into the state store", zap.String("file", path), zap.Int("in_file", len(m)))
	return nil
}

func (s *ssfServer) validate(p *confyaml.Problems) { s.c.cfg.SSF.validate(p) }

var (
	_ component = (*ssfServer)(nil)
	_ validator = (*ssfServer)(nil)
)
