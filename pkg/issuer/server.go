package issuer

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/netlimit"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Defaults for ServiceConfig.
const (
	DefaultSVIDTTL = time.Hour
	// maxRequestSize caps a request message: a CSR plus a public key plus a token, with room to spare.
	maxRequestSize = MaxCSRSize + MaxWITKeySize + 4<<10
)

// Limits of the issuer's gRPC servers. Attest needs no client certificate, so whoever reaches the port gets this
// much of the controller and no more.
const (
	// maxHeaderListSize caps a request's metadata (gRPC's default is 16 MiB): a workload sends a few short headers.
	maxHeaderListSize = 16 << 10
	// maxStreamsPerConn: a workload makes one call at a time.
	maxStreamsPerConn = 8
	// handshakeTimeout bounds the TLS handshake of a new connection.
	handshakeTimeout = 10 * time.Second
	// Workloads call once per half SVID lifetime: a connection idle this long is closed (they reconnect), and none
	// is kept longer than maxConnAge, so connections cannot be hoarded.
	maxConnIdle     = 2 * time.Minute
	maxConnAge      = 30 * time.Minute
	maxConnAgeGrace = 30 * time.Second
	// keepaliveMinTime: a client pinging more often than this, or pinging without a call in flight, is
	// disconnected.
	keepaliveMinTime = time.Minute
)

// serverOptions are the options of both issuer servers: creds, then the limits above (handshake and idle
// timeouts from cfg when set), then the caller's opts.
func serverOptions(creds credentials.TransportCredentials, cfg ServiceConfig, opts []grpc.ServerOption) []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(maxRequestSize),
		grpc.MaxHeaderListSize(maxHeaderListSize),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.ConnectionTimeout(cmp.Or(cfg.HandshakeTimeout, handshakeTimeout)),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: cmp.Or(cfg.MaxConnIdle, maxConnIdle), MaxConnectionAge: maxConnAge,
			MaxConnectionAgeGrace: maxConnAgeGrace,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime}),
	}, opts...)
}

// ServiceConfig configures the gRPC issuer service.
type ServiceConfig struct {
	// SVIDTTL is the lifetime of issued X.509-SVIDs; 0 means DefaultSVIDTTL.
	SVIDTTL time.Duration
	// WITTTL is the lifetime of issued WITs; 0 means SVIDTTL.
	WITTTL time.Duration
	// ServerID is the SPIFFE ID of the issuer's own TLS certificate, which clients authorize;
	// zero means spiffe://<trust domain>/agentauth/issuer.
	ServerID spiffeid.ID
	// PeerIDs maps Unix user ids to the SPIFFE ID a process of that user gets when it attests without a join
	// token on the local socket (NewLocalGRPCServer). A uid that is not listed is refused.
	PeerIDs map[uint32]spiffeid.ID
	// Withheld, when set, is asked before anything is issued (attestation or renewal): a workload whose
	// credentials are withheld (e.g. after a RISC account-disabled event) gets nothing, and the answer names why.
	Withheld func(ctx context.Context, id spiffeid.ID) (reason string, withheld bool)
	// RenewRefused, when set, is asked before a renewal, with the presented SVID's ID, serial (lower-case hex)
	// and issue time: credentials revoked in a way renewal must not undo (a reported key compromise, which whoever
	// stole the key could renew as well; a recycled identifier, whose previous holder must not pass for the new
	// one; a revoked certificate) renew nothing, and the workload attests again (a new join token, or the local
	// socket). The reason is sent to the workload.
	RenewRefused func(ctx context.Context, id spiffeid.ID, serial string, issuedAt time.Time) (reason string, refused bool)
	// HandshakeTimeout bounds a new connection's handshake; MaxConnIdle closes a connection without calls.
	// Zero: 10s and 2m.
	HandshakeTimeout, MaxConnIdle time.Duration
	// Kubernetes, when set, checks the service-account tokens of AttestRequest.kubernetes_token (pod attestation on
	// Kubernetes, pkg/issuer/k8sattest) and names the SPIFFE ID each proves; without it such requests are refused.
	Kubernetes TokenAttestor
	// AttestRate, when set, limits Attest calls per client IP (Attest needs no client certificate): a client
	// over it is refused with ResourceExhausted (autherr.ErrRateLimited). Renew, which needs a valid SVID, is not limited.
	AttestRate *netlimit.RateLimiter
	// Logger receives internal errors, whose text callers do not get; nil discards them.
	Logger *zap.Logger
}

