package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/local"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/atomicfile"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/issuer/issuerclient"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Defaults for IssuerConfig.
const (
	DefaultRetryMin    = time.Second
	DefaultRetryMax    = time.Minute
	issuerCallTimeout  = 30 * time.Second
	issuerWITAlg       = "ES256" // the default workload key algorithm of IssuerConfig.WITAlg
	stateCertFile      = "svid.pem"
	stateKeyFile       = "svid.key"
	stateBundleFile    = "bundle.pem"
	stateWITFile       = "wit.jwt"
	stateWITKeyFile    = "wit.key"
	stateJWTBundleFile = "jwt-bundle.json"
	rotationJitterPart = 10 // jitter is ±1/10 of the wait before a rotation
)

// IssuerConfig configures NewIssuerSource.
type IssuerConfig struct {
	// Address is host:port of the issuer's TLS endpoint (required).
	Address string
	// Bundle holds the X.509 authorities that authenticate the issuer before this source has credentials of its
	// own (required). Afterwards the bundle the issuer returns is used.
	Bundle *x509bundle.Bundle
	// ServerID is the issuer's SPIFFE ID; zero means wire.IssuerID of Bundle's trust domain.
	ServerID spiffeid.ID
	// JoinToken is the one-time token for the first attestation. It is not needed when StateDir holds a valid
	// SVID from an earlier run, or with LocalSocket.
	JoinToken string
	// KubernetesTokenFile, when set, is the pod's projected service-account token (made for the controller's
	// audience): without a valid SVID and without a join token, this source attests with it, and the controller
	// checks it with the Kubernetes API. The file is read again at each attestation, as the kubelet rotates it.
	KubernetesTokenFile string
	// LocalSocket, when set, is the path of the issuer's local Unix socket: without a valid SVID and without a
	// join token, this source attests there, where the controller maps this process's uid (the kernel's peer
	// credentials) to its SPIFFE ID. That connection does not authenticate the controller, so the SVID must
	// verify against Bundle, and it is renewed over mTLS on Address at once for bundles and a WIT to trust.
	LocalSocket string
	// StateDir, when set, keeps the current SVID, its key and the bundle (mode 0600, directory 0700) so a
	// restart renews with them instead of needing a new join token; and the WIT, its key and the WIT signing keys,
	// so a sidecar restarted while the issuer is unreachable still signs and verifies proofs until they expire.
	StateDir string
	// WITAlg is the workload key algorithm of the WIT (its cnf.jwk.alg): "ES256" (a P-256 key, the default) or
	// "EdDSA" (an Ed25519 key, which the issuer certifies only where the trust domain's policy allows it; peers on
	// the SPIFFE WIT-SVID profile refuse it). The X.509-SVID key stays P-256 either way.
	WITAlg string
	// RetryMin and RetryMax bound the backoff between failed attempts; 0 means the defaults.
	RetryMin, RetryMax time.Duration
	// Observer hears of rotations and failures (optional).
	Observer Observer
	// DialOptions are added to each connection to the issuer (the transport credentials are set here).
	DialOptions []grpc.DialOption
}

// IssuerSource is a Source fed by the controller's built-in issuer: it attests once with a join token, a
// Kubernetes service-account token or on the issuer's local socket (or renews an SVID kept in StateDir), then
// renews over mTLS at about half of each lifetime, with jitter, generating fresh X.509 and WIT keys every time. Failed renewals are retried with backoff
// while the current credentials stay in use until they expire.
type IssuerSource struct {
	cfg      IssuerConfig
	serverID spiffeid.ID
	state    atomic.Pointer[issuerState]
	updates  *notifier

	tokenMu sync.Mutex
	token   string // cleared once used

	rotateMu sync.Mutex // one rotation at a time: the renewal loop and Renew

	cancel context.CancelFunc
	done   chan struct{}
}

type issuerState struct {
	svid     *x509svid.SVID
	x509     *x509bundle.Bundle
	jwt      *jwtbundle.Bundle
	wit      *witbundle.Bundle
	witCred  *WIT
	received time.Time
	expires  time.Time
}

