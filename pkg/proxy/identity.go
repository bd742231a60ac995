package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Peer is the other end of an inbound connection.
type Peer struct {
	// ID is the SPIFFE ID in the peer's verified client certificate; zero without one.
	ID spiffeid.ID
	// TLS is the connection state; nil over cleartext.
	TLS        *tls.ConnectionState
	RemoteAddr string

	// xfcc is the X-Forwarded-Client-Cert element for this peer, when peerCache computed it.
	xfcc string
}

// peerCache remembers what ingress derives from a client certificate — its SPIFFE ID and the XFCC element — per
// certificate value. Every request on a connection carries the same *x509.Certificate (crypto/tls even shares one
// parsed certificate between connections presenting the same bytes), so the URI SAN parsing, the SHA-256 of the
// leaf and the XFCC string are done once per certificate instead of once per request. Both facts are functions of
// the certificate's immutable contents. The cache is bounded: when full it starts over.
type peerCache struct {
	self string // our own SPIFFE ID, XFCC By=
	max  int64
	m    sync.Map
	n    atomic.Int64
}

// maxCachedPeers bounds peerCache; a sidecar's callers are a handful of workloads.
const maxCachedPeers = 1024

func newPeerCache(self string) *peerCache { return &peerCache{self: self, max: maxCachedPeers} }

type peerFacts struct {
	id   spiffeid.ID
	xfcc string
}

// peerOf reads the peer of r. The listener's tls.Config must have verified the chain (pkg/mtls does, with
// go-spiffe); here we only read the ID from the leaf. A leaf without a usable SPIFFE ID leaves ID zero.
func (c *peerCache) peerOf(r *http.Request) *Peer {
	p := &Peer{TLS: r.TLS, RemoteAddr: r.RemoteAddr}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return p
	}
	leaf := r.TLS.PeerCertificates[0]
	if f, ok := c.m.Load(leaf); ok {
		facts := f.(*peerFacts)
		p.ID, p.xfcc = facts.id, facts.xfcc
		return p
	}
	if id, err := x509svid.IDFromCert(leaf); err == nil {
		p.ID = id
	}
	p.xfcc = xfcc(p, c.self)
	if c.n.Add(1) > c.max {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(leaf, &peerFacts{id: p.ID, xfcc: p.xfcc})
	return p
}

// Identity is what ingress verified about the caller.
type Identity struct {
	// Subject is the verified workload identifier (WIT sub, or the peer's SPIFFE ID for mTLS alone).
	Subject string
	// Method is wire.AuthMTLS, wire.AuthWITWPT or wire.AuthWITHTTPSig.
	Method wire.AuthMethod
	// PeerID is the mTLS peer's SPIFFE ID when the caller presented a client certificate, and PeerCert that
	// verified certificate (for revocation by serial).
	PeerID   string
	PeerCert *x509.Certificate
	// SubjectKind, DelegatedSubject and TransactionID come from a verified Txn-Token, when there is one.
	// SubjectKind says who its subject is to the caller: "user" (an agent acts for a user), "self" (the agent
	// acts for itself) or "system" (the transaction began with another workload acting for itself).
	// DelegatedSubject is that subject when someone delegated ("user" or "system"), and empty for "self".
	SubjectKind      string
	DelegatedSubject string
	TransactionID    string
	// ProofID is the WPT jti or the signature nonce, for audit correlation.
	ProofID string
	// Expiry is when the credential stops being valid.
	Expiry time.Time
	// IssuedAt is when the caller's WIT was issued (zero for mTLS alone): revocations "issued before" are
	// judged by it. WITID is that WIT's jti.
	IssuedAt time.Time
	WITID    string
	// DelegatedClaims (as strings) and DelegatedIssuedAt (when its subject authenticated) come from a verified
	// Txn-Token, when there is one.
	DelegatedClaims   map[string]string
	DelegatedIssuedAt time.Time
	// VerifyBody, set by an Authenticator whose proof covers the body (an HTTP signature's Content-Digest),
	// checks the body against the proof and completes the verification (a nonce is consumed only then). Ingress
	// reads the body only after Authenticate succeeded, buffers it within Limits.MaxBufferedBody and
	// MaxBufferedBodies, and calls VerifyBody before any later step; a refusal from it refuses the request.
	VerifyBody func(body []byte) error
}

