package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/mtls"
)

// transports are one route's connection pools. Protocol upgrades (WebSocket) cannot ride HTTP/2, so they get
// their own HTTP/1.1-only pool; everything else shares main (HTTP/2 when the upstream offers it by ALPN, or h2c).
type transports struct {
	main, h1 *http.Transport
	// retireAt is when the first TLS connection these pools made must stop taking requests (unix nanoseconds,
	// 0: never); see upstream.current.
	retireAt atomic.Int64
}

// upstreamPool keeps a route's transports across route-table swaps as long as the route's upstream settings are
// unchanged, so reconfiguration does not drop warm connections.
type upstreamPool struct {
	opts *Options
	mu   sync.Mutex
	m    map[string]*upstream
	// byRoute maps the current table's routes to their transports, so a request finds its pool with one pointer
	// lookup instead of formatting the key under the lock.
	byRoute atomic.Pointer[map[*Route]*upstream]
}

func newUpstreamPool(opts *Options) *upstreamPool {
	return &upstreamPool{opts: opts, m: make(map[string]*upstream)}
}

func poolKey(rt *Route) string {
	u := ""
	if rt.Upstream != nil {
		u = rt.Upstream.Scheme + "://" + rt.Upstream.Host
	}
	return fmt.Sprintf("%s|%s|%t|%d|%s", rt.Name, u, rt.H2C, rt.Modes, rt.UpstreamID)
}

func (p *upstreamPool) get(rt *Route) *upstream {
	if m := p.byRoute.Load(); m != nil {
		if t := (*m)[rt]; t != nil {
			return t
		}
	}
	// A route of a table swapped out while its request was in flight.
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lockedGet(rt)
}

func (p *upstreamPool) lockedGet(rt *Route) *upstream {
	key := poolKey(rt)
	t := p.m[key]
	if t == nil {
		t = newUpstream(func() *transports { return p.build(rt) })
		p.m[key] = t
	}
	return t
}

// retain makes t's routes the current ones and drops the pools none of them uses. In-flight requests finish on
// those; their idle connections then expire after UpstreamIdleTimeout.
func (p *upstreamPool) retain(t *RouteTable) {
	keep := make(map[string]bool)
	for _, rt := range t.routes {
		keep[poolKey(rt)] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, tr := range p.m {
		if !keep[k] {
			tr.closeIdle()
			delete(p.m, k)
		}
	}
	byRoute := make(map[*Route]*upstream, len(t.routes))
	for _, rt := range t.routes {
		byRoute[rt] = p.lockedGet(rt)
	}
	p.byRoute.Store(&byRoute)
}

func (p *upstreamPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tr := range p.m {
		tr.closeIdle()
	}
}

func (t *transports) closeIdle() {
	t.main.CloseIdleConnections()
	t.h1.CloseIdleConnections()
}

func (p *upstreamPool) build(rt *Route) *transports {
	t := &transports{}
	lim := p.opts.Limits
	dialer := &net.Dialer{Timeout: lim.DialTimeout, KeepAlive: 30 * time.Second}
	base := func() *http.Transport {
		return &http.Transport{
			Proxy:                 nil, // never the environment's HTTP_PROXY: we are the proxy
			DialContext:           dialer.DialContext,
			MaxIdleConnsPerHost:   lim.MaxIdleConnsPerHost,
			IdleConnTimeout:       lim.UpstreamIdleTimeout,
			ResponseHeaderTimeout: lim.ResponseHeaderTimeout,
			ExpectContinueTimeout: time.Second,
			// Pass content codings through untouched instead of asking for gzip and decoding it.
			DisableCompression: true,
			// Detect dead HTTP/2 connections instead of waiting for TCP to give up.
			HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second,
				MaxDecoderHeaderTableSize: int(lim.HTTP2HeaderTableSize), MaxEncoderHeaderTableSize: int(lim.HTTP2HeaderTableSize)},
		}
	}
	main, h1 := base(), base()
	switch {
	case rt.Upstream != nil && rt.Upstream.Scheme == "https":
		main.ForceAttemptHTTP2 = true
		main.DialTLSContext = p.dialTLS(rt, t, dialer, []string{"h2", "http/1.1"})
		h1.DialTLSContext = p.dialTLS(rt, t, dialer, []string{"http/1.1"})
	case rt.H2C:
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		main.Protocols = &protos
	default:
		h1 = main
	}
	t.main, t.h1 = main, h1
	return t
}

