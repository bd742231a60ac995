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
	"slices"
	"strings"
	"sync"
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
	"k8s.io/client-go/kubernetes"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/buildinfo"
	"github.com/agentauth/agentauth/pkg/controller/state"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/leader"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/xds"
	"github.com/agentauth/agentauth/pkg/xds/xdsserver"
)

// Controller is one running controller: the shared state New builds (store, CA, own SVID, publisher, metrics),
// and the components (component.go) that serve it.
type Controller struct {
	cfg   *Config
	log   *zap.Logger
	td    spiffeid.TrustDomain
	store store.Backend
	// bolt is the store with state.backend bbolt (its backup, its path in errors), nil otherwise.
	bolt *store.Store
	// kube is the Kubernetes API client of state.backend kubernetes, nil otherwise.
	kube kubernetes.Interface
	// elector runs the singleton work (leaderOnly) with state.backend kubernetes (set by leaderElection's
	// provision); nil otherwise, where this controller always leads.
	elector *leader.Elector
	keys    issuer.KeyStore
	ca      *issuer.CA
	// caMu serialises applyCA: the rotator and the watcher of the shared state may both apply a CA change.
	caMu sync.Mutex
	self *selfSVID
	// state writes policies, revocations, risk and trust bundles, and keeps the revocation index the token
	// service and the issuer ask; pub serves what it stores to the sidecars.
	state *state.Service
	pub   *xdsserver.Publisher
	// policies follows the CedarPolicy objects with policy.source crd (set by its component), nil otherwise.
	policies *cedarPolicies
	// xds is the ADS server (set by the xds component); the admin API reports its sidecars.
	xds *xdsserver.Server
	reg *prometheus.Registry
	// metrics counts SVIDs, token exchanges and SETs (set by New before the components that count).
	metrics *metrics
	// components are started by Run in this order and stopped in reverse (newComponents).
	components []component
	closers    []func()
	// actions is the controller's audit log (records nothing without audit configured).
	actions *actionLog
	// kubernetes attests pods by service-account token (issuer.kubernetes); nil without it.
	kubernetes issuer.TokenAttestor
	// logLevel, when set, is served at the ops listener's /logging.
	logLevel *zap.AtomicLevel
	// started is set once Run has started every component, stopping when Run begins to stop: /readyz answers
	// 503 until the one and from the other on.
	started, stopping atomic.Bool
}

// Option adjusts a Controller at construction.
type Option func(*Controller)

// WithLogLevel serves lvl, the level of the logger given to New, at the ops listener's /logging.
func WithLogLevel(lvl zap.AtomicLevel) Option { return func(c *Controller) { c.logLevel = &lvl } }

// New opens the state store, loads (or creates) the CA, and provisions every component, binding its listeners.
// Nothing is served until Run.
func New(ctx context.Context, cfg *Config, log *zap.Logger, opts ...Option) (_ *Controller, err error) {
	c := &Controller{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
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
	if err := c.openState(ctx); err != nil {
		return nil, err
	}
	if err := c.openPublisher(); err != nil {
		return nil, err
	}
	c.reg.MustRegister(buildinfo.Read().Collector(), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.metrics = c.newMetrics()
	if err := c.provision(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// openState opens dataDir: the state store, the key store, the CA (bundle.pem written from it) and the
// controller's own SVID.
func (c *Controller) openState(ctx context.Context) (err error) {
	cfg := c.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("dataDir: %w", err)
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		return err
	}
	if c.store, err = c.openBackend(ctx); err != nil {
		return err
	}
	c.onClose(func() { _ = c.store.Close() })
	if c.keys, err = c.keyStore(); err != nil {
		return err
	}
	if c.ca, err = c.openCA(ctx); err != nil {
		return err
	}
	if err := writeBundle(filepath.Join(cfg.DataDir, "bundle.pem"), c.ca); err != nil {
		return err
	}
	if c.self, err = newSelfSVID(ctx, c.ca, wire.ControllerID(c.td), cfg.Issuer.SVIDTTL, c.log); err != nil {
		return err
	}
	c.onClose(c.self.stop)
	if c.actions, err = c.openAudit(); err != nil {
		return err
	}
	return nil
}

// openPublisher opens the xDS publisher over the store and publishes the trust bundle. Policies are compiled
// before they are stored, so a bad one never reaches a sidecar.
func (c *Controller) openPublisher() (err error) {
	// Policies are compiled before they are stored, so a bad one never reaches a sidecar.
	if c.state, err = state.New(c.store, state.Config{
		Validators: map[string]xds.Validator{agentauthv1.PolicyType: policy.ValidateResource},
		Logger:     c.log.Named("state"),
	}); err != nil {
		return err
	}
	c.onClose(c.state.Close)
	if c.pub, err = xdsserver.NewPublisher(c.store, xdsserver.PublisherConfig{Logger: c.log.Named("xds")}); err != nil {
		return err
	}
	c.onClose(c.pub.Close)
	if err := c.publishTrustBundle(context.Background()); err != nil {
		return err
	}
	return c.resolveStoredUsers()
}

// Run starts every component in order, serves until ctx ends (or a server fails, or the store breaks), then stops
// them in reverse order, gracefully within a deadline, and closes the state.
func (c *Controller) Run(ctx context.Context) error {
	defer c.close()
	failed := make(chan error, 1)
	fail := func(err error) {
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case failed <- err:
			default: // the first failure stops the controller; later ones are its consequences
			}
		}
	}
	var err error
	started := 0
	for _, comp := range c.components {
		if err = comp.start(ctx, fail); err != nil {
			break
		}
		started++
	}
	if err == nil {
		c.started.Store(true)
		c.log.Info("controller serving", c.servingFields()...)
		err = c.wait(ctx, failed)
	}
	c.stopping.Store(true)
	c.log.Info("controller stopping")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := started - 1; i >= 0; i-- {
		c.components[i].stop(shutdown)
	}
	return err
}

// wait returns when ctx ends (nil), a server fails, or the store breaks.
func (c *Controller) wait(ctx context.Context, failed <-chan error) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-failed:
		return err
	case <-c.store.Broken():
		err := fmt.Errorf("%w: %w", ErrStateCorrupt, c.store.Err())
		if c.bolt != nil {
			err = fmt.Errorf("%w; %s", err, restoreHint(c.bolt.Path()))
		}
		c.log.Error("the state store is damaged; stopping", zap.Error(err))
		return err
	}
}

