package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync/atomic"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// EgressConfig configures an EgressHandler.
type EgressConfig struct {
	Options
	Routes *RouteTable
	// Steps run in order on every outbound request, passthrough routes included; pkg/proxy/steps builds the
	// sidecar's. A route with proofs needs a SignStep with a signer for its mode.
	Steps []EgressStep
	// Responses verifies the responses of routes with SignedResponses; required when a route has it.
	Responses ResponseVerifier
}

// EgressStep is one stage of the egress chain. The steps run in order on the outbound request just before it is
// sent — after the route chose the upstream, so that a proof covers what goes on the wire. A step returns nil to
// pass the request on, or an error to refuse it: one wrapping an autherr sentinel keeps its reason, any other is
// our own failure (500 internal). The handler writes the response and the record, never the step.
type EgressStep interface {
	Handle(ctx context.Context, x *Outbound) error
}

// EgressStepFunc adapts a function to EgressStep.
type EgressStepFunc func(ctx context.Context, x *Outbound) error

// Handle calls f.
func (f EgressStepFunc) Handle(ctx context.Context, x *Outbound) error { return f(ctx, x) }

// Outbound is one agent request on its way out through the egress steps.
type Outbound struct {
	// Request is the request as it will be sent: final URL, Host and headers.
	Request *http.Request
	Route   *Route
	// Traceparent, and the transaction a step attached a Txn-Token for (its id, and whom the agent acts for, as
	// in Identity), reach the decision record.
	Traceparent      string
	TransactionID    string
	SubjectKind      string
	DelegatedSubject string

	maxBody int64
}

// BufferBody reads the request body into memory, at most Limits.MaxBufferedBody bytes (beyond that
// autherr.ErrTooLarge), so that Request.GetBody returns a fresh copy for a proof over the body; all of it is sent.
func (x *Outbound) BufferBody() error {
	_, _, err := bufferBody(x.Request, x.maxBody, nil)
	return err
}

// TraceparentStep sends the agent's W3C traceparent when it is valid, else a new one, so that both sidecars'
// records of the request share a trace id.
type TraceparentStep struct{}

// Handle implements EgressStep.
func (TraceparentStep) Handle(_ context.Context, x *Outbound) error {
	x.Traceparent = ensureTraceparent(x.Request.Header)
	return nil
}

// SignStep adds the proofs of the route's mode (WIT+WPT, or an HTTP signature over the buffered body) with the
// signer for that mode; routes without proofs pass unsigned.
type SignStep struct {
	Signers map[wire.Mode]ProofSigner
}

// Handle implements EgressStep.
func (s *SignStep) Handle(ctx context.Context, x *Outbound) error {
	rt := x.Route
	p := rt.Modes.Proofs()
	if p == 0 {
		return nil
	}
	if p == wire.ModeHTTPSig {
		if err := x.BufferBody(); err != nil {
			return err
		}
	}
	if err := s.Signers[p].SignRequest(ctx, x.Request, rt); err != nil {
		if autherr.Of(err) == nil {
			return fmt.Errorf("egress: signing for route %q: %w", rt.Name, err)
		}
		return err
	}
	return nil
}

// check refuses a signer for a mode that is not a proof, and a route whose proof mode has no signer.
func (s *SignStep) check(rt *Route) error {
	if p := rt.Modes.Proofs(); p != 0 && (s == nil || s.Signers[p] == nil) {
		return fmt.Errorf("proxy: egress route %q uses %v but no signer is configured for it", rt.Name, p)
	}
	return nil
}

// EgressHandler is the agent side. It serves both listener front ends:
//
//   - explicit proxy: absolute-form requests as sent by clients honouring HTTP_PROXY
//     ("GET http://tool.example:8080/x HTTP/1.1"); origin-form requests are routed by their Host header;
//   - transparent: connections redirected by iptables/nftables, whose original destination the Server puts in
//     the request context (OriginalDestination). The Host header picks the route; when no route matches it,
//     the original destination ip:port is tried.
//
// A destination with no route is refused (403 policy_denied) unless a catch-all route (Match.Host "*") exists,
// normally passthrough. CONNECT is refused with 405 — proofs cannot be added inside a TLS tunnel the sidecar does
// not terminate — except for passthrough routes, which are tunnelled.
type EgressHandler struct {
	opts  Options
	steps []EgressStep
	// sign is the chain's SignStep (nil without one), which every proof route needs.
	sign   *SignStep
	resps  ResponseVerifier
	routes atomic.Pointer[RouteTable]
	pool   *upstreamPool
	proxy  *httputil.ReverseProxy
}