// dialTLS asks the TLSConfigFunc for a config on every new connection, so credentials rotate per handshake. Each
// connection ends with the certificates of its handshake: it tells t when to retire (before they expire) and
// closes itself when the first of them does (see upstream.current).
func (p *upstreamPool) dialTLS(rt *Route, t *transports, d *net.Dialer, protos []string) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, p.opts.Limits.DialTimeout)
		defer cancel()
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if p.opts.TLSConfig != nil {
			c, err := p.opts.TLSConfig(ctx, rt)
			if err != nil {
				return nil, fmt.Errorf("%w: route %q: no TLS client configuration: %v", autherr.ErrUpstream, rt.Name, err)
			}
			cfg = c.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		cfg.NextProtos = protos
		var presented mtls.Presented
		cfg = presented.Track(cfg)
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn := mtls.NewExpiringConn(raw)
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: TLS handshake with %s: %v", autherr.ErrUpstreamTimeout, addr, err)
			}
			return nil, fmt.Errorf("%w: TLS handshake with %s: %v", autherr.ErrUpstream, addr, err)
		}
		cs := tc.ConnectionState()
		notAfter := mtls.Earliest(presented.NotAfter(), mtls.PeerNotAfter(&cs))
		t.retireBy(mtls.RetireAt(time.Now(), notAfter))
		conn.ExpireAt(notAfter, nil)
		return tc, nil
	}
}

// requiresHTTP1 reports a protocol upgrade, which HTTP/2 cannot carry.
func requiresHTTP1(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade")
}

// routeTransport sends each request through its route's pool, after the egress proof step when there is one.
type routeTransport struct {
	pool *upstreamPool
	// prepare runs on the outbound request just before it is sent (egress signing); nil on ingress.
	prepare func(st *reqState, out *http.Request) error
	// check runs on the upstream's response before any of it is forwarded (response signing and verification);
	// an error refuses the response.
	check func(st *reqState, res *http.Response) error
}

func (t *routeTransport) RoundTrip(out *http.Request) (*http.Response, error) {
	st := stateOf(out.Context())
	if t.prepare != nil {
		if err := t.prepare(st, out); err != nil {
			if out.Body != nil {
				out.Body.Close()
			}
			return nil, err
		}
	}
	// The last step before anything reaches the upstream: the decision is durable before it takes effect.
	if err := st.audit(); err != nil {
		if out.Body != nil {
			out.Body.Close()
		}
		return nil, err
	}
	if out.GetBody != nil && out.Body != nil && out.Body != http.NoBody {
		// The body is in memory (ingress buffered it, or egress signed it). ReverseProxy hides every body behind a
		// wrapper of its own, which makes net/http flush the headers on their own before the body: one more
		// syscall and packet per request. A fresh reader over the same bytes lets them go out in one write.
		if b, err := out.GetBody(); err == nil {
			out.Body = b
		}
	}
	tr := t.pool.get(st.route).current()
	rt := tr.main
	if requiresHTTP1(out) {
		rt = tr.h1
	}
	res, err := rt.RoundTrip(out)
	if err != nil || t.check == nil {
		return res, err
	}
	if err := t.check(st, res); err != nil {
		res.Body.Close()
		return nil, err
	}
	return res, nil
}

// respondHooks runs the ingress exchange's response hooks.
func respondHooks(st *reqState, res *http.Response) error {
	if st.exchange == nil {
		return nil
	}
	return st.exchange.respond(res)
}

