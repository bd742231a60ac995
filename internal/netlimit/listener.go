package netlimit

import (
	"net"
	"net/netip"
	"sync"
)

// NewListener caps l at maxConns concurrent connections and at maxPerIP from one client address (ClientKey); zero
// leaves either unlimited. At maxConns, Accept waits for a connection to close, leaving further ones in the
// kernel's accept queue. A connection over maxPerIP is accepted and closed at once, so one client cannot fill
// that queue for everyone else. Connections expose NetConn, so wrappers can still reach the socket.
func NewListener(l net.Listener, maxConns, maxPerIP int) net.Listener {
	ln := &listener{Listener: l, maxPerIP: maxPerIP, done: make(chan struct{}), perIP: map[netip.Prefix]int{}}
	if maxConns > 0 {
		ln.sem = make(chan struct{}, maxConns)
	}
	return ln
}

type listener struct {
	net.Listener
	sem       chan struct{}
	maxPerIP  int
	done      chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	perIP map[netip.Prefix]int
}

func (l *listener) Accept() (net.Conn, error) {
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.release()
			return nil, err
		}
		key, ok := ClientKey(c.RemoteAddr())
		if !ok || l.maxPerIP <= 0 {
			return &conn{Conn: c, l: l}, nil
		}
		l.mu.Lock()
		n := l.perIP[key]
		if n < l.maxPerIP {
			l.perIP[key] = n + 1
		}
		l.mu.Unlock()
		if n >= l.maxPerIP {
			_ = c.Close()
			continue
		}
		return &conn{Conn: c, l: l, key: key, counted: true}, nil
	}
}

func (l *listener) release() {
	if l.sem != nil {
		<-l.sem
	}
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
		if c.counted {
			c.l.mu.Lock()
			if n := c.l.perIP[c.key] - 1; n > 0 {
				c.l.perIP[c.key] = n
			} else {
				delete(c.l.perIP, c.key)
			}
			c.l.mu.Unlock()
		}
		c.l.release()
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