// NewIssuerSource obtains first credentials (failing if it cannot and StateDir holds no valid SVID) and starts
// rotating them in the background until Close.
func NewIssuerSource(ctx context.Context, cfg IssuerConfig) (*IssuerSource, error) {
	if cfg.Address == "" || cfg.Bundle == nil {
		return nil, errors.New("identity: IssuerConfig needs Address and Bundle")
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(DefaultRetryMax, cfg.RetryMin)
	}
	if cfg.Observer == nil {
		cfg.Observer = ObserverFuncs{}
	}
	switch cfg.WITAlg {
	case "":
		cfg.WITAlg = issuerWITAlg
	case "ES256", "EdDSA":
	default:
		return nil, fmt.Errorf("identity: %w: IssuerConfig.WITAlg %q is not ES256 or EdDSA", autherr.ErrUnsupportedAlg, cfg.WITAlg)
	}
	s := &IssuerSource{cfg: cfg, serverID: cfg.ServerID, updates: newNotifier(), token: cfg.JoinToken, done: make(chan struct{})}
	if s.serverID.IsZero() {
		s.serverID = wire.IssuerID(cfg.Bundle.TrustDomain())
	}
	if cfg.StateDir != "" {
		if st, err := s.loadState(time.Now()); err == nil {
			s.state.Store(st)
		} else if !errors.Is(err, os.ErrNotExist) {
			cfg.Observer.RotationFailed(fmt.Errorf("identity: ignoring saved issuer state: %w", err))
		}
	}
	backoff := time.Duration(0)
	if err := s.rotate(ctx); err != nil {
		if s.state.Load() == nil {
			return nil, err
		}
		cfg.Observer.RotationFailed(err) // serve the saved SVID; the loop retries
		backoff = cfg.RetryMin
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(runCtx, backoff)
	return s, nil
}

// run renews at about half of the remaining lifetime and retries failures with capped exponential backoff.
func (s *IssuerSource) run(ctx context.Context, backoff time.Duration) {
	defer close(s.done)
	for {
		var wait time.Duration
		if backoff > 0 {
			wait = jitter(backoff)
		} else {
			st := s.state.Load()
			wait = jitter(st.expires.Sub(st.received) / 2)
			wait -= time.Since(st.received)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.rotate(ctx); err != nil {
			s.cfg.Observer.RotationFailed(err)
			backoff = min(max(backoff*2, s.cfg.RetryMin), s.cfg.RetryMax)
			continue
		}
		backoff = 0
	}
}

// jitter returns d moved randomly by up to ±d/10, so that sidecars started together do not renew together.
func jitter(d time.Duration) time.Duration {
	spread := int64(d) / rotationJitterPart
	if spread <= 0 {
		return d
	}
	n, err := rand.Int(rand.Reader, big.NewInt(2*spread+1))
	if err != nil {
		return d
	}
	return d + time.Duration(n.Int64()-spread)
}

// Renew fetches fresh credentials now rather than at half their lifetime, as when this workload's current ones
// were revoked with a re-issue (a revocation with not_before). On failure the current credentials stay in use.
func (s *IssuerSource) Renew(ctx context.Context) error {
	if err := s.rotate(ctx); err != nil {
		s.cfg.Observer.RotationFailed(err)
		return err
	}
	return nil
}

// rotate fetches new credentials with fresh keys (Renew with the current valid SVID, else Attest with the join
// token, else attest on the local socket and renew at once), checks them, swaps them in, saves them and signals the
// change.
func (s *IssuerSource) rotate(ctx context.Context) error {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, issuerCallTimeout)
	defer cancel()
	keys, err := newRotationKeys(s.cfg.WITAlg)
	if err != nil {
		return err
	}
	now := time.Now()
	creds, cur, err := s.fetch(ctx, keys, s.state.Load(), now)
	if err != nil {
		return err
	}
	return s.install(creds, keys, cur, now)
}

// rotationKeys are the fresh keys one rotation asks credentials for: the X.509-SVID's (and its CSR) and the WIT's.
type rotationKeys struct {
	x509   *ecdsa.PrivateKey
	csr    []byte
	wit    crypto.Signer
	witAlg string
	witPub []byte // PKIX DER
}

// newRotationKeys generates the keys of one rotation, the WIT's for witAlg (ES256 or EdDSA).
func newRotationKeys(witAlg string) (*rotationKeys, error) {
	x509Key, csr, err := newCSR()
	if err != nil {
		return nil, err
	}
	var witKey crypto.Signer
	if witAlg == "EdDSA" {
		_, witKey, err = ed25519.GenerateKey(rand.Reader)
	} else {
		witKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: issuer: %w", err)
	}
	witPub, err := x509.MarshalPKIXPublicKey(witKey.Public())
	if err != nil {
		return nil, fmt.Errorf("identity: issuer: %w", err)
	}
	return &rotationKeys{x509: x509Key, csr: csr, wit: witKey, witAlg: witAlg, witPub: witPub}, nil
}

// fetch asks the issuer for credentials for keys: Renew with cur's SVID while it is valid; otherwise it
// bootstraps first. It returns the state the credentials must continue (cur, or the local socket's SVID).
func (s *IssuerSource) fetch(ctx context.Context, keys *rotationKeys, cur *issuerState, now time.Time) (*agentauthv1.Credentials, *issuerState, error) {
	if cur == nil || !now.Before(cur.svid.Certificates[0].NotAfter) {
		creds, next, err := s.bootstrap(ctx, keys, cur)
		if err != nil || creds != nil {
			return creds, cur, err
		}
		cur = next
	}
	var creds *agentauthv1.Credentials
	conf := tlsconfig.MTLSClientConfig(cur.svid, cur.x509, tlsconfig.AuthorizeID(s.serverID))
	if err := s.call(conf, func(c *issuerclient.Client) (err error) {
		creds, err = c.Renew(ctx, &agentauthv1.RenewRequest{Csr: keys.csr, WitPublicKey: keys.witPub, WitAlg: keys.witAlg})
		return err
	}); err != nil {
		return nil, nil, err
	}
	return creds, cur, nil
}

// bootstrap runs when there is no valid SVID to renew with: it attests with the join token (and returns the
// credentials), or attests on the local socket (and returns a state holding that SVID, to renew with at once).
func (s *IssuerSource) bootstrap(ctx context.Context, keys *rotationKeys, cur *issuerState) (*agentauthv1.Credentials, *issuerState, error) {
	s.tokenMu.Lock()
	token := s.token
	s.tokenMu.Unlock()
	bundle := s.cfg.Bundle
	if cur != nil {
		bundle = cur.x509
	}
	switch {
	case token != "":
		var creds *agentauthv1.Credentials
		conf := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(s.serverID))
		err := s.call(conf, func(c *issuerclient.Client) (err error) {
			creds, err = c.Attest(ctx, &agentauthv1.AttestRequest{JoinToken: token, Csr: keys.csr, WitPublicKey: keys.witPub, WitAlg: keys.witAlg})
			return err
		})
		if err == nil || errors.Is(err, autherr.ErrReplay) || errors.Is(err, autherr.ErrExpired) || errors.Is(err, autherr.ErrDenied) {
			s.tokenMu.Lock()
			s.token = "" // spent or dead: never send it again
			s.tokenMu.Unlock()
		}
		if err != nil {
			return nil, nil, err
		}
		return creds, nil, nil
	case s.cfg.KubernetesTokenFile != "":
		k8sToken, err := readTokenFile(s.cfg.KubernetesTokenFile)
		if err != nil {
			return nil, nil, err
		}
		var creds *agentauthv1.Credentials
		conf := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(s.serverID))
		if err := s.call(conf, func(c *issuerclient.Client) (err error) {
			creds, err = c.Attest(ctx, &agentauthv1.AttestRequest{KubernetesToken: k8sToken, Csr: keys.csr, WitPublicKey: keys.witPub, WitAlg: keys.witAlg})
			return err
		}); err != nil {
			return nil, nil, err
		}
		return creds, nil, nil
	case s.cfg.LocalSocket != "":
		svid, err := s.attestLocal(ctx, bundle)
		if err != nil {
			return nil, nil, err
		}
		// The local socket does not authenticate the controller: the SVID was checked against a bundle we
		// already trusted, but the bundles and WIT that came with it were not. Renewing with that SVID over
		// mTLS authenticates the controller and brings bundles and a WIT to trust; the local SVID is not
		// kept, so nothing from the unauthenticated answer is ever served.
		return nil, &issuerState{svid: svid, x509: bundle}, nil
	default:
		return nil, nil, fmt.Errorf("identity: issuer: %w: no valid SVID to renew with, no unused join token, no Kubernetes token file and no local socket; the sidecar needs a new join token", autherr.ErrMissing)
	}
}

