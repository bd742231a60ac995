package controller

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/buildinfo"
	"github.com/agentauth/agentauth/internal/certfile"
	"github.com/agentauth/agentauth/internal/netlimit"
	"github.com/agentauth/agentauth/pkg/controller/state"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/xds"
)

// Controller is one running controller.
type Controller struct {
	cfg   *Config
	log   *zap.Logger
	td    spiffeid.TrustDomain
	store *store.Store
	ca    *issuer.CA
	self  *selfSVID
	// state writes policies, revocations, risk and trust bundles, and keeps the revocation index the token
	// service and the issuer ask; pub serves what it stores to the sidecars.
	state *state.Service
	pub   *xds.Publisher
	xds   *xds.Server
	iss   *grpc.Server
	reg   *prometheus.Registry
	// metrics counts SVIDs, token exchanges and SETs (set by New before the servers that count).
	metrics *metrics

	issuerLn, xdsLn, opsLn, adminLn, ssfLn, tokenLn net.Listener
	admin, ops, ssf, tokens                         *http.Server
	closers                                         []func()
	// issLocal serves the issuer to local workloads on issuerLocalLn, issuer.localSocket (set with it).
	issLocal      *grpc.Server
	issuerLocalLn net.Listener
	// ssfClients polls transmitters and manages SSF streams (set with ssf).
	ssfClients *ssfClients
	// ssfCert is the SSF receiver's certificate (set with ssf.tls).
	ssfCert *certfile.Reloader
	// done is closed when Run returns, stopping background loops.
	done chan struct{}
	// logLevel, when set, is served at the ops listener's /logging.
	logLevel *zap.AtomicLevel
	// stopping is set when Run begins to stop: /readyz answers 503 from then on.
	stopping atomic.Bool
}

// Option adjusts a Controller at construction.
type Option func(*Controller)

// WithLogLevel serves lvl, the level of the logger given to New, at the ops listener's /logging.
func WithLogLevel(lvl zap.AtomicLevel) Option { return func(c *Controller) { c.logLevel = &lvl } }