// Decision is an authorization outcome. Reason says why, in words an operator can act on.
type Decision struct {
	Allowed   bool
	PolicyIDs []string
	Reason    string
	// MCPMethod and MCPName name the MCP calls decided (JSON-RPC method; tool or prompt name, or resource URI),
	// comma-separated for a batch; Risk is the risk level the decision saw. For the decision record.
	MCPMethod string
	MCPName   string
	Risk      string
}

// AuthzRequest is what the Authorizer decides on.
type AuthzRequest struct {
	Identity *Identity
	Route    *Route
	Method   string
	Host     string
	Path     string
	// Header is the inbound request header; read it, do not change it.
	Header http.Header
	// Body returns the request body, buffered up to Limits.MaxBufferedBody (beyond: autherr.ErrTooLarge). Only
	// call it when the decision needs it (e.g. an MCP tools/call name): buffering defeats streaming.
	Body func() ([]byte, error)
}

// ProofSigner adds egress proofs (WIT+WPT, or an HTTP signature) to an outbound request. r is the request as it
// will be sent: final URL, Host and headers. For httpsig routes r's body is already buffered and r.GetBody
// returns a fresh copy. Errors must wrap an autherr sentinel.
type ProofSigner interface {
	SignRequest(ctx context.Context, r *http.Request, rt *Route) error
}

// Authenticator verifies one kind of application-layer proof (WIT+WPT, or WIT+HTTP signature) on an inbound
// request and returns the identity it proves. It must not trust r.Host (use rt.ExpectedAudience). It runs before
// the body is read and must not read it: an httpsig Authenticator verifies the WIT and the signature over the
// headers, and returns an Identity whose VerifyBody checks the body (ingress refuses one without). Errors must
// wrap an autherr sentinel: ErrMissing when the proof it needs is absent, a 400-class reason when it is present
// but wrong.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, peer *Peer, rt *Route) (*Identity, error)
}

// RevocationChecker refuses identities that were revoked. Return Revoked(...) (or any error wrapping
// autherr.ErrRevoked) so the revocation id reaches the audit record.
type RevocationChecker interface {
	Check(ctx context.Context, id *Identity) error
}

// Authorizer decides whether an authenticated request may proceed. A deny is a Decision with Allowed false (the
// handler turns it into autherr.ErrDenied); an error is a failure to decide and refuses the request. A refusal
// with an error of its own (a BodyError answering in JSON-RPC) may come with its Decision too, which then reaches
// the decision record (policy ids, MCP call).
type Authorizer interface {
	Authorize(ctx context.Context, req *AuthzRequest) (*Decision, error)
}

// TLSConfigFunc returns the client tls.Config for dialing rt's upstream. It is called for every new upstream
// connection, so a rotated SVID or bundle is used from the next handshake on. The proxy clones the result and
// sets ServerName (when empty) and NextProtos.
type TLSConfigFunc func(ctx context.Context, rt *Route) (*tls.Config, error)

// RevokedError is a revocation refusal that names the revocation (e.g. the SSF SET jti that caused it).
type RevokedError struct {
	ID     string
	Reason string
}

// Revoked returns a *RevokedError; it wraps autherr.ErrRevoked.
func Revoked(id, reason string) error { return &RevokedError{ID: id, Reason: reason} }

func (e *RevokedError) Error() string {
	return fmt.Sprintf("%s: revocation %s: %s", autherr.ErrRevoked, e.ID, e.Reason)
}

func (e *RevokedError) Unwrap() error { return autherr.ErrRevoked }

// BodyError lets a step answer a refusal in the protocol its client speaks — a JSON-RPC error object for an MCP
// request, say — instead of the default JSON error body. Status, reason code, metrics and the decision record are
// those of Err, as for any refusal.
type BodyError struct {
	Err         error
	ContentType string
	Body        []byte
}

func (e *BodyError) Error() string { return e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }
