package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Exchange is one inbound request on its way through the ingress steps.
type Exchange struct {
	Request *http.Request
	Route   *Route
	Peer    *Peer
	// Identity is set by the authentication step.
	Identity *Identity
	// Decision is set by the authorization step.
	Decision *Decision

	maxBody    int64
	budget     *bodyBudget
	reserved   int64
	body       []byte
	buffered   bool
	onResponse []ResponseHook
}

// Body returns the request body, buffering it on first use (at most Limits.MaxBufferedBody bytes, beyond that
// autherr.ErrTooLarge; autherr.ErrBodyBudget when the bodies held by all requests would exceed
// Limits.MaxBufferedBodies). The request still carries the whole body to the tool.
func (x *Exchange) Body() ([]byte, error) {
	if !x.buffered {
		b, n, err := bufferBody(x.Request, x.maxBody, x.budget)
		x.reserved += n
		if err != nil {
			return nil, err
		}
		x.body, x.buffered = b, true
	}
	return x.body, nil
}

// release gives the buffered body's bytes back to the budget, once the request is over.
func (x *Exchange) release() {
	if x.budget != nil {
		x.budget.release(x.reserved)
		x.reserved = 0
	}
}

// rewind gives the request a fresh reader over the buffered body, in case a step consumed it.
func (x *Exchange) rewind() {
	if x.buffered {
		setBody(x.Request, x.body)
	}
}

// Step is one stage of the ingress chain. It returns nil to pass the exchange on, or an error wrapping an autherr
// sentinel to refuse it; the handler writes the response and the record, never the step.
type Step interface {
	Handle(ctx context.Context, x *Exchange) error
}

// StepFunc adapts a function to Step.
type StepFunc func(ctx context.Context, x *Exchange) error

// Handle calls f.
func (f StepFunc) Handle(ctx context.Context, x *Exchange) error { return f(ctx, x) }

// AuthenticateStep establishes x.Identity. mTLS is checked here from the peer certificate; WIT+WPT and
// WIT+HTTP-signature proofs go to the Authenticator for their mode, chosen by which proof header is present.
type AuthenticateStep struct {
	Authenticators map[wire.Mode]Authenticator
}

// Handle implements Step.
func (s *AuthenticateStep) Handle(ctx context.Context, x *Exchange) error {
	rt, r, peer := x.Route, x.Request, x.Peer
	if rt.Modes.Has(wire.ModeMTLS) && peer.ID.IsZero() {
		switch {
		case peer.TLS == nil:
			return fmt.Errorf("%w: route %q requires mTLS; the request came over cleartext", autherr.ErrMissing, rt.Name)
		case len(peer.TLS.PeerCertificates) == 0:
			return fmt.Errorf("%w: route %q requires a client certificate (X.509-SVID)", autherr.ErrMissing, rt.Name)
		default:
			return fmt.Errorf("%w: client certificate is not an X.509-SVID (it needs exactly one spiffe:// URI SAN)", autherr.ErrMalformed)
		}
	}
	proofs := rt.Modes.Proofs()
	if proofs == 0 {
		id := peer.ID.String()
		x.Identity = &Identity{Subject: id, Method: wire.AuthMTLS, PeerID: id, PeerCert: peer.TLS.PeerCertificates[0]}
		return nil
	}
	mode := proofMode(r.Header, proofs)
	if mode == 0 {
		if r.Header.Get(wire.HeaderWIT) != "" {
			return fmt.Errorf("%w: %s without a proof (%s)", autherr.ErrMissing, wire.HeaderWIT, proofNames(proofs))
		}
		return fmt.Errorf("%w: route %q requires %s and %s", autherr.ErrMissing, rt.Name, wire.HeaderWIT, proofNames(proofs))
	}
	a := s.Authenticators[mode]
	if a == nil {
		return fmt.Errorf("ingress: no authenticator configured for mode %v", mode)
	}
	// The credentials and the signature over the headers first, with the body unread: only a caller that proved
	// who it is gets its body held in memory, for the part of the proof that covers it.
	id, err := a.Authenticate(ctx, r, peer, rt)
	x.rewind()
	if err != nil {
		return err
	}
	if id == nil || id.Subject == "" {
		return fmt.Errorf("ingress: %v authenticator returned no subject", mode)
	}
	if mode == wire.ModeHTTPSig && id.VerifyBody == nil {
		return fmt.Errorf("ingress: the %v authenticator does not check the body its proof covers", mode)
	}
	if id.VerifyBody != nil {
		body, err := x.Body()
		if err != nil {
			return err
		}
		if err := id.VerifyBody(body); err != nil {
			return err
		}
	}
	if id.Method == "" {
		id.Method = wire.AuthWITWPT
		if mode == wire.ModeHTTPSig {
			id.Method = wire.AuthWITHTTPSig
		}
	}
	if !peer.ID.IsZero() {
		id.PeerID, id.PeerCert = peer.ID.String(), peer.TLS.PeerCertificates[0]
	}
	x.Identity = id
	return nil
}

