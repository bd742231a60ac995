package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/tracing"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/proxy/steps"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// Sidecar is one running sidecar: its credential source, its listeners and its admin endpoint.
type Sidecar struct {
	cfg     *Config
	rt      *Runtime
	log     *zap.Logger
	metrics *Metrics
	admin   *Admin
	src     identity.Source
	server  *proxy.Server
	adminLn net.Listener
	// adminErr receives the admin server's end (it serves from New on).
	adminErr chan error
	closers  []func()
	// Sink receives every decision; the audit log plugs in here.
	sink proxy.DecisionSink
	// cp is the controller connection, when configured.
	cp *controlPlane
	// logLevel, when set, is served at the admin listener's /logging.
	logLevel *zap.AtomicLevel
	// engine is the ingress policy engine, when there is one (/config_dump lists its policies).
	engine *policy.Engine
	// audit is the tamper-evident log, when configured.
	audit *auditLog
	// spans exports a span per decision (tracing:); nil without.
	spans *tracing.Sink
	// egressH and localPolicy are what Reload swaps into (nil when not configured).
	egressH     *proxy.EgressHandler
	localPolicy *policy.Engine
	// reloadMu serialises Reload; running is the config as last applied.
	reloadMu sync.Mutex
	running  *Config
	// live holds the per-request limits the handlers read, swapped by Reload.
	live *proxy.LiveLimits
}

// Option adjusts a Sidecar at construction.
type Option func(*Sidecar)

// WithDecisionSink sends every decision record to sink as well as to the log.
func WithDecisionSink(sink proxy.DecisionSink) Option { return func(s *Sidecar) { s.sink = sink } }

// WithLogLevel serves lvl, the level of the logger given to New, at the admin listener's /logging.
func WithLogLevel(lvl zap.AtomicLevel) Option { return func(s *Sidecar) { s.logLevel = &lvl } }

// New loads credentials and binds every listener of cfg (so a port conflict fails here, not later). cfg is
// resolved first (Config.Resolve), so an invalid one is an error here. Nothing is served until Run.
func New(ctx context.Context, cfg *Config, log *zap.Logger, opts ...Option) (_ *Sidecar, err error) {
	rt, err := cfg.Resolve()
	if err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, rt: rt, log: log, metrics: NewMetrics(), running: cfg}
	for _, o := range opts {
		o(s)
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if err := s.startAdmin(); err != nil {
		return nil, err
	}

	if s.src, err = s.openIdentity(ctx); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = s.src.Close() })
	if err := cfg.checkSource(s.src); err != nil {
		return nil, err
	}
	needWIT := cfg.hasWIT()
	s.admin.AddCheck("credentials", func(context.Context) (string, error) {
		return "", identity.Ready(s.src, needWIT)
	})
	svid, err := s.src.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("sidecar: no X.509-SVID: %w", err)
	}
	self := svid.ID
	// Opened before the control plane, so it is closed after it: remediations are recorded until the end.
	if cfg.Audit != nil {
		if s.audit, err = s.openAudit(cfg.Audit, svid); err != nil {
			return nil, err
		}
	}
	if cfg.Controller != nil {
		if s.cp, err = s.startControlPlane(self); err != nil {
			return nil, err
		}
	}
	if s.audit != nil && cfg.Controller != nil {
		if err := s.startWitnessing(self); err != nil {
			return nil, err
		}
	}

	if tr := cfg.Tracing; tr != nil {
		if s.spans, err = s.openTracing(ctx, tr, self); err != nil {
			return nil, err
		}
	}
	popts := s.proxyOptions(self)
	var listeners []proxy.Listener
	if cfg.Egress != nil {
		ls, err := s.egress(popts, self)
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, ls...)
	}
	if cfg.Ingress != nil {
		l, err := s.ingress(popts, self)
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
	}
	if s.server, err = proxy.NewServer(popts.Limits, popts.Logger, listeners...); err != nil {
		return nil, err
	}
	s.admin.SetStarting(false)
	return s, nil
}

