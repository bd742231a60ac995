package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/agentauth/agentauth/internal/tracing"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// Sidecar is one running sidecar: its credential source, its listeners and its admin endpoint.
type Sidecar struct {
	cfg     *Config
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

// New loads credentials and binds every listener of cfg (so a port conflict fails here, not later). cfg must have
// passed Validate. Nothing is served until Run.
func New(ctx context.Context, cfg *Config, log *zap.Logger, opts ...Option) (_ *Sidecar, err error) {
	s := &Sidecar{cfg: cfg, log: log, metrics: NewMetrics(), running: cfg}
	for _, o := range opts {
		o(s)
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	var adminOpts []AdminOption
	if cfg.Admin.Pprof {
		adminOpts = append(adminOpts, WithPprof())
	}
	if s.logLevel != nil {
		adminOpts = append(adminOpts, WithLogging(*s.logLevel, log))
	}
	adminOpts = append(adminOpts, func(mux *http.ServeMux) { mux.HandleFunc("GET /config_dump", s.serveConfigDump) })
	s.admin = NewAdmin(s.metrics.Registry, adminOpts...)
	s.admin.SetLimits(cfg.Admin.Limits)
	s.admin.SetStarting(true)
	// The admin endpoint serves from here on, so /readyz can say what a start is waiting for (the controller).
	if s.adminLn, err = listenAdmin(cfg.Admin.Listen); err != nil {
		return nil, err
	}
	s.adminErr = make(chan error, 1)
	go func() { s.adminErr <- s.admin.Serve(s.adminLn) }()
	s.closers = append(s.closers, func() { _ = s.admin.Close() })

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

	sinks := multiSink{&logSink{log: log}}
	if s.sink != nil {
		sinks = append(sinks, s.sink)
	}
	if tr := cfg.Tracing; tr != nil {
		spans, err := tracing.New(ctx, tracing.Options{Endpoint: tr.Endpoint, Insecure: tr.Insecure,
			SampleRatio: *tr.SampleRatio, ServiceName: tr.ServiceName, Workload: self.String()})
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
		sinks = append(sinks, spans)
	}
	slogger := slog.New(zapslog.NewHandler(log.Core(), zapslog.WithName("proxy")))
	popts := proxy.Options{
		Self:    self.String(),
		Limits:  s.limits(),
		Live:    proxy.NewLiveLimits(s.limits()),
		Sink:    sinks,
		Metrics: s.metrics,
		Logger:  slogger,
	}
	s.live = popts.Live
	if s.audit != nil {
		popts.Auditor = s.audit
	}

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
	if s.server, err = proxy.NewServer(popts.Limits, slogger, listeners...); err != nil {
		return nil, err
	}
	s.admin.SetStarting(false)
	return s, nil
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

// egressRoutes builds the route table of egress.routes, and the route names.
func egressRoutes(e *EgressConfig) (*proxy.RouteTable, []string, error) {
	routes := make([]*proxy.Route, 0, len(e.Routes))
	names := make([]string, 0, len(e.Routes))
	for i, rc := range e.Routes {
		modes, err := proxy.ParseModes(rc.Modes...)
		if err != nil {
			return nil, nil, fmt.Errorf("egress.routes[%d].modes: %w", i, err)
		}
		up, err := url.Parse(rc.Upstream)
		if err != nil {
			return nil, nil, fmt.Errorf("egress.routes[%d].upstream: %w", i, err)
		}
		routes = append(routes, &proxy.Route{
			Name:            rc.Name,
			Match:           proxy.Match{Host: rc.Host, PathPrefix: rc.PathPrefix},
			Upstream:        up,
			H2C:             rc.H2C,
			Modes:           modes,
			Audience:        rc.Audience,
			ProofLifetime:   rc.ProofLifetime,
			UpstreamID:      rc.ServerID,
			SignedResponses: rc.SignedResponses,
			KeepHost:        true,
		})
		names = append(names, rc.Name)
	}
	table, err := proxy.NewRouteTable(routes...)
	if err != nil {
		return nil, nil, fmt.Errorf("egress.routes: %w", err)
	}
	return table, names, nil
}

func (s *Sidecar) egress(popts proxy.Options, self spiffeid.ID) ([]proxy.Listener, error) {
	e := s.cfg.Egress
	table, names, err := egressRoutes(e)
	if err != nil {
		return nil, err
	}
	s.metrics.preRegister(string(proxy.Egress), names)
	popts.TLSConfig = s.upstreamTLS(self)
	signers := map[proxy.Mode]proxy.ProofSigner{
		proxy.ModeWPT:     &wptSigner{src: s.src},
		proxy.ModeHTTPSig: &httpsigSigner{src: s.src},
	}
	var creds proxy.ProofSigner
	if e.TokenService != nil {
		x, err := s.newExchanger(self)
		if err != nil {
			return nil, fmt.Errorf("egress.tokenService: %w", err)
		}
		rc := &routeCredentials{x: x, scopes: map[string]string{}, access: map[string]*oauth.SecondaryCredential{},
			audited: s.audit != nil, self: self.String()}
		for i, r := range e.Routes {
			if r.TxnToken != nil {
				rc.scopes[r.Name] = r.TxnToken.Scope
			}
			if a := r.AccessToken; a != nil {
				sc, err := oauth.NewSecondaryCredential(x, oauth.SecondaryConfig{Audience: a.Audience, Resource: a.Resource, Scope: a.Scope})
				if err != nil {
					return nil, fmt.Errorf("egress.routes[%d].accessToken: %w", i, err)
				}
				rc.access[r.Name] = sc
			}
		}
		creds = rc
	}
	resps, err := s.responseVerifier(self)
	if err != nil {
		return nil, err
	}
	h, err := proxy.NewEgressHandler(proxy.EgressConfig{
		Options:     popts,
		Routes:      table,
		Signers:     signers,
		Credentials: creds,
		Responses:   resps,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, h.Close)
	s.egressH = h

	var ls []proxy.Listener
	bind := func(name, addr string, transparent bool) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("egress.%s: %w", name, err)
		}
		s.closers = append(s.closers, func() { _ = ln.Close() })
		ls = append(ls, proxy.Listener{Name: "egress-" + name, Listener: ln, Handler: h, Transparent: transparent})
		return nil
	}
	if err := bind("proxyListen", e.ProxyListen, false); err != nil {
		return nil, err
	}
	if err := bind("transparentListen", e.TransparentListen, true); err != nil {
		return nil, err
	}
	return ls, nil
}

// upstreamTLS returns the client TLS config of an https upstream: with our X.509-SVID under mode mtls, verifying
// the server against our bundles and, when the route names one, its SPIFFE ID. A passthrough route to a server
// outside the mesh (a legacy API) is verified against the system's roots instead. Built per connection so rotation
// applies from the next handshake.
func (s *Sidecar) upstreamTLS(self spiffeid.ID) proxy.TLSConfigFunc {
	return func(_ context.Context, rt *proxy.Route) (*tls.Config, error) {
		if rt.Modes == proxy.ModePassthrough && rt.UpstreamID == "" {
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
		if rt.Modes.Has(proxy.ModeMTLS) {
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
	return &responseVerifier{v: hv, self: self.TrustDomain(), maxBody: s.limits().MaxBufferedBody}, nil
}

// witVerifier verifies WITs against this sidecar's WIT bundles under the configured algorithm allow-list.
func (s *Sidecar) witVerifier(rc *replay.Cache, skew, maxLifetime time.Duration) (*wpt.Verifier, error) {
	return wpt.NewVerifier(wpt.VerifierConfig{
		Bundles: wpt.FromWITBundles(s.src), ClockSkew: skew, MaxProofLifetime: maxLifetime, Replay: rc,
		AllowedAlgs: s.cfg.Identity.witAlgorithms(),
	})
}

func (s *Sidecar) ingress(popts proxy.Options, self spiffeid.ID) (proxy.Listener, error) {
	in := s.cfg.Ingress
	modes, err := proxy.ParseModes(in.Require...)
	if err != nil {
		return proxy.Listener{}, fmt.Errorf("ingress.require: %w", err)
	}
	backend, err := url.Parse(in.Backend)
	if err != nil {
		return proxy.Listener{}, fmt.Errorf("ingress.backend: %w", err)
	}
	// The expected proof audience is built from the configured host (or is the configured audience), never from
	// the request; a request for another host matches no route and is refused.
	route := &proxy.Route{Name: ingressRouteName(in), Match: proxy.Match{Host: in.Host}, Upstream: backend, H2C: in.BackendH2C,
		Modes: modes, Audience: in.Audience, KeepHost: true}
	if in.ExternalURL != "" {
		if route.ExternalURL, err = url.Parse(in.ExternalURL); err != nil {
			return proxy.Listener{}, fmt.Errorf("ingress.externalURL: %w", err)
		}
	}
	if in.Host == "" {
		route.Match.Host = proxy.AnyHost
	}
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
	authn := map[proxy.Mode]proxy.Authenticator{
		proxy.ModeWPT:     &wptAuthenticator{v: wv},
		proxy.ModeHTTPSig: &httpsigAuthenticator{v: hv},
	}
	authz, err := s.authorizer()
	if err != nil {
		return proxy.Listener{}, err
	}
	// identity → proof bindings → delegated user (Txn-Token) → revocation → policy.
	steps := []proxy.Step{&proxy.AuthenticateStep{Authenticators: authn}, proxy.BindingStep{}}
	if in.TxnToken != nil {
		tv, err := s.newTxnVerifier(self)
		if err != nil {
			return proxy.Listener{}, err
		}
		steps = append(steps, &txnStep{v: tv, required: in.TxnToken.Required})
	}
	if s.cp != nil {
		steps = append(steps, &proxy.RevocationStep{Checker: s.cp})
	}
	steps = append(steps, &proxy.AuthorizeStep{Authorizer: authz},
		&responseSignStep{src: s.src, maxBody: popts.Limits.MaxBufferedBody})
	h, err := proxy.NewIngressHandler(proxy.IngressConfig{
		Options: popts,
		Routes:  table,
		Steps:   steps,
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

// ingressRouteName names the ingress route in metrics, decision records and the WWW-Authenticate realm: the
// tool's name (ingress.host, what policy calls the Tool), or "ingress" when any host is served.
func ingressRouteName(in *IngressConfig) string {
	if in.Host != "" {
		return in.Host
	}
	return "ingress"
}

// serverTLS terminates TLS with our X.509-SVID; with Required it demands a client X.509-SVID that peerAuthorizer
// admits.
func (s *Sidecar) serverTLS(m *IngressMTLSConfig) *tls.Config {
	if m.Required != nil && *m.Required {
		return mtls.ServerConfig(s.src, peerAuthorizer(m), mtls.WithNextProtos("h2", "http/1.1"))
	}
	cfg := tlsconfig.TLSServerConfig(s.src)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return cfg
}

// peerAuthorizer admits a client X.509-SVID from one of the trust domains, and only one of the AllowIDs when
// those are set: each list that is set restricts.
func peerAuthorizer(m *IngressMTLSConfig) tlsconfig.Authorizer {
	var authzs []tlsconfig.Authorizer
	var tds []spiffeid.TrustDomain
	for _, name := range m.TrustDomains {
		tds = append(tds, spiffeid.RequireTrustDomainFromString(name))
	}
	if len(tds) > 0 {
		authzs = append(authzs, mtls.AuthorizeTrustDomains(tds...))
	}
	var ids []spiffeid.ID
	for _, raw := range m.AllowIDs {
		ids = append(ids, spiffeid.RequireFromString(raw))
	}
	if len(ids) > 0 {
		authzs = append(authzs, mtls.AuthorizeIDs(ids...))
	}
	return mtls.AllOf(authzs...)
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
		return allowAuthenticated{}, nil
	}
	s.engine = engine
	a, err := newPolicyAuthorizer(engine, in.Host, in.MCPPaths, int(s.cfg.Limits.MaxBodyBytes))
	if err != nil {
		return nil, err
	}
	if s.cp != nil {
		a.risk = s.cp.risk
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

type allowAuthenticated struct{}

func (allowAuthenticated) Authorize(context.Context, *proxy.AuthzRequest) (*proxy.Decision, error) {
	return &proxy.Decision{Allowed: true, Reason: "no policy configured: authenticated callers are allowed"}, nil
}

// logSink writes every decision as one structured log line: the access and decision log.
type logSink struct{ log *zap.Logger }

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
	_ proxy.Authorizer   = allowAuthenticated{}
)