// service implements agentauth.v1.IssuerService.
type service struct {
	// Embedded by value, as the generated code requires: a method added to the service answers Unimplemented
	// until it is implemented here.
	agentauthv1.UnimplementedIssuerServiceServer

	ca       *CA
	svidTTL  time.Duration
	witTTL   time.Duration
	server   spiffeid.ID
	peerIDs  map[uint32]spiffeid.ID
	withheld func(ctx context.Context, id spiffeid.ID) (string, bool)
	// renewRefused: see ServiceConfig.RenewRefused.
	renewRefused func(ctx context.Context, id spiffeid.ID, serial string, issuedAt time.Time) (string, bool)
	attestRate   *netlimit.RateLimiter
	kubernetes   TokenAttestor
	log          *zap.Logger

	certMu  sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

func newService(ca *CA, cfg ServiceConfig) (*service, error) {
	if ca == nil {
		return nil, errors.New("issuer: service needs a CA")
	}
	s := &service{ca: ca, svidTTL: cfg.SVIDTTL, witTTL: cfg.WITTTL, server: cfg.ServerID, peerIDs: cfg.PeerIDs,
		withheld: cfg.Withheld, renewRefused: cfg.RenewRefused, attestRate: cfg.AttestRate, kubernetes: cfg.Kubernetes,
		log: cfg.Logger}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.svidTTL == 0 {
		s.svidTTL = DefaultSVIDTTL
	}
	if s.witTTL == 0 {
		s.witTTL = s.svidTTL
	}
	if s.svidTTL < 0 || s.svidTTL > ca.maxTTL || s.witTTL < 0 || s.witTTL > ca.maxTTL {
		return nil, fmt.Errorf("issuer: SVIDTTL %v and WITTTL %v must be within (0, %v]", s.svidTTL, s.witTTL, ca.maxTTL)
	}
	if s.server.IsZero() {
		s.server = wire.IssuerID(ca.td)
	}
	for uid, id := range s.peerIDs {
		if !id.MemberOf(ca.td) || id.Path() == "" {
			return nil, fmt.Errorf("issuer: PeerIDs[%d] = %q is not a workload ID in trust domain %q", uid, id, ca.td)
		}
		if err := ca.checkReserved(id, s.server); err != nil {
			return nil, fmt.Errorf("issuer: PeerIDs[%d]: %w", uid, err)
		}
	}
	return s, nil
}

// NewGRPCServer returns a gRPC server for the issuer service on TLS: the server presents an X.509-SVID for
// cfg.ServerID (issued by ca and renewed at half its lifetime), Attest needs no client certificate, and Renew
// needs the client's current X.509-SVID. Request metadata, streams per connection, handshakes, idle and old
// connections and client pings are limited. opts are appended to the server's own options.
func NewGRPCServer(ca *CA, cfg ServiceConfig, opts ...grpc.ServerOption) (*grpc.Server, error) {
	s, err := newService(ca, cfg)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: s.getCertificate,
		// The client certificate is checked by Renew itself, so that a missing or invalid SVID gets an
		// answer saying what is wrong rather than a failed handshake, and Attest works without one.
		ClientAuth: tls.RequestClientCert,
	}
	if _, err := s.getCertificate(nil); err != nil {
		return nil, err
	}
	// A connection ends when the issuer's certificate or the client's expires (Renew also checks the client's
	// on every call).
	g := grpc.NewServer(serverOptions(mtls.GRPCCredentials(tlsConf, nil), cfg, opts)...)
	agentauthv1.RegisterIssuerServiceServer(g, s)
	return g, nil
}

// NewLocalGRPCServer returns a gRPC server for the issuer service on a local Unix socket without TLS: the
// socket file's permissions and the kernel's peer credentials stand in for it. Attest accepts a join token or,
// without one, maps the caller's uid through cfg.PeerIDs; Renew is refused (it needs mTLS).
func NewLocalGRPCServer(ca *CA, cfg ServiceConfig, opts ...grpc.ServerOption) (*grpc.Server, error) {
	s, err := newService(ca, cfg)
	if err != nil {
		return nil, err
	}
	g := grpc.NewServer(serverOptions(PeerCredentials(), cfg, opts)...)
	agentauthv1.RegisterIssuerServiceServer(g, s)
	return g, nil
}