// startAdmin serves the admin endpoint from here on, so /readyz can say what a start is waiting for (the
// controller).
func (s *Sidecar) startAdmin() error {
	var adminOpts []AdminOption
	if s.cfg.Admin.Pprof {
		adminOpts = append(adminOpts, WithPprof())
	}
	if s.logLevel != nil {
		adminOpts = append(adminOpts, WithLogging(*s.logLevel, s.log))
	}
	adminOpts = append(adminOpts, func(mux *http.ServeMux) { mux.HandleFunc("GET /config_dump", s.serveConfigDump) })
	s.admin = NewAdmin(s.metrics.Registry, adminOpts...)
	s.admin.SetLimits(s.cfg.Admin.Limits)
	s.admin.SetStarting(true)
	var err error
	if s.adminLn, err = listenAdmin(s.cfg.Admin.Listen); err != nil {
		return err
	}
	s.adminErr = make(chan error, 1)
	go func() { s.adminErr <- s.admin.Serve(s.adminLn) }()
	s.closers = append(s.closers, func() { _ = s.admin.Close() })
	return nil
}

// proxyOptions are what egress and ingress share: our identity, the limits (live, so Reload can change them),
// and where decisions go (the log, the WithDecisionSink sink, the audit log).
func (s *Sidecar) proxyOptions(self spiffeid.ID) proxy.Options {
	sinks := multiSink{newLogSink(s.log)}
	if s.sink != nil {
		sinks = append(sinks, s.sink)
	}
	if s.spans != nil {
		sinks = append(sinks, s.spans)
	}
	popts := proxy.Options{
		Self:    self.String(),
		Limits:  s.limits(),
		Live:    proxy.NewLiveLimits(s.limits()),
		Sink:    sinks,
		Metrics: s.metrics,
		Logger:  s.log.Named("proxy"),
	}
	s.live = popts.Live
	if s.audit != nil {
		popts.Auditor = s.audit
	}
	return popts
}

// openTracing starts the OTLP span exporter of cfg; the sidecar flushes it when it closes.
func (s *Sidecar) openTracing(ctx context.Context, cfg *TracingConfig, self spiffeid.ID) (*tracing.Sink, error) {
	spans, err := tracing.New(ctx, tracing.Options{Endpoint: cfg.Endpoint, Insecure: cfg.Insecure,
		SampleRatio: *cfg.SampleRatio, ServiceName: cfg.ServiceName, Workload: self.String()})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() {
		flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := spans.Close(flush); err != nil {
			s.log.Warn("flushing trace spans", zap.Error(err))
		}
	})
	return spans, nil
}

// routeNames are the names of routes, for metrics.
func routeNames(routes []*proxy.Route) []string {
	names := make([]string, 0, len(routes))
	for _, r := range routes {
		names = append(names, r.Name)
	}
	return names
}

// listenAdmin listens on admin.listen; an address in use is most often another sidecar's on the same host.
func listenAdmin(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("admin.listen: %s is in use, perhaps by another sidecar on this host: give each "+
			"sidecar its own admin.listen (defaults: %s egress, %s ingress): %w", addr, DefaultEgressAdmin,
			DefaultIngressAdmin, err)
	}
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	return ln, nil
}

// Run serves until ctx ends, then drains in-flight requests for up to ShutdownGrace.
func (s *Sidecar) Run(ctx context.Context) error {
	defer s.close()
	errc := make(chan error, 1)
	srvCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { errc <- s.server.Serve(srvCtx) }()
	s.log.Info("sidecar serving", zap.String("admin", s.adminLn.Addr().String()))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	case err = <-s.adminErr:
	}
	// Not ready first, then drain: a load balancer polling /readyz stops sending before the listeners close.
	s.admin.SetStopping()
	cancel()
	drain, stop := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer stop()
	s.log.Info("sidecar draining", zap.Duration("grace", s.cfg.ShutdownGrace))
	if serr := s.server.Shutdown(drain); serr != nil && err == nil {
		err = serr
	}
	_ = s.admin.Shutdown(drain)
	return err
}

func (s *Sidecar) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

func (s *Sidecar) limits() proxy.Limits { return proxyLimits(s.cfg.Limits, s.cfg.ShutdownGrace) }

