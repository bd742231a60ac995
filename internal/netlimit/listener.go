package netlimit

import (
	"net"
	"net/netip"
	"sync"
)

// NewListener caps l at maxConns concurrent connections and at maxPerIP from one client address (ClientKey); zero
// leaves either unlimited. At maxConns, Accept waits for a connection to close, leaving further ones in the
// kernel's accept queue. A connection over maxPerIP is accepted and closed at once, so one client cannot fill
// that queue for everyone else. Connections expose NetConn, so wrappers can still reach the socket. SetCaps
// changes both caps while the listener serves.
func NewListener(l net.Listener, maxConns, maxPerIP int) net.Listener {
	return &listener{Listener: l, maxConns: maxConns, maxPerIP: maxPerIP, done: make(chan struct{}),
		freed: make(chan struct{}), perIP: map[netip.Prefix]int{}}
}

// CapSetter is implemented by NewListener's listeners.
type CapSetter interface {
	// SetCaps sets the caps for the connections accepted from now on (zero: unlimited). Lowering a cap closes
	// no connection: the listener takes new ones again once enough have closed.
	SetCaps(maxConns, maxPerIP int)
}

type listener struct {
	net.Listener
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	maxConns int
	maxPerIP int
	active   int
	// freed is closed, and replaced, when a connection closes or the caps change: what a waiting Accept waits for.
	freed chan struct{}
	perIP map[netip.Prefix]int
}

func (l *listener) SetCaps(maxConns, maxPerIP int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxConns, l.maxPerIP = maxConns, maxPerIP
	l.wakeLocked()
}

func (l *listener) wakeLocked() {
	close(l.freed)
	l.freed = make(chan struct{})
}

// acquire takes a connection slot, waiting while the listener is at its cap.
func (l *listener) acquire() error {
	return l.waitFor(func() bool {
		if l.maxConns <= 0 || l.active < l.maxConns {
			l.active++
			return true
		}
		return false
	})
}

// underCap waits until the slot taken by acquire is within the cap: a cap lowered while Accept waited for a
// connection holds that connection back until enough others close.
func (l *listener) underCap() error {
	return l.waitFor(func() bool { return l.maxConns <= 0 || l.active <= l.maxConns })
}

// waitFor waits until ok, called with l.mu held, reports true, or the listener closes.
func (l *listener) waitFor(ok func() bool) error {
	for {
		l.mu.Lock()
		if ok() {
			l.mu.Unlock()
			return nil
		}
		wait := l.freed
		l.mu.Unlock()
		select {
		case <-wait:
		case <-l.done:
			return net.ErrClosed
		}
	}
}

func (l *listener) Accept() (net.Conn, error) {
	if err := l.acquire(); err != nil {
		return nil, err
	}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.release()
			return nil, err
		}
		key, ok := ClientKey(c.RemoteAddr())
		if !ok {
			cc := &conn{Conn: c, l: l}
			if err := l.underCap(); err != nil {
				_ = cc.Close()
				return nil, err
			}
			return cc, nil
		}
		l.mu.Lock()
		n := l.perIP[key]
		over := l.maxPerIP > 0 && n >= l.maxPerIP
		if !over {
			l.perIP[key] = n + 1
		}
		l.mu.Unlock()
		if over {
			_ = c.Close()
			continue
		}
		cc := &conn{Conn: c, l: l, key: key, counted: true}
		if err := l.underCap(); err != nil {
			_ = cc.Close()
			return nil, err
		}
		return cc, nil
	}
}

func (l *listener) release() {
	l.mu.Lock()
	l.active--
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type conn struct {
	net.Conn
	l       *listener
	key     netip.Prefix
	counted bool
	once    sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.counted {
			if n := c.l.perIP[c.key] - 1; n > 0 {
				c.l.perIP[c.key] = n
			} else {
				delete(c.l.perIP, c.key)
			}
		}
		c.l.active--
		c.l.wakeLocked()
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// NetConn returns the wrapped connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

// ClientKey is what per-client limits count by: an IPv4 address (IPv4-mapped IPv6 included), or the /64 of an
// IPv6 address, which one host typically holds whole. ok is false for addresses without an IP (Unix sockets).
func ClientKey(a net.Addr) (netip.Prefix, bool) {
	var ip netip.Addr
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(v.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(v.IP)
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Prefix{}, false
		}
		ip = ap.Addr()
	}
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p, true
}
