package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/mtls"
)

// upstream is one route's connection pools, replaced by fresh ones when a TLS connection they made must retire.
//
// A TLS connection is authenticated by the certificates of its handshake only, so it must not carry requests after
// the first of them (ours or the server's) expires: the ingress would refuse them, and rightly. net/http gives no
// way to age one pooled connection: an HTTP/2 ClientConn serving streams is never idle, so CloseIdleConnections on
// a timer would not retire it under steady load, and closing it would fail its in-flight requests. Instead each
// connection tells its transports the time to retire (mtls.RetireAt, a margin before its certificates expire), and
// the first request after that moves the route to new transports. Their connections are new handshakes, made with
// the current SVID. The old transports finish what they carry; their idle connections are closed then, and every
// connection closes itself when its certificates expire, so none outlives them. Connections made after a rotation
// retire with the older ones of the same transports, which costs at most one extra handshake per rotation.
type upstream struct {
	build func() *transports
	cur   atomic.Pointer[transports]
	mu    sync.Mutex
}

func newUpstream(build func() *transports) *upstream {
	u := &upstream{build: build}
	u.cur.Store(build())
	return u
}

// current returns the transports to send a request through, first replacing the current ones if they must
// retire.
func (u *upstream) current() *transports {
	t := u.cur.Load()
	if r := t.retireAt.Load(); r == 0 || time.Now().UnixNano() < r {
		return t
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if old := u.cur.Load(); old == t {
		u.cur.Store(u.build())
		old.closeIdle()
	}
	return u.cur.Load()
}

func (u *upstream) closeIdle() { u.cur.Load().closeIdle() }

// retireBy makes t retire at at the latest (zero: no change).
func (t *transports) retireBy(at time.Time) {
	if at.IsZero() {
		return
	}
	n := at.UnixNano()
	for {
		cur := t.retireAt.Load()
		if cur != 0 && cur <= n {
			return
		}
		if t.retireAt.CompareAndSwap(cur, n) {
			return
		}
	}
}

// checkPeerCertificate refuses a request on a connection whose peer certificate (or an intermediate the peer
// sent) has expired since the handshake: TLS checked it once, at the handshake, and a certificate past its
// NotAfter authenticates nothing. The refusal closes the connection (closesConnection), so the client comes
// back with a new handshake and its current certificate.
func checkPeerCertificate(cs *tls.ConnectionState, now time.Time) error {
	if !mtls.PeerExpired(cs, now) {
		return nil
	}
	return fmt.Errorf("%w: the client certificate of this connection expired at %s; connect again with the current one",
		autherr.ErrPeerCertExpired, mtls.PeerNotAfter(cs).UTC().Format(time.RFC3339))
}

// closesConnection reports whether a refusal ends the connection it came on, because the connection's own
// credential no longer counts: its peer certificate expired, or a revocation refused the caller. The response
// says "Connection: close": net/http then closes an HTTP/1.1 connection after it, and on HTTP/2 sends GOAWAY
// and closes the connection once its other streams are done, so in-flight requests finish and the client's next
// request opens a new connection, with a new handshake. (A revocation of a delegated user or a WIT closes the
// agent's connection too: a handshake is cheap next to telling these apart, and revocations are rare.)
func closesConnection(err error) bool {
	return errors.Is(err, autherr.ErrPeerCertExpired) || errors.Is(err, autherr.ErrRevoked)
}