// New opens the state store, loads (or creates) the CA, and binds every listener. Nothing is served until Run.
func New(ctx context.Context, cfg *Config, log *zap.Logger, opts ...Option) (_ *Controller, err error) {
	c := &Controller{cfg: cfg, log: log, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.td, err = spiffeid.TrustDomainFromString(cfg.TrustDomain); err != nil {
		return nil, fmt.Errorf("trustDomain: %w", err)
	}
	if cfg.Issuer.SVIDTTL < SaneMinSVIDTTL {
		log.Warn("issuer.svidTTL is below the sane minimum: meant for tests and demos of rotation, not production",
			zap.Duration("svidTTL", cfg.Issuer.SVIDTTL), zap.Duration("saneMinimum", SaneMinSVIDTTL))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("dataDir: %w", err)
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if c.store, err = c.openStore(); err != nil {
		return nil, err
	}
	c.closers = append(c.closers, func() { _ = c.store.Close() })

	keys, err := c.keyStore()
	if err != nil {
		return nil, err
	}
	if c.ca, err = issuer.New(ctx, issuer.Config{TrustDomain: c.td, Keys: keys, Store: issuer.NewBoltStore(c.store)}); err != nil {
		return nil, err
	}
	if err := writeBundle(filepath.Join(cfg.DataDir, "bundle.pem"), c.ca); err != nil {
		return nil, err
	}
	if c.self, err = newSelfSVID(ctx, c.ca, wire.ControllerID(c.td), cfg.Issuer.SVIDTTL, log); err != nil {
		return nil, err
	}
	c.closers = append(c.closers, c.self.stop)

	// Policies are compiled before they are stored, so a bad one never reaches a sidecar.
	if c.state, err = state.New(c.store, state.Config{
		Validators: map[string]xds.Validator{agentauthv1.PolicyType: policy.ValidateResource},
		Logger:     log.Named("state"),
	}); err != nil {
		return nil, err
	}
	c.closers = append(c.closers, c.state.Close)
	if c.pub, err = xds.NewPublisher(c.store, xds.PublisherConfig{Logger: log.Named("xds")}); err != nil {
		return nil, err
	}
	c.closers = append(c.closers, c.pub.Close)
	if err := c.state.SetTrustBundle(trustBundle(c.ca)); err != nil {
		return nil, fmt.Errorf("publishing the trust bundle: %w", err)
	}
	if err := c.resolveStoredUsers(); err != nil {
		return nil, err
	}
	xdsTLS := mtls.ServerConfig(c.self, mtls.AuthorizeTrustDomains(c.td))
	if c.xds, err = xds.NewServer(c.pub, xds.ServerConfig{TLSConfig: xdsTLS, HandshakeTimeout: cfg.XDS.Limits.ReadHeaderTimeout,
		MaxConnIdle: cfg.XDS.Limits.IdleTimeout, Logger: log.Named("xds")}); err != nil {
		return nil, err
	}
	c.reg.MustRegister(xds.NewServerCollector(c.xds), buildinfo.Read().Collector(), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.metrics = c.newMetrics()
	if c.iss, err = issuer.NewGRPCServer(c.ca, c.issuerServiceConfig(),
		grpc.ChainUnaryInterceptor(c.metrics.issuerInterceptor(false))); err != nil {
		return nil, err
	}

	// Every listener has its own connection caps (netlimit), so a flood on one leaves the descriptors and
	// memory the others need: the admin socket, /readyz, SSF push and Renew keep answering.
	listen := func(field, addr string, l netlimit.Config) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		c.closers = append(c.closers, func() { _ = ln.Close() })
		return l.Listener(ln), nil
	}
	if c.issuerLn, err = listen("issuer.listen", cfg.Issuer.Listen, cfg.Issuer.Limits); err != nil {
		return nil, err
	}
	if c.xdsLn, err = listen("xds.listen", cfg.XDS.Listen, cfg.XDS.Limits); err != nil {
		return nil, err
	}
	if c.opsLn, err = listen("ops.listen", cfg.Ops.Listen, cfg.Ops.Limits); err != nil {
		return nil, err
	}
	dirMode, sockMode := os.FileMode(0o700), os.FileMode(0o600)
	if len(cfg.Admin.AllowedUIDs)+len(cfg.Admin.AllowedGIDs) > 0 {
		// Other users must be able to connect; the peer check decides who is served.
		dirMode, sockMode = 0o755, 0o666
	}
	if c.adminLn, err = listenUnix("admin.socket", cfg.Admin.Socket, dirMode, sockMode); err != nil {
		return nil, err
	}
	c.closers = append(c.closers, func() { _ = c.adminLn.Close(); _ = os.Remove(cfg.Admin.Socket) })
	c.adminLn = cfg.Admin.Limits.Listener(c.adminLn)
	if cfg.Issuer.LocalSocket != "" {
		if err := c.listenLocalIssuer(); err != nil {
			return nil, err
		}
	}
	if cfg.TokenService != nil {
		if c.tokenLn, err = listen("tokenService.listen", cfg.TokenService.Listen, cfg.TokenService.Limits); err != nil {
			return nil, err
		}
		if c.tokens, err = c.startTokenService(keys); err != nil {
			return nil, err
		}
	}
	if cfg.SSF != nil {
		if c.ssfLn, err = listen("ssf.listen", cfg.SSF.Listen, cfg.SSF.Limits); err != nil {
			return nil, err
		}
		if c.ssf, err = c.startSSF(); err != nil {
			return nil, err
		}
	}
	c.admin = cfg.Admin.Limits.Server(c.adminPeerCheck(c.adminHandler()))
	c.admin.ConnContext = withPeerCred
	c.ops = cfg.Ops.Limits.Server(c.opsHandler())
	return c, nil
}

// issuerServiceConfig is the issuer service's configuration, for its TCP listener and its local socket alike.
func (c *Controller) issuerServiceConfig() issuer.ServiceConfig {
	is := c.cfg.Issuer
	return issuer.ServiceConfig{SVIDTTL: is.SVIDTTL, Withheld: c.withheld, RenewRefused: c.renewRefused,
		HandshakeTimeout: is.Limits.ReadHeaderTimeout, MaxConnIdle: is.Limits.IdleTimeout,
		AttestRate: netlimit.NewRateLimiter(is.RateLimit), Logger: c.log.Named("issuer")}
}

// Run serves until ctx ends, then stops every server.
func (c *Controller) Run(ctx context.Context) error {
	defer c.close()
	housekept := make(chan struct{})
	defer func() { <-housekept }() // before the store closes
	defer close(c.done)
	go func() {
		defer close(housekept)
		c.housekeeping()
	}()
	errc := make(chan error, 7)
	if c.tokens != nil {
		go func() {
			if err := c.tokens.ServeTLS(c.tokenLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		c.log.Info("token service serving", zap.String("endpoint", TokenEndpoint(c.tokenLn.Addr().String())))
	}
	if c.ssf != nil {
		go func() { errc <- serveHTTP(c.ssf, c.ssfLn) }()
		stopSSF := c.runSSFClients(ctx)
		defer stopSSF() // before the store closes: SETs in flight are applied, acknowledgements flushed
		c.log.Info("SSF receiver serving", zap.String("push", c.ssfScheme()+"://"+c.ssfLn.Addr().String()+"/ssf/events"))
	}
	go func() { errc <- c.iss.Serve(c.issuerLn) }()
	if c.issLocal != nil {
		go func() { errc <- c.issLocal.Serve(c.issuerLocalLn) }()
		c.log.Info("issuer serving local workloads", zap.String("socket", c.cfg.Issuer.LocalSocket),
			zap.Int("mapped_uids", len(c.cfg.Issuer.PeerIDs)))
	}
	go func() { errc <- c.xds.Serve(c.xdsLn) }()
	go func() { errc <- serveHTTP(c.admin, c.adminLn) }()
	go func() { errc <- serveHTTP(c.ops, c.opsLn) }()
	c.log.Info("controller serving", zap.String("trust_domain", c.td.Name()),
		zap.String("issuer", c.issuerLn.Addr().String()), zap.String("xds", c.xdsLn.Addr().String()),
		zap.String("admin_socket", c.cfg.Admin.Socket), zap.String("ops", c.opsLn.Addr().String()),
		zap.String("bundle", filepath.Join(c.cfg.DataDir, "bundle.pem")))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	case <-c.store.Broken():
		err = fmt.Errorf("%w: %w; %s", ErrStateCorrupt, c.store.Err(), restoreHint(c.store.Path()))
		c.log.Error("the state store is damaged; stopping", zap.Error(err))
	}
	c.stopping.Store(true)
	c.log.Info("controller stopping")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The ops listener (/readyz, now 503) closes last, so whoever polls it sees the controller going away.
	defer func() { _ = c.ops.Shutdown(shutdown) }()
	_ = c.admin.Shutdown(shutdown)
	if c.ssf != nil {
		_ = c.ssf.Shutdown(shutdown)
	}
	if c.tokens != nil {
		_ = c.tokens.Shutdown(shutdown)
	}
	c.xds.Stop()
	c.iss.GracefulStop()
	if c.issLocal != nil {
		c.issLocal.GracefulStop()
	}
	return err
}

func (c *Controller) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	c.closers = nil
}

// Errors New and Run return when the state store cannot be used; cmd/controller exits with its own code for each.
var (
	// ErrStateMissing: state.db is missing or empty, but dataDir/keys shows this controller ran here before.
	ErrStateMissing = errors.New("state store missing")
	// ErrStateCorrupt: state.db is damaged.
	ErrStateCorrupt = errors.New("state store corrupt")
)

// openStore opens dataDir/state.db. A missing or empty one is created only on a first start (dataDir/keys empty
// or absent) or with InitState: anywhere else, starting empty would silently drop every revocation, policy and
// join token, and sidecars would be told to forget them.
func (c *Controller) openStore() (*store.Store, error) {
	path := filepath.Join(c.cfg.DataDir, "state.db")
	keys := filepath.Join(c.cfg.DataDir, "keys")
	ran, err := nonEmptyDir(keys)
	if err != nil {
		return nil, fmt.Errorf("dataDir: %w", err)
	}
	st, err := store.Open(path, store.Options{MustExist: ran && !c.cfg.InitState})
	switch {
	case errors.Is(err, store.ErrAbsent):
		return nil, fmt.Errorf("%w: %s is missing or empty, but %s holds the CA's keys, so this controller ran here before "+
			"and starting would silently drop every revocation, policy and join token. Restore state.db from a backup "+
			"(agentauthctl backup) with the controller stopped; or, to start with empty state on purpose, run once with "+
			"-init-state", ErrStateMissing, path, keys)
	case errors.Is(err, store.ErrCorrupt):
		return nil, fmt.Errorf("%w: %w; %s", ErrStateCorrupt, err, restoreHint(path))
	case err != nil:
		return nil, err
	}
	if v, verr := st.Version(); ran && verr == nil && v == 0 {
		c.log.Warn("starting with empty state beside existing CA keys (-init-state): revocations, policies and join tokens "+
			"made before are gone; remove -init-state", zap.String("state", path))
	}
	return st, nil
}

func restoreHint(path string) string {
	return "restore " + path + " from a backup (agentauthctl backup) while the controller is stopped; or move it " +
		"aside and start once with -init-state to begin with empty state"
}

func nonEmptyDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return len(entries) > 0, err
}

// keyStore opens where the CA and signing keys live: PKCS#8 files under dataDir/keys, or a TPM (a character
// device such as /dev/tpmrm0, or the Unix socket of a software TPM) that holds them, with only wrapped blobs on disk.
func (c *Controller) keyStore() (issuer.KeyStore, error) {
	dir := filepath.Join(c.cfg.DataDir, "keys")
	if c.cfg.Issuer.Keys != "tpm" {
		return issuer.NewFileKeyStore(dir)
	}
	dev := c.cfg.Issuer.TPMDevice
	fi, err := os.Stat(dev)
	if err != nil {
		return nil, fmt.Errorf("issuer.tpmDevice: %w", err)
	}
	var tpm transport.TPMCloser
	if fi.Mode()&os.ModeSocket != 0 {
		tpm, err = linuxudstpm.Open(dev)
	} else {
		tpm, err = linuxtpm.Open(dev)
	}
	if err != nil {
		return nil, fmt.Errorf("issuer.tpmDevice %s: %w", dev, err)
	}
	ks, err := issuer.NewTPMKeyStore(tpm, filepath.Join(dir, "tpm"))
	if err != nil {
		tpm.Close()
		return nil, fmt.Errorf("issuer.keys tpm: %w", err)
	}
	c.closers = append(c.closers, func() { _ = ks.Close(); _ = tpm.Close() })
	return ks, nil
}

// serveHTTP serves s on ln, over TLS when s has a TLSConfig.
func serveHTTP(s *http.Server, ln net.Listener) error {
	serve := s.Serve
	if s.TLSConfig != nil {
		serve = func(ln net.Listener) error { return s.ServeTLS(ln, "", "") }
	}
	if err := serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// privateDirSuffix is the most bytes listenUnix's private directory adds to a socket's path: "/.sock" and up to
// ten digits, then "/s".
const privateDirSuffix = len("/.sock") + 10 + len("/s")

// listenUnix listens on the Unix socket at path (config field field), creating its directory with dirMode if
// needed, and gives the socket file mode.
//
// bind(2) creates the socket with the process's umask, and a chmod after it leaves a moment in which anyone the
// umask lets in can connect, and keep the connection. So a socket for fewer than everyone is bound in a new
// directory of mode 0700 beside path, given its mode there, and only then renamed to path: at path it never has
// another mode.
func listenUnix(field, path string, dirMode, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	// A socket left by a crashed controller would make Listen fail; the store's file lock already guarantees
	// no other controller runs on this data directory.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	bindPath := path
	if mode&0o006 != 0o006 {
		dir, err := os.MkdirTemp(filepath.Dir(path), ".sock") // mode 0700
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		defer os.RemoveAll(dir)
		bindPath = filepath.Join(dir, "s")
	}
	ln, err := net.Listen("unix", bindPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	err = os.Chmod(bindPath, mode)
	if err == nil && bindPath != path {
		// The listener would unlink bindPath on Close; the caller removes path.
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		err = os.Rename(bindPath, path)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return ln, nil
}

// listenLocalIssuer binds issuer.localSocket and builds the issuer service that attests by Unix peer credentials.
//
// The socket (and a directory it creates, umask permitting) is open to every local user on purpose: who may connect is not what
// decides anything. The kernel records the uid of each connecting process (SO_PEERCRED), which no process can
// forge; a uid listed in issuer.peerIDs gets that SPIFFE ID and any other is refused. Renewal is refused on this
// socket, and join tokens are bearer secrets wherever they are presented. Restricting the mode would only make
// the mapping useless to the workloads it names, which run as other users than the controller.
func (c *Controller) listenLocalIssuer() error {
	peerIDs, err := c.cfg.peerIDs()
	if err != nil {
		return err
	}
	sc := c.issuerServiceConfig()
	sc.PeerIDs = peerIDs
	if c.issLocal, err = issuer.NewLocalGRPCServer(c.ca, sc, grpc.ChainUnaryInterceptor(c.metrics.issuerInterceptor(true))); err != nil {
		return fmt.Errorf("issuer.peerIDs: %w", err)
	}
	path := c.cfg.Issuer.LocalSocket
	if c.issuerLocalLn, err = listenUnix("issuer.localSocket", path, 0o755, 0o666); err != nil {
		return err
	}
	c.closers = append(c.closers, func() { _ = c.issuerLocalLn.Close(); _ = os.Remove(path) })
	c.issuerLocalLn = c.cfg.Issuer.Limits.Listener(c.issuerLocalLn)
	return nil
}

// checkDataDir refuses a data directory that another local user could have planted or could change: dataDir,
// dataDir/keys and dataDir/state.db (those that exist) must be owned by the controller's uid and not writable by
// group or others, and the latter two must not be symbolic links. Whoever could write there could plant a state.db
// holding their own join token, swap keys, or redirect the files the controller writes.
func checkDataDir(dir string) error {
	for _, p := range []struct {
		path   string
		follow bool
	}{{dir, true}, {filepath.Join(dir, "keys"), false}, {filepath.Join(dir, "state.db"), false}} {
		stat := os.Lstat
		if p.follow {
			stat = os.Stat // dataDir itself may be a link to where the operator keeps it
		}
		fi, err := stat(p.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("dataDir: %w", err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("dataDir: %s is a symbolic link; the controller keeps its state and keys only in dataDir itself", p.path)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			return fmt.Errorf("dataDir: %s is owned by uid %d, not by the controller's uid %d: chown it to the controller's user "+
				"(or remove it, if the controller did not create it)", p.path, st.Uid, os.Geteuid())
		}
		if perm := fi.Mode().Perm(); perm&0o022 != 0 {
			return fmt.Errorf("dataDir: %s has mode %v: other users could replace the controller's state or keys; chmod go-w %s",
				p.path, perm, p.path)
		}
	}
	return nil
}

// writeBundle writes the CA's root as PEM: what an operator hands a sidecar to trust the controller first. The
// file is written under a new random name (O_EXCL: nothing planted is followed) and renamed into place.
func writeBundle(path string, ca *issuer.CA) (err error) {
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root().Raw})
	tmp, err := os.CreateTemp(filepath.Dir(path), ".bundle-*.pem")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Chmod(0o644) // the bundle is public: sidecars' operators read it
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func trustBundle(ca *issuer.CA) *agentauthv1.TrustBundle {
	var jwks jose.JSONWebKeySet
	for kid, k := range ca.WITBundle().WITAuthorities() {
		jwks.Keys = append(jwks.Keys, jose.JSONWebKey{Key: k, KeyID: kid, Use: "wit-svid"})
	}
	raw, _ := json.Marshal(jwks)
	return &agentauthv1.TrustBundle{
		TrustDomain:        ca.TrustDomain().Name(),
		X509Authorities:    [][]byte{ca.Root().Raw},
		JwtAuthoritiesJwks: raw,
		Sequence:           1,
	}
}

// selfSVID is the controller's own X.509-SVID, issued by its CA and renewed at half its lifetime.
type selfSVID struct {
	ca     *issuer.CA
	id     spiffeid.ID
	ttl    time.Duration
	cur    atomic.Pointer[x509svid.SVID]
	cancel context.CancelFunc
	log    *zap.Logger
}

func newSelfSVID(ctx context.Context, ca *issuer.CA, id spiffeid.ID, ttl time.Duration, log *zap.Logger) (*selfSVID, error) {
	s := &selfSVID{ca: ca, id: id, ttl: ttl, log: log}
	if err := s.renew(ctx); err != nil {
		return nil, fmt.Errorf("issuing the controller's own SVID: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.loop(loopCtx)
	return s, nil
}

func (s *selfSVID) renew(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	chain, err := s.ca.IssueX509SVID(ctx, key.Public(), s.id, s.ttl)
	if err != nil {
		return err
	}
	s.cur.Store(&x509svid.SVID{ID: s.id, Certificates: chain, PrivateKey: crypto.Signer(key)})
	return nil
}

func (s *selfSVID) loop(ctx context.Context) {
	for {
		left := time.Until(s.cur.Load().Certificates[0].NotAfter)
		select {
		case <-ctx.Done():
			return
		case <-time.After(left / 2):
		}
		if err := s.renew(ctx); err != nil {
			s.log.Error("renewing the controller's SVID failed; retrying", zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}
}

func (s *selfSVID) stop() { s.cancel() }

// GetX509SVID implements x509svid.Source.
func (s *selfSVID) GetX509SVID() (*x509svid.SVID, error) { return s.cur.Load(), nil }

// GetX509BundleForTrustDomain implements x509bundle.Source: the controller trusts only its own CA.
func (s *selfSVID) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != s.ca.TrustDomain() {
		return nil, fmt.Errorf("controller: no bundle for trust domain %q", td)
	}
	return s.ca.X509Bundle(), nil
}

var (
	_ x509svid.Source   = (*selfSVID)(nil)
	_ x509bundle.Source = (*selfSVID)(nil)
)

// renewRefused reports a revocation that covers credentials of id issued at issuedAt, or the certificate serial,
// and that renewal must not undo (issuer.ServiceConfig.RenewRefused): a reported key compromise (whoever stole the
// key could renew too), a recycled identifier (the previous holder must not pass for the new one), an operator's
// revocation without renewal (RevokeRequest.NoRenew), or a revocation of that certificate. A revocation that only
// ends sessions (e.g. CAEP session-revoked) lets the agent renew and resume.
func (c *Controller) renewRefused(_ context.Context, id spiffeid.ID, serial string, issuedAt time.Time) (string, bool) {
	revs, now := c.state.Revocations(), time.Now()
	// A serial is matched under any issuer: a DN has many spellings, and serials are random.
	for _, r := range revs.About(revocation.KindX509Serial, "", serial) {
		if revocation.Refuses(r, issuedAt, now) {
			return "the certificate was revoked (" + r.GetId() + ": " + r.Describe() + ")", true
		}
	}
	for _, r := range revs.About(revocation.KindSPIFFE, "", id.String()) {
		if r.GetNotBefore() == nil || !revocation.Refuses(r, issuedAt, now) {
			continue
		}
		switch r.GetCause().GetEventType() {
		case signals.EventCredentialCompromise:
			return "its key was reported compromised (" + r.GetId() + ": " + r.Describe() + ")", true
		case signals.EventIdentifierRecycled:
			return "its identifier was recycled (" + r.GetId() + ": " + r.Describe() + ")", true
		case CauseAdminNoRenew:
			return "an operator revoked it without renewal (" + r.GetId() + ": " + r.Describe() + ")", true
		}
	}
	return "", false
}

// withheld reports a revocation of id without not_before (e.g. RISC account-disabled, revocation.Withholds):
// such a workload gets no new credentials until an operator lifts it.
func (c *Controller) withheld(_ context.Context, id spiffeid.ID) (string, bool) {
	now := time.Now()
	for _, r := range c.state.Revocations().About(revocation.KindSPIFFE, "", id.String()) {
		if revocation.Withholds(r, now) {
			return r.GetId() + ": " + r.GetReason(), true
		}
	}
	return "", false
}