// getCertificate returns the issuer's own TLS certificate, issuing a new one (with a new key) once the current
// one is past half its lifetime.
func (s *service) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.certMu.Lock()
	defer s.certMu.Unlock()
	if s.cert != nil && s.ca.now().Before(s.renewAt) {
		return s.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issuer: server key: %w", err)
	}
	chain, err := s.ca.IssueX509SVID(context.Background(), key.Public(), s.server, s.svidTTL)
	if err != nil {
		if s.cert != nil && s.ca.now().Before(s.cert.Leaf.NotAfter) {
			return s.cert, nil // keep serving the current certificate; the next handshake retries
		}
		return nil, fmt.Errorf("issuer: server certificate: %w", err)
	}
	leaf := chain[0]
	now := s.ca.now()
	s.cert = &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	s.renewAt = now.Add(leaf.NotAfter.Sub(now) / 2)
	return s.cert, nil
}

// Attest implements IssuerService.Attest. The request is checked completely before the join token is consumed,
// so a malformed request does not burn the token.
func (s *service) Attest(ctx context.Context, req *agentauthv1.AttestRequest) (*agentauthv1.AttestResponse, error) {
	if p, ok := peer.FromContext(ctx); ok && s.attestRate != nil && !s.attestRate.Allow(p.Addr.String()) {
		return nil, s.toStatus(codes.ResourceExhausted, fmt.Errorf("issuer: %w: too many Attest calls from this address; retry later", autherr.ErrRateLimited))
	}
	keys, err := parseKeys(s.ca, req.GetCsr(), req.GetWitPublicKey(), req.GetWitAlg())
	if err != nil {
		return nil, s.toStatus(codes.InvalidArgument, err)
	}
	var id spiffeid.ID
	switch {
	case req.GetKubernetesToken() != "" && req.GetJoinToken() != "":
		return nil, s.toStatus(codes.InvalidArgument, fmt.Errorf("issuer: %w: send a join token or a Kubernetes token, not both", autherr.ErrMalformed))
	case req.GetKubernetesToken() != "":
		if id, err = s.kubernetesID(ctx, req.GetKubernetesToken()); err != nil {
			return nil, err
		}
	case req.GetJoinToken() == "":
		if id, err = s.peerID(ctx); err != nil {
			return nil, s.toStatus(codes.Unauthenticated, err)
		}
	default:
		if id, err = s.ca.Attest(ctx, req.GetJoinToken()); err != nil {
			return nil, s.toStatus(codes.Unauthenticated, s.joinTokenRefusal(err))
		}
	}
	if err := s.checkWithheld(ctx, id); err != nil {
		return nil, err
	}
	creds, err := s.issue(ctx, id, keys)
	if err != nil {
		return nil, s.toStatus(codes.Internal, err)
	}
	return &agentauthv1.AttestResponse{Credentials: creds}, nil
}

// kubernetesID checks a Kubernetes service-account token with the TokenAttestor and returns the SPIFFE ID it
// proves, or the refusal as a status: an API server that cannot be reached is Unavailable (the sidecar retries).
func (s *service) kubernetesID(ctx context.Context, token string) (spiffeid.ID, error) {
	if s.kubernetes == nil {
		return spiffeid.ID{}, s.toStatus(codes.Unauthenticated, fmt.Errorf("issuer: %w: this controller does not attest Kubernetes service-account tokens (issuer.kubernetes is not configured)", autherr.ErrDenied))
	}
	id, err := s.kubernetes.AttestToken(ctx, token)
	if err != nil {
		code := codes.Unauthenticated
		if errors.Is(err, autherr.ErrUpstream) {
			code = codes.Unavailable
		}
		return spiffeid.ID{}, s.toStatus(code, err)
	}
	if !id.MemberOf(s.ca.td) || id.Path() == "" {
		return spiffeid.ID{}, s.toStatus(codes.Internal, fmt.Errorf("issuer: Kubernetes attestation named %q, not a workload ID in trust domain %q", id, s.ca.td))
	}
	if err := s.ca.checkReserved(id, s.server); err != nil {
		return spiffeid.ID{}, s.toStatus(codes.PermissionDenied, err)
	}
	return id, nil
}

// TokenAttestor checks a platform's workload token and names the SPIFFE ID it proves. Refusals wrap a pkg/autherr
// reason (autherr.ErrUpstream when the platform cannot be asked); errors without one are internal.
type TokenAttestor interface {
	AttestToken(ctx context.Context, token string) (spiffeid.ID, error)
}

