package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"sync"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/netlimit"
)

// Listener is one front end of the sidecar.
type Listener struct {
	Name string
	// Listener is already bound; the Server closes it.
	Listener net.Listener
	Handler  http.Handler
	// TLSConfig, when set, makes this a TLS listener (HTTP/1.1 and HTTP/2 by ALPN). It is used for every
	// handshake, so a config whose GetCertificate / GetConfigForClient / verify callbacks read a rotating source
	// (pkg/mtls) rotates without a restart. Nil: cleartext HTTP/1.1 and h2c (HTTP/2 with prior knowledge).
	TLSConfig *tls.Config
	// Transparent recovers each connection's original destination (SO_ORIGINAL_DST, Linux only) into the
	// request context. Cleartext only.
	Transparent bool
}

// Server runs listeners with the sidecar's limits, and drains them on shutdown. It is used once.
type Server struct {
	log        *zap.Logger
	limits     Limits
	servers    []*http.Server
	listeners  []net.Listener
	capped     []netlimit.CapSetter
	base       context.Context
	cancelBase context.CancelFunc
}

// debugLog is a standard library logger (net/http's ErrorLog) writing to log at debug: the decision record logs
// each failure once, and what net/http adds (a TLS handshake error, a body copy error) is detail.
func debugLog(log *zap.Logger) *stdlog.Logger {
	l, err := zap.NewStdLogAt(log, zap.DebugLevel)
	if err != nil {
		// Only for a level zap does not know.
		return stdlog.New(io.Discard, "", 0)
	}
	return l
}

// NewServer wraps ls; nothing is served until Serve. A nil logger logs nothing.
func NewServer(limits Limits, logger *zap.Logger, ls ...Listener) (*Server, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Server{log: logger, limits: limits.withDefaults()}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	for _, l := range ls {
		if l.Listener == nil || l.Handler == nil {
			return nil, fmt.Errorf("proxy: listener %q needs a net.Listener and a handler", l.Name)
		}
		if c := l.TLSConfig; c != nil && (c.ClientAuth == tls.RequestClientCert || c.ClientAuth == tls.RequireAnyClientCert) &&
			c.VerifyPeerCertificate == nil && c.VerifyConnection == nil && c.GetConfigForClient == nil {
			// Ingress reads the peer's SPIFFE ID from its certificate; an unverified one must never get there.
			return nil, fmt.Errorf("proxy: listener %q asks for client certificates but nothing verifies them", l.Name)
		}
		if l.Transparent {
			if err := transparentSupported(); err != nil {
				return nil, err
			}
			if l.TLSConfig != nil {
				return nil, fmt.Errorf("proxy: listener %q: transparent interception serves cleartext HTTP only", l.Name)
			}
		}
		s.add(l)
	}
	return s, nil
}

// SetConnCaps changes every listener's connection caps (Limits.MaxConns, MaxConnsPerIP; zero or less takes the
// default) for the connections accepted from now on. Lowering them closes no connection.
func (s *Server) SetConnCaps(maxConns, maxPerIP int) {
	l := Limits{MaxConns: maxConns, MaxConnsPerIP: maxPerIP}.withDefaults()
	for _, c := range s.capped {
		c.SetCaps(l.MaxConns, l.MaxConnsPerIP)
	}
}

func (s *Server) add(l Listener) {
	ln := netlimit.NewListener(l.Listener, s.limits.MaxConns, s.limits.MaxConnsPerIP)
	s.capped = append(s.capped, ln.(netlimit.CapSetter))
	var protos http.Protocols
	protos.SetHTTP1(true)
	if l.TLSConfig != nil {
		cfg := l.TLSConfig.Clone()
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{"h2", "http/1.1"}
		}
		ln = tls.NewListener(ln, cfg)
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		Handler:           l.Handler,
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		// Twice the limit: headers between the two reach the handlers, which refuse them with the JSON body every
		// refusal has; only beyond that does net/http answer its own plain 431.
		MaxHeaderBytes: 2 * s.limits.MaxHeaderBytes,
		Protocols:      &protos,
		HTTP2: &http.HTTP2Config{MaxDecoderHeaderTableSize: int(s.limits.HTTP2HeaderTableSize),
			MaxEncoderHeaderTableSize: int(s.limits.HTTP2HeaderTableSize)},
		// Requests, upgraded connections and tunnels derive from base, which Shutdown cancels at the end.
		BaseContext: func(net.Listener) context.Context { return s.base },
		ErrorLog:    debugLog(s.log.With(zap.String("listener", l.Name))),
	}
	if l.Transparent {
		name := l.Name
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return s.transparentContext(ctx, name, c)
		}
	}
	s.servers = append(s.servers, srv)
	s.listeners = append(s.listeners, ln)
}

func (s *Server) transparentContext(ctx context.Context, name string, c net.Conn) context.Context {
	tc := tcpConnOf(c)
	if tc == nil {
		return ctx
	}
	dst, err := originalDst(tc)
	if err != nil {
		// Not redirected (a direct connection): the request is routed by its Host header alone.
		s.log.Debug("no original destination", zap.String("listener", name), zap.String("remote", c.RemoteAddr().String()),
			zap.Error(err))
		return ctx
	}
	if local, ok := tc.LocalAddr().(*net.TCPAddr); ok && local.AddrPort() == dst {
		return ctx
	}
	return WithOriginalDestination(ctx, dst)
}

// tcpConnOf unwraps listener wrappers down to the kernel socket.
func tcpConnOf(c net.Conn) *net.TCPConn {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
}

// Serve serves every listener until ctx ends or one fails, then shuts down gracefully within
// Limits.DrainTimeout. It returns the first listener error, or nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, len(s.servers))
	for i, srv := range s.servers {
		go func() {
			err := srv.Serve(s.listeners[i])
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
	}
	var first error
	running := len(s.servers)
	if running > 0 {
		select {
		case <-ctx.Done():
		case first = <-errc:
			running--
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.limits.DrainTimeout)
	defer cancel()
	serr := s.Shutdown(sctx)
	for ; running > 0; running-- {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return errors.Join(first, serr)
}

// Shutdown stops accepting, lets in-flight requests finish and closes idle connections; when ctx ends first it
// closes the rest. Upgraded connections (WebSocket) and CONNECT tunnels are then ended too.
func (s *Server) Shutdown(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, srv := range s.servers {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	s.cancelBase()
	return errors.Join(errs...)
}

// splice copies both ways until both directions end or ctx does, then closes both connections. A direction that
// ends half-closes its destination so protocols that signal end-of-input by EOF still work.
func splice(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() {
		a.Close()
		b.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc := tcpConnOf(dst); tc != nil {
			_ = tc.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Go(func() { cp(a, b) })
	wg.Go(func() { cp(b, a) })
	wg.Wait()
	a.Close()
	b.Close()
}