// NewEgressHandler validates cfg and builds the handler.
func NewEgressHandler(cfg EgressConfig) (*EgressHandler, error) {
	h := &EgressHandler{opts: cfg.Options.withDefaults(), steps: cfg.Steps, resps: cfg.Responses}
	for i, s := range h.steps {
		switch s := s.(type) {
		case nil:
			return nil, fmt.Errorf("proxy: egress step %d is nil", i)
		case *SignStep:
			for m := range s.Signers {
				if m != wire.ModeWPT && m != wire.ModeHTTPSig {
					return nil, fmt.Errorf("proxy: signer registered for %v; only wpt and httpsig are signed", m)
				}
			}
			if h.sign == nil {
				h.sign = s
			}
		}
	}
	h.pool = newUpstreamPool(&h.opts)
	h.proxy = newReverseProxy(&h.opts, Egress, &routeTransport{pool: h.pool, prepare: h.run, check: h.verifyResponse})
	if err := h.SetRoutes(cfg.Routes); err != nil {
		return nil, err
	}
	return h, nil
}

// SetRoutes swaps the route table; requests in flight keep the table they started with.
func (h *EgressHandler) SetRoutes(t *RouteTable) error {
	if t == nil {
		return errors.New("proxy: egress needs a route table")
	}
	for _, rt := range t.routes {
		p := rt.Modes.Proofs()
		if p == wire.ModeWPT|wire.ModeHTTPSig {
			return fmt.Errorf("proxy: egress route %q: choose one of wpt and httpsig", rt.Name)
		}
		if rt.Modes.Has(wire.ModeMTLS) && (rt.Upstream == nil || rt.Upstream.Scheme != "https") {
			return fmt.Errorf("proxy: egress route %q: mode mtls needs an https:// upstream", rt.Name)
		}
		// Without an upstream the request goes wherever the agent sent it, while the route (and so the proof's
		// audience) is chosen by the Host header the agent also wrote: a proof for the tool, delivered to anyone.
		if p != 0 && rt.Upstream == nil {
			return fmt.Errorf("proxy: egress route %q uses %v, so it needs an upstream: proofs go only where the route says", rt.Name, p)
		}
		if err := h.sign.check(rt); err != nil {
			return err
		}
		if rt.SignedResponses && h.resps == nil {
			return fmt.Errorf("proxy: egress route %q wants signed responses but no response verifier is configured", rt.Name)
		}
	}
	h.routes.Store(t)
	h.pool.retain(t)
	return nil
}

// Close drops idle upstream connections.
func (h *EgressHandler) Close() { h.pool.closeIdle() }

// ServeHTTP implements http.Handler.
func (h *EgressHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	growStack()
	st, r := begin(&h.opts, Egress, w, r)
	defer st.end()
	if err := checkHeaderSize(r, st.limits.MaxHeaderBytes); err != nil {
		st.refuse(err)
		return
	}
	if r.Method == http.MethodConnect {
		h.connect(st, r)
		return
	}
	if err := checkPath(r.URL.Path); err != nil {
		st.refuse(err)
		return
	}
	authority, dst, hasDst := destination(r)
	t := h.routes.Load()
	rt, ok := t.Lookup(authority, r.URL.Path)
	if !ok && hasDst {
		rt, ok = t.Lookup(dst.String(), r.URL.Path)
	}
	if !ok {
		st.refuse(fmt.Errorf("%w: no route for %s%s; egress to unconfigured destinations is refused", autherr.ErrDenied, authority, r.URL.Path))
		return
	}
	st.setRoute(rt)
	st.rec.Host = authority
	if rt.Upstream == nil {
		st.target = authority
		if hasDst {
			st.target = dst.String()
		}
	}
	stripIdentity(r)
	if rt.Modes.Proofs() != 0 {
		// Our proofs replace whatever the agent sent; a second signature would only confuse the verifier.
		stripHeaders(r.Header, proofHeaders)
	}
	st.rec.Allowed = true
	h.proxy.ServeHTTP(st.w, r)
}