// joinTokenRefusal answers an unknown, used or expired join token alike: which of these it is would tell whoever
// holds a guessed or stolen token whether it was ever valid or someone used it first. The log has the detail.
func (s *service) joinTokenRefusal(err error) error {
	switch autherr.Of(err) {
	case autherr.ErrReplay, autherr.ErrExpired, autherr.ErrDenied:
		s.log.Warn("issuer: join token refused", zap.Error(err))
		return fmt.Errorf("issuer: %w: join token refused: unknown, already used or expired", autherr.ErrDenied)
	}
	return err
}

// peerID maps the Unix peer credentials of a local-socket caller to its SPIFFE ID.
func (s *service) peerID(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, fmt.Errorf("issuer: %w: no join token", autherr.ErrMissing)
	}
	pc, ok := p.AuthInfo.(PeerCredInfo)
	if !ok {
		return spiffeid.ID{}, fmt.Errorf("issuer: %w: no join token (attesting by Unix peer credentials works only on the local socket)", autherr.ErrMissing)
	}
	id, ok := s.peerIDs[pc.UID]
	if !ok {
		return spiffeid.ID{}, fmt.Errorf("issuer: %w: Unix uid %d (pid %d) is not mapped to a SPIFFE ID", autherr.ErrDenied, pc.UID, pc.PID)
	}
	return id, nil
}

// Renew implements IssuerService.Renew: the identity is that of the client's verified X.509-SVID.
func (s *service) Renew(ctx context.Context, req *agentauthv1.RenewRequest) (*agentauthv1.RenewResponse, error) {
	id, leaf, err := s.clientID(ctx)
	if err != nil {
		return nil, s.toStatus(codes.Unauthenticated, err)
	}
	keys, err := parseKeys(s.ca, req.GetCsr(), req.GetWitPublicKey(), req.GetWitAlg())
	if err != nil {
		return nil, s.toStatus(codes.InvalidArgument, err)
	}
	if err := checkFreshKeys(leaf, keys); err != nil {
		return nil, s.toStatus(codes.InvalidArgument, err)
	}
	if err := s.checkWithheld(ctx, id); err != nil {
		return nil, err
	}
	if s.renewRefused != nil {
		// This CA backdates NotBefore; the SVID was issued that much later.
		serial := hex.EncodeToString(leaf.SerialNumber.Bytes())
		if reason, ok := s.renewRefused(ctx, id, serial, leaf.NotBefore.Add(backdate)); ok {
			return nil, s.toStatus(codes.PermissionDenied, fmt.Errorf("issuer: %w: this X.509-SVID of %q (serial %s) "+
				"cannot renew: %s; attest again with a new join token or on the local socket", autherr.ErrRevoked, id, serial, reason))
		}
	}
	creds, err := s.issue(ctx, id, keys)
	if err != nil {
		return nil, s.toStatus(codes.Internal, err)
	}
	return &agentauthv1.RenewResponse{Credentials: creds}, nil
}

// checkWithheld refuses to issue to a workload whose credentials are withheld.
func (s *service) checkWithheld(ctx context.Context, id spiffeid.ID) error {
	if s.withheld == nil {
		return nil
	}
	if reason, ok := s.withheld(ctx, id); ok {
		return s.toStatus(codes.PermissionDenied, fmt.Errorf("issuer: %w: credentials of %q are withheld: %s", autherr.ErrRevoked, id, reason))
	}
	return nil
}

// clientID verifies the client certificate of an mTLS connection as an X.509-SVID of this CA's trust domain and
// returns its SPIFFE ID and leaf.
func (s *service) clientID(ctx context.Context) (spiffeid.ID, *x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	var certs []*x509.Certificate
	if ok {
		if ti, isTLS := p.AuthInfo.(credentials.TLSInfo); isTLS {
			certs = ti.State.PeerCertificates
		}
	}
	if len(certs) == 0 {
		return spiffeid.ID{}, nil, fmt.Errorf("issuer: %w: Renew needs the client's current X.509-SVID over mTLS; a new workload attests with a join token first", autherr.ErrMissing)
	}
	id, _, err := x509svid.Verify(certs, s.ca.X509Bundle(), x509svid.WithTime(s.ca.now()))
	if err != nil {
		reason := autherr.ErrUntrustedIssuer
		if now := s.ca.now(); now.After(certs[0].NotAfter) {
			reason = autherr.ErrExpired
		}
		return spiffeid.ID{}, nil, fmt.Errorf("issuer: %w: client certificate is not a valid X.509-SVID of %q: %v", reason, s.ca.td, err)
	}
	if err := s.ca.checkReserved(id, s.server); err != nil {
		return spiffeid.ID{}, nil, err
	}
	return id, certs[0], nil
}

