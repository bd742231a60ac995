package proxy

import (
	"sync/atomic"
	"time"
)

// Limits bound what one client or one upstream can cost. A zero field takes the default in DefaultLimits.
type Limits struct {
	// MaxHeaderBytes caps a request's line and headers: beyond it the sidecar answers 431 too_large (JSON); beyond
	// twice it net/http itself answers 431 (plain text) before any handler runs.
	MaxHeaderBytes int
	// ReadHeaderTimeout cuts off clients that send headers slowly (slowloris).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive client connections.
	IdleTimeout time.Duration
	// MaxBufferedBody caps a body a step must hold in memory (HTTP signature digest, policy on a body); 413 beyond.
	MaxBufferedBody int64
	// MaxBufferedBodies caps the bytes of request bodies ingress holds in memory at once, across all requests: a
	// body that would take it past is refused 503 body_budget_exhausted. Raised to MaxBufferedBody when lower.
	MaxBufferedBodies int64
	// BodyReadTimeout is how long ingress waits on a client for its request body, plus one second for every
	// BodyMinRate bytes received: a body sent more slowly is cut off (408 body_timeout, or the connection closed),
	// so slow clients cannot hold connections. gRPC streams over HTTP/2, which may pause, are exempt once allowed.
	BodyReadTimeout time.Duration
	// BodyMinRate is the sustained rate, in bytes per second, a request body must arrive at; see BodyReadTimeout.
	BodyMinRate int64
	// MaxConns caps concurrent connections per listener; further connections wait in the accept queue.
	MaxConns int
	// MaxConnsPerIP caps one client's (IPv4 address, IPv6 /64) concurrent connections per listener; more are
	// closed at once. Zero: no per-client cap.
	MaxConnsPerIP int
	// DialTimeout bounds connecting to an upstream, TLS handshake included.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for upstream response headers once the request is sent (504 beyond).
	ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerHost is the keep-alive pool size per upstream.
	MaxIdleConnsPerHost int
	// UpstreamIdleTimeout closes idle pooled upstream connections.
	UpstreamIdleTimeout time.Duration
	// DrainTimeout is how long Server.Serve waits for in-flight requests after its context ends.
	DrainTimeout time.Duration
	// HTTP2HeaderTableSize is the HPACK dynamic table size, in bytes, of every HTTP/2 connection, both directions:
	// what the listeners advertise and use, and what the upstream transports do (a connection uses the smaller of
	// its two ends'). Each connection may hold that much header state per direction. Zero: Go's 4096.
	HTTP2HeaderTableSize uint32
}

// DefaultLimits are sized for a sidecar next to one agent or tool. Responses have no total deadline because
// gRPC streams, SSE and WebSockets legitimately last long; ResponseHeaderTimeout is generous for slow tools.
func DefaultLimits() Limits {
	return Limits{
		MaxHeaderBytes:        64 << 10,
		ReadHeaderTimeout:     10 * time.Second,
		IdleTimeout:           90 * time.Second,
		MaxBufferedBody:       4 << 20,
		MaxBufferedBodies:     64 << 20,
		BodyReadTimeout:       20 * time.Second,
		BodyMinRate:           1 << 10,
		MaxConns:              4096,
		DialTimeout:           5 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   64,
		UpstreamIdleTimeout:   90 * time.Second,
		DrainTimeout:          30 * time.Second,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	pick := func(v, def time.Duration) time.Duration {
		if v <= 0 {
			return def
		}
		return v
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxBufferedBody <= 0 {
		l.MaxBufferedBody = d.MaxBufferedBody
	}
	if l.MaxBufferedBodies <= 0 {
		l.MaxBufferedBodies = d.MaxBufferedBodies
	}
	l.MaxBufferedBodies = max(l.MaxBufferedBodies, l.MaxBufferedBody)
	if l.BodyMinRate <= 0 {
		l.BodyMinRate = d.BodyMinRate
	}
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxIdleConnsPerHost <= 0 {
		l.MaxIdleConnsPerHost = d.MaxIdleConnsPerHost
	}
	l.ReadHeaderTimeout = pick(l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	l.IdleTimeout = pick(l.IdleTimeout, d.IdleTimeout)
	l.BodyReadTimeout = pick(l.BodyReadTimeout, d.BodyReadTimeout)
	l.DialTimeout = pick(l.DialTimeout, d.DialTimeout)
	l.ResponseHeaderTimeout = pick(l.ResponseHeaderTimeout, d.ResponseHeaderTimeout)
	l.UpstreamIdleTimeout = pick(l.UpstreamIdleTimeout, d.UpstreamIdleTimeout)
	l.DrainTimeout = pick(l.DrainTimeout, d.DrainTimeout)
	return l
}

// LiveLimits holds the Limits the handlers read per request (header and body caps, the body budget, the body read
// deadlines), so that a reload can change them while requests run: each request reads one snapshot, and Store
// swaps the whole set at once. The connection caps, server timeouts and upstream transports are bound when they
// are built and ignore later Stores (Server.SetConnCaps changes the caps).
type LiveLimits struct{ p atomic.Pointer[Limits] }

// NewLiveLimits returns l (defaults filled in) as the current limits.
func NewLiveLimits(l Limits) *LiveLimits {
	ll := &LiveLimits{}
	ll.Store(l)
	return ll
}

// Load returns the current limits.
func (ll *LiveLimits) Load() Limits { return *ll.p.Load() }

// Store makes l (defaults filled in) the limits of the requests that start from now on; requests in flight keep
// theirs.
func (ll *LiveLimits) Store(l Limits) {
	l = l.withDefaults()
	ll.p.Store(&l)
}