// install checks creds against keys and cur (same SVID ID, the bootstrap trust domain), swaps them in, saves them
// and signals the change. received is when the rotation began.
func (s *IssuerSource) install(creds *agentauthv1.Credentials, keys *rotationKeys, cur *issuerState, received time.Time) error {
	is, err := issuerclient.VerifyCredentials(creds, keys.x509.Public(), keys.wit.Public(), time.Now())
	if err != nil {
		return fmt.Errorf("identity: issuer returned unusable credentials: %w", err)
	}
	if cur != nil && is.ID != cur.svid.ID {
		return fmt.Errorf("identity: issuer: %w: renewed SVID is for %s, the current one for %s", autherr.ErrMismatch, is.ID, cur.svid.ID)
	}
	if is.ID.TrustDomain() != s.cfg.Bundle.TrustDomain() {
		return fmt.Errorf("identity: issuer: %w: SVID is for trust domain %q, the bootstrap bundle for %q", autherr.ErrMismatch, is.ID.TrustDomain(), s.cfg.Bundle.TrustDomain())
	}
	next := &issuerState{
		svid:     &x509svid.SVID{ID: is.ID, Certificates: is.Chain, PrivateKey: keys.x509},
		x509:     is.X509Bundle,
		jwt:      is.JWTBundle,
		wit:      witbundle.FromWITAuthorities(is.ID.TrustDomain(), is.JWTBundle.JWTAuthorities()),
		witCred:  &WIT{Token: is.WIT, Key: keys.wit, Alg: keys.witAlg, Subject: is.ID.String(), Expiry: is.WITExpiry},
		received: received,
		expires:  is.ExpiresAt,
	}
	s.state.Store(next)
	if s.cfg.StateDir != "" {
		if err := s.saveState(next); err != nil {
			s.cfg.Observer.RotationFailed(fmt.Errorf("identity: saving issuer state (credentials are in use, a restart will need a new join token): %w", err))
		}
	}
	// Observers first: whoever wakes on the signal sees the rotation counted.
	s.cfg.Observer.Rotated(StatusOf(s))
	s.updates.notify()
	return nil
}