// proofMode picks the allowed proof mode whose header is present, WPT first.
func proofMode(h http.Header, allowed wire.Mode) wire.Mode {
	if allowed.Has(wire.ModeWPT) && len(h.Values(wire.HeaderWPT)) > 0 {
		return wire.ModeWPT
	}
	if allowed.Has(wire.ModeHTTPSig) && len(h.Values(wire.HeaderSignatureInput)) > 0 {
		return wire.ModeHTTPSig
	}
	return 0
}

func proofNames(m wire.Mode) string {
	var names []string
	if m.Has(wire.ModeWPT) {
		names = append(names, wire.HeaderWPT)
	}
	if m.Has(wire.ModeHTTPSig) {
		names = append(names, wire.HeaderSignature+"/"+wire.HeaderSignatureInput)
	}
	return strings.Join(names, " or ")
}

// BindingStep refuses a request whose mTLS peer is not the workload its WIT names: identity established by mTLS
// must not be overridden by application-layer headers (WIMSE mutual-TLS draft).
type BindingStep struct{}

// Handle implements Step.
func (BindingStep) Handle(_ context.Context, x *Exchange) error {
	if x.Identity == nil {
		return errors.New("ingress: binding step ran before authentication")
	}
	if x.Peer.ID.IsZero() || x.Identity.Method == wire.AuthMTLS {
		return nil
	}
	if peer := x.Peer.ID.String(); peer != x.Identity.Subject {
		return fmt.Errorf("%w: mTLS peer %s is not the WIT subject %s", autherr.ErrMismatch, peer, x.Identity.Subject)
	}
	return nil
}

// RevocationStep refuses revoked identities.
type RevocationStep struct {
	Checker RevocationChecker
}

// Handle implements Step.
func (s *RevocationStep) Handle(ctx context.Context, x *Exchange) error {
	if x.Identity == nil {
		return errors.New("ingress: revocation step ran before authentication")
	}
	return s.Checker.Check(ctx, x.Identity)
}

// AuthorizeStep asks the Authorizer and records its decision in x.Decision.
type AuthorizeStep struct {
	Authorizer Authorizer
}

// Handle implements Step.
func (s *AuthorizeStep) Handle(ctx context.Context, x *Exchange) error {
	if x.Identity == nil {
		return errors.New("ingress: authorization step ran before authentication")
	}
	r := x.Request
	d, err := s.Authorizer.Authorize(ctx, &AuthzRequest{
		Identity: x.Identity, Route: x.Route, Method: r.Method, Host: r.Host, Path: r.URL.Path, Header: r.Header,
		Body: x.Body,
	})
	x.rewind()
	if d != nil {
		x.Decision = d
	}
	if err != nil {
		return err
	}
	if d == nil {
		return errors.New("ingress: authorizer returned no decision")
	}
	if !d.Allowed {
		return denied(d)
	}
	return nil
}