// checkFreshKeys refuses a renewal that would certify the key of the presented SVID again, for X.509 or for the
// WIT: a renewal comes with a new key (WIMSE credentials §2.6), or whoever once copied the key keeps up with every
// renewal.
func checkFreshKeys(leaf *x509.Certificate, k requestKeys) error {
	if publicKeyEqual(leaf.PublicKey, k.x509) {
		return fmt.Errorf("issuer: %w: the CSR is for the key of the X.509-SVID presented (serial %x); renew with a new key",
			autherr.ErrReplay, leaf.SerialNumber)
	}
	if k.wit != nil && publicKeyEqual(leaf.PublicKey, k.wit) {
		return fmt.Errorf("issuer: %w: wit_public_key is the key of the X.509-SVID presented (serial %x); renew with a new key",
			autherr.ErrReplay, leaf.SerialNumber)
	}
	return nil
}

type requestKeys struct {
	x509   crypto.PublicKey
	wit    crypto.PublicKey // nil: no WIT requested
	witAlg string
}

// parseKeys parses a request's keys and checks the WIT key against ca's policy, before anything is spent on it.
func parseKeys(ca *CA, csr, witKey []byte, witAlg string) (requestKeys, error) {
	var k requestKeys
	var err error
	if k.x509, err = ParseCSR(csr); err != nil {
		return k, err
	}
	if len(witKey) == 0 {
		if witAlg != "" {
			return k, fmt.Errorf("issuer: %w: wit_alg %q given without wit_public_key", autherr.ErrMalformed, witAlg)
		}
		return k, nil
	}
	if k.wit, err = ParseWITKey(witKey, witAlg); err != nil {
		return k, err
	}
	if err := ca.checkWITPolicy(witAlg); err != nil {
		return k, err
	}
	k.witAlg = witAlg
	return k, nil
}

func (s *service) issue(ctx context.Context, id spiffeid.ID, k requestKeys) (*agentauthv1.Credentials, error) {
	if err := s.ca.checkReserved(id, s.server); err != nil {
		return nil, err
	}
	chain, err := s.ca.IssueX509SVID(ctx, k.x509, id, s.svidTTL)
	if err != nil {
		return nil, err
	}
	creds := &agentauthv1.Credentials{SpiffeId: id.String()}
	for _, r := range s.ca.Roots() {
		creds.X509Bundle = append(creds.X509Bundle, r.Raw)
	}
	for _, c := range chain {
		creds.SvidChain = append(creds.SvidChain, c.Raw)
	}
	expires := chain[0].NotAfter
	if k.wit != nil {
		wit, exp, err := s.ca.issueWIT(ctx, id, k.wit, k.witAlg, s.witTTL)
		if err != nil {
			return nil, err
		}
		creds.Wit = wit
		if exp.Before(expires) {
			expires = exp
		}
	}
	if creds.JwtBundle, err = s.ca.JWTBundle().Marshal(); err != nil {
		return nil, fmt.Errorf("issuer: encoding JWT bundle: %w", err)
	}
	creds.ExpiresAt = timestamppb.New(expires)
	return creds, nil
}

// toStatus turns err into a gRPC status. Refusals keep their code (Unauthenticated, InvalidArgument) and carry
// the autherr reason in an ErrorInfo detail; errors that wrap no reason are internal, whatever code was asked.
// An internal error's text (store, file system, key store) stays in the log: callers, who may be anonymous, get a
// generic message.
func (s *service) toStatus(code codes.Code, err error) error {
	r := autherr.Of(err)
	if r == nil {
		s.log.Error("issuer: request failed", zap.Error(err))
		return status.Error(codes.Internal, "issuer: internal error; the controller's log has the detail")
	}
	if r == autherr.ErrDenied {
		code = codes.PermissionDenied
	}
	st := status.New(code, err.Error())
	if r != nil {
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: r.Code(), Domain: wire.ErrorDomain}); derr == nil {
			st = d
		}
	}
	return st.Err()
}