// attestLocal attests on the issuer's local Unix socket, where the controller knows this process by the kernel's
// peer credentials (its uid) instead of a join token, and returns an X.509-SVID (no WIT) that verifies against
// trust.
func (s *IssuerSource) attestLocal(ctx context.Context, trust *x509bundle.Bundle) (*x509svid.SVID, error) {
	key, csr, err := newCSR()
	if err != nil {
		return nil, err
	}
	sock := s.cfg.LocalSocket
	// Local credentials: the socket stands in for TLS, and the server reads this process's uid from it.
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(local.NewCredentials())}, s.cfg.DialOptions...)
	cc, err := grpc.NewClient("unix://"+sock, opts...)
	if err != nil {
		return nil, fmt.Errorf("identity: issuer local socket %s: %w", sock, err)
	}
	defer cc.Close()
	creds, err := issuerclient.NewClient(cc).Attest(ctx, &agentauthv1.AttestRequest{Csr: csr})
	if err != nil {
		return nil, fmt.Errorf("identity: issuer local socket %s: %w", sock, err)
	}
	is, err := issuerclient.VerifyCredentials(creds, key.Public(), nil, time.Now())
	if err != nil {
		return nil, fmt.Errorf("identity: issuer local socket %s returned unusable credentials: %w", sock, err)
	}
	// Whoever answered on the socket is not authenticated: only a chain to an authority we already trust counts.
	if _, _, err := x509svid.Verify(is.Chain, trust, x509svid.WithTime(time.Now())); err != nil {
		return nil, fmt.Errorf("identity: issuer local socket %s: %w: the SVID for %s does not verify against the bootstrap bundle of %q: %v",
			sock, autherr.ErrUntrustedIssuer, is.ID, trust.TrustDomain(), err)
	}
	return &x509svid.SVID{ID: is.ID, Certificates: is.Chain, PrivateKey: key}, nil
}