// servingFields are the fields of the "controller serving" line: the trust domain, each component's endpoints,
// and the bundle sidecars' operators need.
func (c *Controller) servingFields() []zap.Field {
	fields := []zap.Field{zap.String("trust_domain", c.td.Name())}
	for _, comp := range c.components {
		if s, ok := comp.(serving); ok {
			fields = append(fields, s.logFields()...)
		}
	}
	return append(fields, zap.String("bundle", filepath.Join(c.cfg.DataDir, "bundle.pem")))
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
// device such as /dev/tpmrm0, or the Unix socket of a software TPM) that holds them, with only wrapped blobs on disk;
// with state.backend kubernetes, the shared state (backendKeys).
func (c *Controller) keyStore() (issuer.KeyStore, error) {
	if c.bolt == nil {
		return newBackendKeys(c.store), nil
	}
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
	c.onClose(func() { _ = ks.Close(); _ = tpm.Close() })
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

// writeBundle writes the CA's roots (issuer.CA.Roots: the active one first) as PEM: what an operator hands a
// sidecar to trust the controller first. The file is written under a new random name (O_EXCL: nothing planted
// is followed) and renamed into place.
func writeBundle(path string, ca *issuer.CA) (err error) {
	data := rootsPEM(ca)
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

// rootsPEM is the CA's roots (issuer.CA.Roots) as PEM.
func rootsPEM(ca *issuer.CA) []byte {
	var data []byte
	for _, r := range ca.Roots() {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})...)
	}
	return data
}

// trustBundle is the CA's trust bundle for xDS: every root and WIT signing key it trusts (active, prepared,
// retired until expiry). Its sequence grows with each rotation step that adds a root (2 × the active generation,
// +1 while a successor is prepared), so a replica still on an older CA state cannot roll the bundle back.
func trustBundle(ca *issuer.CA) *agentauthv1.TrustBundle {
	var jwks jose.JSONWebKeySet
	for kid, k := range ca.WITBundle().WITAuthorities() {
		jwks.Keys = append(jwks.Keys, jose.JSONWebKey{Key: k, KeyID: kid, Use: "wit-svid"})
	}
	slices.SortFunc(jwks.Keys, func(a, b jose.JSONWebKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	raw, _ := json.Marshal(jwks)
	b := &agentauthv1.TrustBundle{
		TrustDomain:        ca.TrustDomain().Name(),
		JwtAuthoritiesJwks: raw,
		Sequence:           1 + 2*int64(ca.Generation()),
	}
	if ca.Prepared() != nil {
		b.Sequence++
	}
	for _, r := range ca.Roots() {
		b.X509Authorities = append(b.X509Authorities, r.Raw)
	}
	return b
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
