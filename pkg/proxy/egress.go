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
	// Signers add the proofs of one mode each (ModeWPT, ModeHTTPSig). Every proof mode a route uses needs one.
	Signers map[wire.Mode]ProofSigner
	// Credentials, when set, runs on every outbound request, passthrough routes included, before the proof
	// signer: it adds bearer-style credentials the proofs then bind (a Txn-Token, an access token for a legacy API).
	Credentials ProofSigner
	// Responses verifies the responses of routes with SignedResponses; required when a route has it.
	Responses ResponseVerifier
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
	opts    Options
	signers map[wire.Mode]ProofSigner
	creds   ProofSigner
	resps   ResponseVerifier
	routes  atomic.Pointer[RouteTable]
	pool    *upstreamPool
	proxy   *httputil.ReverseProxy
}

// NewEgressHandler validates cfg and builds the handler.
func NewEgressHandler(cfg EgressConfig) (*EgressHandler, error) {
	h := &EgressHandler{opts: cfg.Options.withDefaults(), signers: make(map[wire.Mode]ProofSigner), creds: cfg.Credentials,
		resps: cfg.Responses}
	for m, s := range cfg.Signers {
		if m != wire.ModeWPT && m != wire.ModeHTTPSig {
			return nil, fmt.Errorf("proxy: signer registered for %v; only wpt and httpsig are signed", m)
		}
		if s != nil {
			h.signers[m] = s
		}
	}
	h.pool = newUpstreamPool(&h.opts)
	h.proxy = newReverseProxy(&h.opts, Egress, &routeTransport{pool: h.pool, prepare: h.sign, check: h.verifyResponse})
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
		if p != 0 && h.signers[p] == nil {
			return fmt.Errorf("proxy: egress route %q uses %v but no signer is configured for it", rt.Name, p)
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
	st.rec.Traceparent = ensureTraceparent(r.Header)
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

// sign runs on the outbound request just before it is sent, so the proofs cover the final URL and headers.
func (h *EgressHandler) sign(st *reqState, out *http.Request) error {
	rt := st.route
	if h.creds != nil {
		if err := h.creds.SignRequest(out.Context(), out, rt); err != nil {
			if autherr.Of(err) == nil {
				return &localError{fmt.Errorf("egress: credentials for route %q: %w", rt.Name, err)}
			}
			return err
		}
	}
	p := rt.Modes.Proofs()
	if p == 0 {
		return nil
	}
	if p == wire.ModeHTTPSig {
		if _, _, err := bufferBody(out, st.limits.MaxBufferedBody, nil); err != nil {
			return err
		}
	}
	if err := h.signers[p].SignRequest(out.Context(), out, rt); err != nil {
		if autherr.Of(err) == nil {
			return &localError{fmt.Errorf("egress: signing for route %q: %w", rt.Name, err)}
		}
		return err
	}
	return nil
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

var _ http.Handler = (*EgressHandler)(nil)