func proxyLimits(c LimitsConfig, grace time.Duration) proxy.Limits {
	l := proxy.DefaultLimits()
	l.MaxHeaderBytes = c.MaxHeaderBytes
	l.MaxBufferedBody = c.MaxBodyBytes
	l.ReadHeaderTimeout = c.ReadHeaderTimeout
	l.IdleTimeout = c.IdleTimeout
	l.MaxConns = c.MaxConnections
	l.MaxConnsPerIP = c.MaxConnectionsPerIP
	l.ResponseHeaderTimeout = c.UpstreamTimeout
	l.MaxBufferedBodies = c.MaxBufferedBodies
	l.BodyReadTimeout = c.BodyReadTimeout
	l.BodyMinRate = c.BodyMinRate
	l.DrainTimeout = grace
	l.HTTP2HeaderTableSize = uint32(c.HTTP2HeaderTableSize)
	return l
}

func (s *Sidecar) openIdentity(ctx context.Context) (identity.Source, error) {
	id := s.cfg.Identity
	switch {
	case id.Files != nil:
		f := id.Files
		src, err := newFileSource(f, s.observer())
		if err != nil {
			return nil, err
		}
		watchCtx, cancel := context.WithCancel(context.Background())
		s.closers = append(s.closers, cancel)
		go func() { _ = src.Watch(watchCtx, f.ReloadInterval) }()
		return src, nil
	case id.WorkloadAPI != nil:
		w := id.WorkloadAPI
		cfg := identity.WorkloadAPIConfig{Addr: w.Socket, Observer: s.observer()}
		if w.WIT != "" {
			wits, err := identity.NewWITFileSource(w.WIT, w.WITKey, s.observer())
			if err != nil {
				return nil, fmt.Errorf("identity.workloadAPI.wit: %w", err)
			}
			cfg.WITProvider = wits
		}
		src, err := identity.NewWorkloadAPISource(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("identity.workloadAPI: %w", err)
		}
		return src, nil
	case id.Controller != nil:
		return s.openIssuer(ctx, id.Controller)
	}
	return nil, errors.New("identity: no source configured")
}

// observer counts and logs every credential load and every rejected one.
func (s *Sidecar) observer() identity.Observer {
	return identity.ObserverFuncs{
		OnRotated: func(st identity.Status) {
			s.metrics.Rotated(st)
			s.log.Info("credentials loaded", zap.Stringer("id", st.ID), zap.Time("x509_expiry", st.X509Expiry),
				zap.Time("wit_expiry", st.WITExpiry))
		},
		OnRotationFailed: func(err error) {
			s.metrics.RotationFailed(err)
			s.log.Error("credential load failed; keeping the previous credentials", zap.Error(err))
		},
	}
}