// destination is the authority the agent asked for (absolute-form URL or Host, with the original destination's
// port when Host has none) and, in transparent mode, the original destination.
func destination(r *http.Request) (authority string, dst netip.AddrPort, hasDst bool) {
	dst, hasDst = OriginalDestination(r.Context())
	authority = r.Host
	switch {
	case authority == "" && hasDst:
		authority = dst.String()
	case authority == "":
	case hasDst:
		if _, p, err := splitHost(authority); err == nil && p == "" {
			authority = net.JoinHostPort(stripBrackets(authority), strconv.Itoa(int(dst.Port())))
		}
	default:
		if _, p, err := splitHost(authority); err == nil && p == "" {
			authority = net.JoinHostPort(stripBrackets(authority), "80")
		}
	}
	return authority, dst, hasDst
}

func stripBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// run runs the steps on the outbound request just before it is sent, and puts what they added on the record.
func (h *EgressHandler) run(st *reqState, out *http.Request) error {
	x := &st.outbound
	*x = Outbound{Request: out, Route: st.route, maxBody: st.limits.MaxBufferedBody}
	var err error
	for _, s := range h.steps {
		if err = s.Handle(out.Context(), x); err != nil {
			break
		}
	}
	rec := &st.rec
	rec.Traceparent = x.Traceparent
	rec.TransactionID, rec.SubjectKind, rec.DelegatedSubject = x.TransactionID, x.SubjectKind, x.DelegatedSubject
	if err != nil && autherr.Of(err) == nil {
		return &localError{err}
	}
	return err
}

// verifyResponse runs the route's response verifier, so an unsigned or tampered response never reaches the agent.
func (h *EgressHandler) verifyResponse(st *reqState, res *http.Response) error {
	if !st.route.SignedResponses {
		return nil
	}
	return h.resps.VerifyResponse(res.Request.Context(), res, st.route)
}

// localError marks a failure of our own before anything was sent upstream, so it is not reported as a 502.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// connect serves CONNECT: a tunnel for passthrough routes, a 405 explaining why otherwise.
func (h *EgressHandler) connect(st *reqState, r *http.Request) {
	rt, ok := h.routes.Load().Lookup(r.Host, "")
	if !ok || rt.Modes != wire.ModePassthrough {
		st.refuse(&statusError{
			status: http.StatusMethodNotAllowed,
			header: http.Header{"Allow": {"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"}},
			err: fmt.Errorf("%w: CONNECT %s refused: a TLS tunnel cannot be authenticated, because the sidecar adds "+
				"its proofs to plain HTTP requests; send http:// URLs through the proxy (the sidecar provides TLS), "+
				"or configure a passthrough route for this destination", autherr.ErrDenied, r.Host),
		})
		return
	}
	if r.ProtoMajor != 1 {
		st.refuse(&statusError{status: http.StatusMethodNotAllowed,
			err: fmt.Errorf("%w: CONNECT is served over HTTP/1.1 only", autherr.ErrDenied)})
		return
	}
	st.setRoute(rt)
	target := r.Host
	if rt.Upstream != nil {
		target = rt.Upstream.Host
	}
	if _, p, err := splitHost(target); err != nil || p == "" {
		st.refuse(fmt.Errorf("%w: CONNECT target %q has no port", autherr.ErrMalformed, target))
		return
	}
	ctx, cancel := context.WithTimeout(st.ctx, h.opts.Limits.DialTimeout)
	up, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		st.refuse(upstreamError(st, err))
		return
	}
	st.rec.Allowed = true
	if err := st.audit(); err != nil {
		up.Close()
		st.refuse(err)
		return
	}
	conn, brw, err := http.NewResponseController(st.w.ResponseWriter).Hijack()
	if err != nil {
		up.Close()
		st.refuse(fmt.Errorf("egress: CONNECT: %w", err))
		return
	}
	st.status = http.StatusOK
	if _, err := brw.WriteString("HTTP/1.1 200 Connection Established\r\n\r\n"); err == nil {
		err = brw.Flush()
	}
	// Bytes the client sent after the CONNECT head are already in brw's buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			conn.Close()
			up.Close()
			return
		}
	}
	splice(st.ctx, conn, up)
}

var (
	_ http.Handler = (*EgressHandler)(nil)
	_ EgressStep   = TraceparentStep{}
	_ EgressStep   = (*SignStep)(nil)
	_ EgressStep   = EgressStepFunc(nil)
)