// newReverseProxy builds the forwarding end of a handler. It streams (gRPC, SSE and chunked responses are flushed
// write by write), trailers pass through, and 101 responses become a spliced connection.
func newReverseProxy(opts *Options, dir Direction, rt http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := stateOf(pr.In.Context())
			if u := st.route.Upstream; u != nil {
				pr.SetURL(u)
				if st.route.KeepHost {
					// A request without Host (HTTP/1.0, transparent mode) was routed by the destination it was
					// sent to: forward that.
					pr.Out.Host = pr.In.Host
					if pr.Out.Host == "" {
						pr.Out.Host = st.rec.Host
					}
				}
			} else {
				// Egress to the destination the agent asked for: keep its Host for virtual hosting.
				pr.Out.URL.Scheme, pr.Out.URL.Host = "http", st.target
				pr.Out.Host = pr.In.Host
			}
			pr.Out.URL.User = nil
			if dir == Ingress {
				pr.SetXForwarded()
			}
			for k, v := range st.identity {
				pr.Out.Header[k] = v
			}
		},
		Transport: rt,
		// 0 still flushes every write of a streamed response (SSE, gRPC, chunked: ContentLength -1) at once, as
		// ReverseProxy does for those; a response of known length is written without a syscall per write.
		FlushInterval: 0,
		ModifyResponse: func(res *http.Response) error {
			if res.StatusCode == http.StatusSwitchingProtocols {
				stateOf(res.Request.Context()).upgraded = true
			}
			grpcTrailersOnly(res)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			st := stateOf(r.Context())
			st.refuse(upstreamError(st, err))
		},
		// The decision record logs each failure once; what ReverseProxy adds (a body copy error) is detail.
		ErrorLog:   debugLog(opts.Logger),
		BufferPool: newBufferPool(),
	}
}

// grpcTrailersOnly turns a gRPC Trailers-Only response (status and metadata in the one HEADERS frame that ends
// the stream) into headers plus trailers. ReverseProxy flushes headers on a timer of its own, which can split
// that frame into HEADERS and an empty DATA frame ending the stream: a shape gRPC clients reject with "server
// closed the stream without sending trailers". Headers with no message followed by trailers is the same RPC.
func grpcTrailersOnly(res *http.Response) {
	if res.ProtoMajor != 2 || res.ContentLength != 0 || res.Header.Get("Grpc-Status") == "" ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "application/grpc") {
		return
	}
	if res.Trailer == nil {
		res.Trailer = make(http.Header)
	}
	for k, v := range res.Header {
		if k != "Content-Type" {
			res.Trailer[k] = v
			delete(res.Header, k)
		}
	}
}

// bufferPool recycles the 32 KiB copy buffers ReverseProxy would otherwise allocate per request.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (bp *bufferPool) Get() []byte  { return *bp.p.Get().(*[]byte) }
func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }

// upstreamError classifies a forwarding failure: a refusal raised on the way (egress signing) keeps its reason,
// a timeout is 504, anything else 502. A client that went away is recorded, not answered.
func upstreamError(st *reqState, err error) error {
	if le, ok := errors.AsType[*localError](err); ok {
		return le.err
	}
	if autherr.Of(err) != nil {
		return err
	}
	if berr := st.body.failure(); berr != nil {
		// The client's body failed (bad framing, too slow), not the upstream.
		return berr
	}
	name := ""
	if st.route != nil {
		name = st.route.Name
	}
	if st.ctx.Err() != nil {
		st.status = statusClientClosed
		return fmt.Errorf("%w: route %q: client went away before the upstream answered: %v", autherr.ErrClientClosed, name, err)
	}
	if ne, ok := errors.AsType[net.Error](err); (ok && ne.Timeout()) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: route %q: upstream did not answer in time: %v", autherr.ErrUpstreamTimeout, name, err)
	}
	return fmt.Errorf("%w: route %q: %v", autherr.ErrUpstream, name, err)
}