func (s *Sidecar) egress(popts proxy.Options, self spiffeid.ID) ([]proxy.Listener, error) {
	e := s.cfg.Egress
	table, err := proxy.NewRouteTable(s.rt.EgressRoutes...)
	if err != nil {
		return nil, fmt.Errorf("egress.routes: %w", err)
	}
	s.metrics.preRegister(string(proxy.Egress), routeNames(s.rt.EgressRoutes))
	popts.TLSConfig = s.upstreamTLS(self)
	chain := steps.EgressChain{Signers: map[wire.Mode]proxy.ProofSigner{
		wire.ModeWPT:     steps.NewWPTSigner(s.src),
		wire.ModeHTTPSig: steps.NewHTTPSigSigner(s.src),
	}}
	if e.TokenService != nil {
		if chain.Credentials, err = s.egressCredentials(self); err != nil {
			return nil, err
		}
	}
	resps, err := s.responseVerifier(self)
	if err != nil {
		return nil, err
	}
	h, err := proxy.NewEgressHandler(proxy.EgressConfig{
		Options:   popts,
		Routes:    table,
		Steps:     steps.Egress(chain),
		Responses: resps,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, h.Close)
	s.egressH = h
	return s.egressListeners(h)
}

// egressCredentials gets the routes' Txn-Tokens and access tokens from egress.tokenService.
func (s *Sidecar) egressCredentials(self spiffeid.ID) (*steps.Credentials, error) {
	x, err := s.newExchanger(self)
	if err != nil {
		return nil, fmt.Errorf("egress.tokenService: %w", err)
	}
	c := &steps.Credentials{Exchanger: x, Scopes: map[string]string{}, Access: map[string]*oauth.SecondaryCredential{},
		Audited: s.audit != nil, Self: self.String()}
	for i, r := range s.cfg.Egress.Routes {
		if r.TxnToken != nil {
			c.Scopes[r.Name] = r.TxnToken.Scope
		}
		if a := r.AccessToken; a != nil {
			sc, err := oauth.NewSecondaryCredential(x, oauth.SecondaryConfig{Audience: a.Audience, Resource: a.Resource, Scope: a.Scope})
			if err != nil {
				return nil, fmt.Errorf("egress.routes[%d].accessToken: %w", i, err)
			}
			c.Access[r.Name] = sc
		}
	}
	return c, nil
}

// egressListeners binds egress.proxyListen and egress.transparentListen, those that are set, to h.
func (s *Sidecar) egressListeners(h http.Handler) ([]proxy.Listener, error) {
	e := s.cfg.Egress
	var ls []proxy.Listener
	for _, l := range []struct {
		name, addr  string
		transparent bool
	}{{"proxyListen", e.ProxyListen, false}, {"transparentListen", e.TransparentListen, true}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return nil, fmt.Errorf("egress.%s: %w", l.name, err)
		}
		s.closers = append(s.closers, func() { _ = ln.Close() })
		ls = append(ls, proxy.Listener{Name: "egress-" + l.name, Listener: ln, Handler: h, Transparent: l.transparent})
	}
	return ls, nil
}

// upstreamTLS returns the client TLS config of an https upstream: with our X.509-SVID under mode mtls, verifying
// the server against our bundles and, when the route names one, its SPIFFE ID. A passthrough route to a server
// outside the mesh (a legacy API) is verified against the system's roots instead. Built per connection so rotation
// applies from the next handshake.
func (s *Sidecar) upstreamTLS(self spiffeid.ID) proxy.TLSConfigFunc {
	return func(_ context.Context, rt *proxy.Route) (*tls.Config, error) {
		if rt.Modes == wire.ModePassthrough && rt.UpstreamID == "" {
			return &tls.Config{MinVersion: tls.VersionTLS12}, nil
		}
		authz := tlsconfig.AuthorizeMemberOf(self.TrustDomain())
		if rt.UpstreamID != "" {
			id, err := spiffeid.FromString(rt.UpstreamID)
			if err != nil {
				return nil, fmt.Errorf("route %q: serverID: %w", rt.Name, err)
			}
			authz = tlsconfig.AuthorizeID(id)
		}
		if rt.Modes.Has(wire.ModeMTLS) {
			return mtls.ClientConfig(s.src, authz), nil
		}
		return tlsconfig.TLSClientConfig(s.src, authz), nil
	}
}