func denied(d *Decision) error {
	reason := d.Reason
	if reason == "" {
		reason = "no policy permits this request"
	}
	if len(d.PolicyIDs) > 0 {
		return fmt.Errorf("%w: %s (policies %s)", autherr.ErrDenied, reason, strings.Join(d.PolicyIDs, ", "))
	}
	return fmt.Errorf("%w: %s", autherr.ErrDenied, reason)
}

// IngressConfig configures an IngressHandler.
type IngressConfig struct {
	Options
	Routes *RouteTable
	// Steps run in order on every non-passthrough route; pkg/proxy/steps builds the sidecar's.
	Steps []Step
}

// IngressHandler is the tool side: it runs the steps, then strips every inbound copy of the identity and WIMSE
// proof headers, sets the verified identity headers, and forwards to the route's upstream (the tool).
//
// It fails closed: a request is forwarded only when a step set an Identity and an allowing Decision (or the
// route is passthrough).
type IngressHandler struct {
	opts   Options
	steps  []Step
	budget *bodyBudget
	routes atomic.Pointer[RouteTable]
	pool   *upstreamPool
	proxy  *httputil.ReverseProxy
	peers  *peerCache
}

// NewIngressHandler validates cfg and builds the handler.
func NewIngressHandler(cfg IngressConfig) (*IngressHandler, error) {
	h := &IngressHandler{opts: cfg.Options.withDefaults(), steps: cfg.Steps}
	h.budget = &bodyBudget{limits: h.opts.Live}
	h.peers = newPeerCache(h.opts.Self)
	for i, s := range h.steps {
		if s == nil {
			return nil, fmt.Errorf("proxy: ingress step %d is nil", i)
		}
	}
	h.pool = newUpstreamPool(&h.opts)
	h.proxy = newReverseProxy(&h.opts, Ingress, &routeTransport{pool: h.pool, check: respondHooks})
	if err := h.SetRoutes(cfg.Routes); err != nil {
		return nil, err
	}
	return h, nil
}

// SetRoutes swaps the route table; requests in flight keep the table they started with.
func (h *IngressHandler) SetRoutes(t *RouteTable) error {
	if t == nil {
		return errors.New("proxy: ingress needs a route table")
	}
	for _, rt := range t.routes {
		if rt.Upstream == nil {
			return fmt.Errorf("proxy: ingress route %q has no upstream", rt.Name)
		}
		if rt.Match.Host == AnyHost && rt.Modes.Proofs() != 0 && rt.Audience == "" && rt.ExternalURL == nil {
			return fmt.Errorf("proxy: ingress catch-all route %q verifies proofs, so it needs an explicit audience", rt.Name)
		}
	}
	h.routes.Store(t)
	h.pool.retain(t)
	return nil
}

// Close drops idle upstream connections.
func (h *IngressHandler) Close() { h.pool.closeIdle() }