// maxTokenFileSize bounds the service-account token file read; such tokens are about 1 KB.
const maxTokenFileSize = 16 << 10

// readTokenFile reads a service-account token file, trimmed of surrounding white space.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("identity: Kubernetes service-account token: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileSize+1))
	if err != nil {
		return "", fmt.Errorf("identity: Kubernetes service-account token %s: %w", path, err)
	}
	if len(data) > maxTokenFileSize {
		return "", fmt.Errorf("identity: Kubernetes service-account token %s is larger than %d bytes", path, maxTokenFileSize)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("identity: %w: Kubernetes service-account token %s is empty", autherr.ErrMissing, path)
	}
	return token, nil
}

// newCSR generates a fresh P-256 key and a CSR for it (the issuer takes only the key from it).
func newCSR() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: issuer: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: issuer: CSR: %w", err)
	}
	return key, csr, nil
}

// call runs fn on a fresh connection to the issuer with TLS configuration conf. Rotations are minutes apart, so a
// connection per call costs nothing worth keeping one open for, and each call gets the current client SVID.
func (s *IssuerSource) call(conf *tls.Config, fn func(*issuerclient.Client) error) error {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(mtls.GRPCCredentials(conf, nil))}, s.cfg.DialOptions...)
	cc, err := grpc.NewClient(s.cfg.Address, opts...)
	if err != nil {
		return fmt.Errorf("identity: issuer %s: %w", s.cfg.Address, err)
	}
	defer cc.Close()
	return fn(issuerclient.NewClient(cc))
}

// GetX509SVID implements x509svid.Source.
func (s *IssuerSource) GetX509SVID() (*x509svid.SVID, error) { return s.state.Load().svid, nil }

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *IssuerSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.state.Load().x509.GetX509BundleForTrustDomain(td)
}

// GetJWTBundleForTrustDomain implements jwtbundle.Source. It holds the issuer's WIT signing keys, which is where
// pkg/wpt looks for them.
func (s *IssuerSource) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	return s.state.Load().jwt.GetJWTBundleForTrustDomain(td)
}

// GetWITBundleForTrustDomain implements witbundle.Source.
func (s *IssuerSource) GetWITBundleForTrustDomain(td spiffeid.TrustDomain) (*witbundle.Bundle, error) {
	return s.state.Load().wit.GetWITBundleForTrustDomain(td)
}

// GetWIT implements Source.
func (s *IssuerSource) GetWIT() (*WIT, error) {
	w := s.state.Load().witCred
	if w == nil || w.Token == "" {
		return nil, fmt.Errorf("%w: the saved state has no WIT yet; it comes with the next renewal", ErrNoWIT)
	}
	return checkWIT(w, time.Now())
}

// Updated implements Source.
func (s *IssuerSource) Updated() <-chan struct{} { return s.updates.wait() }

// Close stops rotating. The last credentials stay readable.
func (s *IssuerSource) Close() error {
	s.cancel()
	<-s.done
	return nil
}