// responseVerifier verifies signed responses for egress routes with signedResponses, against the same WIT
// trust and algorithm rules as ingress, with its own nonce cache.
func (s *Sidecar) responseVerifier(self spiffeid.ID) (proxy.ResponseVerifier, error) {
	rc := replay.New(replay.Options{})
	wv, err := s.witVerifier(rc, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	hv, err := httpsig.NewVerifier(httpsig.VerifierConfig{WITs: wv, Replay: rc})
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	return steps.NewResponseVerifier(hv, self.TrustDomain(), s.limits().MaxBufferedBody), nil
}

// witVerifier verifies WITs against this sidecar's WIT bundles under the configured algorithm allow-list.
func (s *Sidecar) witVerifier(rc *replay.Cache, skew, maxLifetime time.Duration) (*wpt.Verifier, error) {
	return wpt.NewVerifier(wpt.VerifierConfig{
		Bundles: wpt.FromWITBundles(s.src), ClockSkew: skew, MaxProofLifetime: maxLifetime, Replay: rc,
		AllowedAlgs: s.cfg.Identity.witAlgorithms(), AllowedAlgsSetting: s.cfg.Identity.witAlgorithmsSetting(),
	})
}

func (s *Sidecar) ingress(popts proxy.Options, self spiffeid.ID) (proxy.Listener, error) {
	in, route := s.cfg.Ingress, s.rt.IngressRoute
	table, err := proxy.NewRouteTable(route)
	if err != nil {
		return proxy.Listener{}, err
	}
	s.metrics.preRegister(string(proxy.Ingress), []string{route.Name})

	rc := replay.New(replay.Options{MaxEntries: in.ReplayCacheSize})
	wv, err := s.witVerifier(rc, in.ClockSkew, in.MaxProofLifetime)
	if err != nil {
		return proxy.Listener{}, fmt.Errorf("ingress: %w", err)
	}
	hv, err := httpsig.NewVerifier(httpsig.VerifierConfig{WITs: wv, Replay: rc, ClockSkew: in.ClockSkew, MaxAge: in.MaxProofLifetime})
	if err != nil {
		return proxy.Listener{}, fmt.Errorf("ingress: %w", err)
	}
	chain := steps.IngressChain{
		Authenticators: map[wire.Mode]proxy.Authenticator{
			wire.ModeWPT:     steps.NewWPTAuthenticator(wv),
			wire.ModeHTTPSig: steps.NewHTTPSigAuthenticator(hv),
		},
		SignResponses: steps.NewSignResponses(s.src, popts.Limits.MaxBufferedBody),
	}
	if chain.Authorizer, err = s.authorizer(); err != nil {
		return proxy.Listener{}, err
	}
	if in.TxnToken != nil {
		tv, err := s.newTxnVerifier(self)
		if err != nil {
			return proxy.Listener{}, err
		}
		chain.TxnToken = &steps.TxnToken{Verifier: tv, Required: in.TxnToken.Required}
	}
	if s.cp != nil {
		chain.Revocations = s.cp
	}
	h, err := proxy.NewIngressHandler(proxy.IngressConfig{
		Options: popts,
		Routes:  table,
		Steps:   steps.Ingress(chain),
	})
	if err != nil {
		return proxy.Listener{}, err
	}
	s.closers = append(s.closers, h.Close)

	ln, err := net.Listen("tcp", in.Listen)
	if err != nil {
		return proxy.Listener{}, fmt.Errorf("ingress.listen: %w", err)
	}
	s.closers = append(s.closers, func() { _ = ln.Close() })
	l := proxy.Listener{Name: "ingress", Listener: ln, Handler: h}
	if m := in.MTLS; m != nil {
		l.TLSConfig = s.serverTLS(m)
	}
	return l, nil
}

// serverTLS terminates TLS with our X.509-SVID; with Required it demands a client X.509-SVID that peerAuthorizer
// admits.
func (s *Sidecar) serverTLS(m *IngressMTLSConfig) *tls.Config {
	if m.Required != nil && *m.Required {
		return mtls.ServerConfig(s.src, s.rt.Peers, mtls.WithNextProtos("h2", "http/1.1"))
	}
	cfg := tlsconfig.TLSServerConfig(s.src)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return cfg
}

// authorizer is the ingress policy: the controller's Cedar policies when a controller is configured, else local
// policy files; with neither, every caller the TLS and proof checks admitted is allowed, which the log says.
func (s *Sidecar) authorizer() (proxy.Authorizer, error) {
	in := s.cfg.Ingress
	var engine *policy.Engine
	switch {
	case s.cp != nil:
		engine = s.cp.engine
	case in.Policy != nil:
		set, err := compilePolicyFiles(in.Policy)
		if err != nil {
			return nil, err
		}
		engine = policy.NewEngine(set)
		s.localPolicy = engine
	default:
		s.log.Warn("ingress has no policy and no controller: every authenticated caller is allowed")
		return steps.AllowAuthenticated{}, nil
	}
	s.engine = engine
	a, err := steps.NewPolicy(engine, in.Host, in.MCPPaths, int(s.cfg.Limits.MaxBodyBytes))
	if err != nil {
		return nil, err
	}
	if s.cp != nil {
		a.Risk = s.cp.risk
	}
	return a, nil
}

// compilePolicyFiles reads and compiles ingress.policy.files.
func compilePolicyFiles(pc *PolicyConfig) (*policy.Set, error) {
	files := map[string][]byte{}
	for _, f := range pc.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("ingress.policy.files: %w", err)
		}
		files[f] = b
	}
	set, err := policy.Compile(files)
	if err != nil {
		return nil, fmt.Errorf("ingress.policy.files: %w", err)
	}
	return set, nil
}