// ServeHTTP implements http.Handler.
func (h *IngressHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	growStack()
	st, r := begin(&h.opts, Ingress, w, r)
	defer st.end()
	st.rec.Traceparent = Traceparent(r.Header)
	st.body = watchBody(w, r, st.limits)
	if err := checkPeerCertificate(r.TLS, time.Now()); err != nil {
		st.refuse(err)
		return
	}
	if err := checkHeaderSize(r, st.limits.MaxHeaderBytes); err != nil {
		st.refuse(err)
		return
	}
	if r.Method == http.MethodConnect {
		st.refuse(&statusError{status: http.StatusMethodNotAllowed,
			err: fmt.Errorf("%w: CONNECT is not served on ingress", autherr.ErrDenied)})
		return
	}
	if err := checkPath(r.URL.Path); err != nil {
		st.refuse(err)
		return
	}
	if r.URL.Path == "*" {
		// The asterisk form means the server as a whole, and only for OPTIONS (RFC 9112 3.2.4), which net/http
		// answers itself without calling a handler. Any other "*" would be decided as "*" and forwarded as "/*".
		st.refuse(fmt.Errorf("%w: the request target * is only for OPTIONS", autherr.ErrMalformed))
		return
	}
	if err := checkMethodOverride(r.Header); err != nil {
		st.refuse(err)
		return
	}
	rt, ok := h.routes.Load().Lookup(r.Host, r.URL.Path)
	if !ok {
		st.refuse(fmt.Errorf("%w: this listener does not serve %s%s", autherr.ErrMisdirected, r.Host, r.URL.Path))
		return
	}
	st.setRoute(rt)
	x := &Exchange{Request: r, Route: rt, Peer: h.peers.peerOf(r), maxBody: st.limits.MaxBufferedBody, budget: h.budget}
	st.exchange = x
	defer x.release()
	if !rt.Modes.Has(wire.ModePassthrough) {
		if err := h.run(st.ctx, x); err != nil {
			st.refuse(err)
			return
		}
	}
	stripIdentity(r)
	stripHeaders(r.Header, proofHeaders)
	dropUpgradeExceptWebSocket(r.Header)
	if x.Identity != nil {
		// Set on the outgoing request (in Rewrite), not on r: the reverse proxy deletes every field the caller's
		// Connection header names, and "Connection: X-Agentauth-Workload-Id" would otherwise take the verified
		// identity away from the tool after policy decided with it.
		st.identity = make(http.Header, 5)
		if err := setIdentityHeaders(st.identity, x.Identity, x.Peer, h.opts.Self); err != nil {
			st.refuse(err)
			return
		}
	}
	if coalesceBody(r, st.limits.MaxBufferedBody) {
		// Only an optimisation: with the budget spent, the body is streamed instead.
		if _, err := x.Body(); err != nil && !errors.Is(err, autherr.ErrBodyBudget) {
			st.refuse(err)
			return
		}
	}
	x.rewind()
	if st.body != nil && isGRPCStream(r) {
		// A gRPC stream may legitimately pause for long between messages; it is authorized (or passthrough) and
		// is bounded by the connection limits instead.
		st.body.unbound()
	}
	st.rec.Allowed = true
	h.proxy.ServeHTTP(st.w, r)
}

// maxCoalescedBody is the largest request body ingress reads before forwarding, so the tool gets it in the same
// write as the headers: net/http flushes a request's headers on their own when its body is not in memory, one more
// syscall and packet per request. Small bodies of known length have usually arrived with their headers anyway.
const maxCoalescedBody = 16 << 10

// coalesceBody reports whether r's body should be read before forwarding: small and of known length, with no
// 100-continue handshake to preserve and no trailers (which only a chunked body carries).
func coalesceBody(r *http.Request, maxBuffered int64) bool {
	return r.ContentLength > 0 && r.ContentLength <= min(maxCoalescedBody, maxBuffered) &&
		len(r.Trailer) == 0 && r.Header.Get("Expect") == ""
}

// isGRPCStream reports a gRPC call over HTTP/2, whose request body is a stream of messages.
func isGRPCStream(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

func (h *IngressHandler) run(ctx context.Context, x *Exchange) error {
	for _, s := range h.steps {
		if err := s.Handle(ctx, x); err != nil {
			return err
		}
	}
	switch {
	case x.Identity == nil:
		return errors.New("ingress: no step authenticated the request")
	case x.Decision == nil:
		return errors.New("ingress: no step authorized the request")
	case !x.Decision.Allowed:
		return denied(x.Decision)
	}
	return nil
}

var (
	_ http.Handler = (*IngressHandler)(nil)
	_ Step         = (*AuthenticateStep)(nil)
	_ Step         = BindingStep{}
	_ Step         = (*RevocationStep)(nil)
	_ Step         = (*AuthorizeStep)(nil)
	_ Step         = StepFunc(nil)
)
