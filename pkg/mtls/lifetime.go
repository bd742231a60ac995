package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// A connection is authenticated by the certificates exchanged in its handshake, and by nothing after: TLS never
// looks at them again. So a connection must end when the first of them expires, or an expired (or rotated-away)
// credential keeps being accepted for as long as the connection lives. The helpers here say when that is.

// MaxRetireMargin caps how long before its certificates expire a client stops sending on a connection.
const MaxRetireMargin = time.Minute

// PeerNotAfter returns the earliest NotAfter of the certificates the peer presented in cs (its leaf and any
// intermediates it sent); zero when it presented none.
func PeerNotAfter(cs *tls.ConnectionState) time.Time {
	if cs == nil {
		return time.Time{}
	}
	return earliestNotAfter(cs.PeerCertificates)
}

// PeerExpired reports whether the peer's certificate (or an intermediate it sent) has passed its NotAfter at now.
func PeerExpired(cs *tls.ConnectionState, now time.Time) bool {
	na := PeerNotAfter(cs)
	return !na.IsZero() && now.After(na)
}

// RetireAt returns when a client should stop starting requests on a connection established at now whose
// certificates are valid until notAfter: a quarter of the remaining validity before it, at most MaxRetireMargin.
// Sidecars renew at half their lifetime, so by then the new certificate is there for the next handshake; the
// margin leaves in-flight requests time to finish. Zero notAfter (no certificate) gives zero: never.
func RetireAt(now, notAfter time.Time) time.Time {
	if notAfter.IsZero() {
		return time.Time{}
	}
	left := notAfter.Sub(now)
	if left <= 0 {
		return notAfter
	}
	return notAfter.Add(-min(left/4, MaxRetireMargin))
}

// Earliest returns the earliest non-zero time of ts; zero when there is none.
func Earliest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if !t.IsZero() && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	return out
}

func earliestNotAfter(certs []*x509.Certificate) time.Time {
	var out time.Time
	for _, c := range certs {
		out = Earliest(out, c.NotAfter)
	}
	return out
}

// Presented records the certificate this side presents in one handshake. Use a fresh one per connection.
type Presented struct {
	notAfter atomic.Int64 // unix nanoseconds; 0 until a certificate was presented
}

// Track returns a clone of cfg whose certificate callbacks (GetCertificate, GetClientCertificate) or static
// Certificates record, in p, the certificate that this side presents.
func (p *Presented) Track(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	if get := cfg.GetClientCertificate; get != nil {
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := get(cri)
			p.record(c)
			return c, err
		}
	}
	if get := cfg.GetCertificate; get != nil {
		cfg.GetCertificate = func(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := get(chi)
			p.record(c)
			return c, err
		}
	}
	if cfg.GetCertificate == nil && cfg.GetClientCertificate == nil {
		for i := range cfg.Certificates {
			p.record(&cfg.Certificates[i])
		}
	}
	return cfg
}

func (p *Presented) record(c *tls.Certificate) {
	if c == nil || len(c.Certificate) == 0 {
		return
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return
		}
	}
	na := leaf.NotAfter.UnixNano()
	for {
		cur := p.notAfter.Load()
		if cur != 0 && cur <= na {
			return
		}
		if p.notAfter.CompareAndSwap(cur, na) {
			return
		}
	}
}

// NotAfter is the NotAfter of the presented certificate, zero if none was presented.
func (p *Presented) NotAfter() time.Time {
	if n := p.notAfter.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// ExpiringConn is a connection that can be set to close itself at a deadline. Closing it first stops the timer,
// so a connection closed early is not held until then.
type ExpiringConn struct {
	net.Conn
	mu     sync.Mutex
	timer  *time.Timer
	closed bool
}

// NewExpiringConn wraps c. Wrap the raw connection under TLS to keep the *tls.Conn that net/http looks for.
func NewExpiringConn(c net.Conn) *ExpiringConn { return &ExpiringConn{Conn: c} }

// ExpireAt closes the connection at t (nothing when t is zero), calling onExpire (if set) first. It replaces an
// earlier deadline.
func (c *ExpiringConn) ExpireAt(t time.Time, onExpire func()) {
	if t.IsZero() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(time.Until(t), func() {
		if onExpire != nil {
			onExpire()
		}
		_ = c.Close()
	})
}

// Close stops the timer and closes the connection.
func (c *ExpiringConn) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// GRPCCredentials returns gRPC transport credentials over cfg whose connections end with the certificates that
// authenticated them. A server closes a connection when the client's certificate or its own expires. A client
// closes it RetireAt before the first of its own and the server's certificate expires, so it reconnects with its
// current SVID before the server has to cut it; gRPC clients redial on their own, and an xDS stream resumes from
// the versions it holds. onExpire, if set, is called when a server closes a connection for that reason.
func GRPCCredentials(cfg *tls.Config, onExpire func(remote net.Addr)) credentials.TransportCredentials {
	return &expiringCreds{TransportCredentials: credentials.NewTLS(cfg), cfg: cfg, onExpire: onExpire}
}

type expiringCreds struct {
	credentials.TransportCredentials
	cfg      *tls.Config
	onExpire func(net.Addr)
}

func (c *expiringCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var p Presented
	conn, info, err := credentials.NewTLS(p.Track(c.cfg)).ClientHandshake(ctx, authority, raw)
	if err != nil {
		return conn, info, err
	}
	ec := NewExpiringConn(conn)
	ec.ExpireAt(RetireAt(time.Now(), Earliest(p.NotAfter(), peerNotAfterOf(info))), nil)
	return ec, info, nil
}

func (c *expiringCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var p Presented
	conn, info, err := credentials.NewTLS(p.Track(c.cfg)).ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	var onExpire func()
	if c.onExpire != nil {
		remote := raw.RemoteAddr()
		onExpire = func() { c.onExpire(remote) }
	}
	ec := NewExpiringConn(conn)
	ec.ExpireAt(Earliest(p.NotAfter(), peerNotAfterOf(info)), onExpire)
	return ec, info, nil
}

func (c *expiringCreds) Clone() credentials.TransportCredentials {
	return &expiringCreds{TransportCredentials: c.TransportCredentials.Clone(), cfg: c.cfg, onExpire: c.onExpire}
}

func peerNotAfterOf(info credentials.AuthInfo) time.Time {
	if ti, ok := info.(credentials.TLSInfo); ok {
		return PeerNotAfter(&ti.State)
	}
	return time.Time{}
}