// logSink writes every decision as one structured log line: the access and decision log.
type logSink struct{ log *zap.Logger }

// newLogSink logs to log without the caller: on an access line it would always name Record, and capturing it
// (runtime.Callers) cost 3 µs a line, 2% of a sidecar pair's CPU in `make bench-pair`'s profiles.
func newLogSink(log *zap.Logger) *logSink {
	return &logSink{log: log.WithOptions(zap.WithCaller(false))}
}

func (l *logSink) Record(_ context.Context, d *proxy.DecisionRecord) {
	refused := !d.Allowed || d.Reason != ""
	// Skip building the line when nobody will read it (the hot path, when the level is raised above info).
	if !refused && !l.log.Core().Enabled(zap.InfoLevel) {
		return
	}
	fields := []zap.Field{
		zap.String("direction", string(d.Direction)), zap.String("route", d.Route), zap.Bool("allowed", d.Allowed),
		zap.Int("status", d.Status), zap.String("subject", d.Subject), zap.String("auth_method", d.AuthMethod),
		zap.String("host", d.Host), zap.String("method", d.Method), zap.String("path", d.Path),
		zap.Duration("latency", d.Latency),
	}
	if d.PeerID != "" {
		fields = append(fields, zap.String("peer_id", d.PeerID))
	}
	if d.TransactionID != "" {
		fields = append(fields, zap.String("subject_kind", d.SubjectKind), zap.String("txn", d.TransactionID))
	}
	if d.DelegatedSubject != "" {
		fields = append(fields, zap.String("delegated_subject", d.DelegatedSubject))
	}
	if d.ProofID != "" {
		fields = append(fields, zap.String("proof_id", d.ProofID))
	}
	if len(d.PolicyIDs) > 0 {
		fields = append(fields, zap.Strings("policy_ids", d.PolicyIDs))
	}
	if d.RevocationID != "" {
		fields = append(fields, zap.String("revocation_id", d.RevocationID))
	}
	if d.MCPMethod != "" {
		fields = append(fields, zap.String("mcp_method", d.MCPMethod), zap.String("mcp_name", d.MCPName))
	}
	if d.Risk != "" {
		fields = append(fields, zap.String("risk", d.Risk))
	}
	if d.Traceparent != "" {
		fields = append(fields, zap.String("traceparent", d.Traceparent))
	}
	if !refused {
		l.log.Info("request allowed", fields...)
		return
	}
	// Each decision is logged once, here, at the level its outcome deserves: a refusal is routine (info), an
	// upstream failure needs a look (warn), an internal error a fix (error). A client that went away is neither
	// refused nor failed: at debug, under its own message.
	fields = append(fields, zap.String("reason", d.Reason), zap.String("message", d.Message))
	switch proxy.ResultOf(d.Reason) {
	case proxy.ResultClientClosed:
		l.log.Debug("client went away", fields...)
	case proxy.ResultError:
		if d.Reason == autherr.Internal {
			l.log.Error("request failed", fields...)
		} else {
			l.log.Warn("request failed", fields...)
		}
	default:
		l.log.Info("request refused", fields...)
	}
}

// multiSink fans one decision out to several sinks, in order.
type multiSink []proxy.DecisionSink

func (m multiSink) Record(ctx context.Context, d *proxy.DecisionRecord) {
	for _, s := range m {
		s.Record(ctx, d)
	}
}

var (
	_ proxy.DecisionSink = (*logSink)(nil)
	_ proxy.DecisionSink = multiSink(nil)
)