func (s *IssuerSource) trustDomains() []spiffeid.TrustDomain {
	return []spiffeid.TrustDomain{s.state.Load().x509.TrustDomain()}
}

// saveState writes the SVID, its key and the X.509 bundle to StateDir, each file replaced atomically.
func (s *IssuerSource) saveState(st *issuerState) error {
	if err := os.MkdirAll(s.cfg.StateDir, 0o700); err != nil {
		return err
	}
	certPEM, keyPEM, err := st.svid.Marshal()
	if err != nil {
		return err
	}
	bundlePEM, err := st.x509.Marshal()
	if err != nil {
		return err
	}
	files := map[string][]byte{stateCertFile: certPEM, stateKeyFile: keyPEM, stateBundleFile: bundlePEM}
	if w := st.witCred; w != nil && w.Token != "" {
		der, err := x509.MarshalPKCS8PrivateKey(w.Key)
		if err != nil {
			return err
		}
		jwks, err := st.jwt.Marshal()
		if err != nil {
			return err
		}
		files[stateWITFile] = []byte(w.Token + "\n")
		files[stateWITKeyFile] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		files[stateJWTBundleFile] = jwks
	}
	for name, data := range files {
		if err := atomicfile.Write(filepath.Join(s.cfg.StateDir, name), data); err != nil {
			return err
		}
	}
	return nil
}

// loadState reads what saveState wrote; an SVID that has expired at now is an error.
func (s *IssuerSource) loadState(now time.Time) (*issuerState, error) {
	dir := s.cfg.StateDir
	keyInfo, err := os.Stat(filepath.Join(dir, stateKeyFile))
	if err != nil {
		return nil, err
	}
	if keyInfo.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %v: group or others may read the key", stateKeyFile, keyInfo.Mode().Perm())
	}
	svid, err := x509svid.Load(filepath.Join(dir, stateCertFile), filepath.Join(dir, stateKeyFile))
	if err != nil {
		return nil, err
	}
	b, err := x509bundle.Load(svid.ID.TrustDomain(), filepath.Join(dir, stateBundleFile))
	if err != nil {
		return nil, err
	}
	if _, _, err := x509svid.Verify(svid.Certificates, b, x509svid.WithTime(now)); err != nil {
		return nil, fmt.Errorf("saved SVID is no longer valid: %w", err)
	}
	st := &issuerState{
		svid: svid, x509: b,
		jwt:      jwtbundle.New(svid.ID.TrustDomain()),
		wit:      witbundle.New(svid.ID.TrustDomain()),
		received: now,
		expires:  svid.Certificates[0].NotAfter,
	}
	// The WIT is optional (older state directories, or it has expired): without it the sidecar waits for the
	// next renewal, as before.
	if w, jwt, err := loadStateWIT(dir, svid.ID, now); err == nil {
		st.witCred, st.jwt = w, jwt
		st.wit = witbundle.FromWITAuthorities(svid.ID.TrustDomain(), jwt.JWTAuthorities())
	}
	return st, nil
}

// loadStateWIT reads the saved WIT, its key and the WIT signing keys; the WIT must be for id and unexpired at now.
func loadStateWIT(dir string, id spiffeid.ID, now time.Time) (*WIT, *jwtbundle.Bundle, error) {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	keyPEM, err := read(stateWITKeyFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	token, err := read(stateWITFile)
	if err != nil {
		return nil, nil, err
	}
	w, err := parseWIT(strings.TrimSpace(string(token)), key, now)
	if err != nil {
		return nil, nil, err
	}
	if w.Subject != id.String() {
		return nil, nil, fmt.Errorf("saved WIT is for %s, the saved SVID for %s", w.Subject, id)
	}
	jwks, err := read(stateJWTBundleFile)
	if err != nil {
		return nil, nil, err
	}
	jwt, err := jwtbundle.Parse(id.TrustDomain(), jwks)
	if err != nil {
		return nil, nil, err
	}
	return w, jwt, nil
}

var _ Source = (*IssuerSource)(nil)
