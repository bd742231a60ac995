package controller

import (
	"context"
	"fmt"
	"net"
	"os"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/internal/netlimit"
	"github.com/agentauth/agentauth/pkg/issuer"
)

// issuerServer serves the issuer (Attest, Renew) over gRPC on issuer.listen and, with issuer.localSocket, to local
// workloads on that Unix socket.
type issuerServer struct {
	c       *Controller
	ln      net.Listener
	srv     *grpc.Server
	local   *grpc.Server // nil without issuer.localSocket
	localLn net.Listener
}

func (is *issuerServer) provision(context.Context) (err error) {
	c := is.c
	if is.srv, err = issuer.NewGRPCServer(c.ca, c.issuerServiceConfig(),
		grpc.ChainUnaryInterceptor(c.metrics.issuerInterceptor(false), c.actions.issuerInterceptor(false))); err != nil {
		return err
	}
	if is.ln, err = c.listen("issuer.listen", c.cfg.Issuer.Listen, c.cfg.Issuer.Limits); err != nil {
		return err
	}
	if c.cfg.Issuer.LocalSocket != "" {
		return is.listenLocal()
	}
	return nil
}

func (is *issuerServer) start(_ context.Context, fail func(error)) error {
	go func() { fail(is.srv.Serve(is.ln)) }()
	if is.local != nil {
		go func() { fail(is.local.Serve(is.localLn)) }()
		is.c.log.Info("issuer serving local workloads", zap.String("socket", is.c.cfg.Issuer.LocalSocket),
			zap.Int("mapped_uids", len(is.c.cfg.Issuer.PeerIDs)))
	}
	return nil
}

func (is *issuerServer) stop(context.Context) {
	is.srv.GracefulStop()
	if is.local != nil {
		is.local.GracefulStop()
	}
}

func (is *issuerServer) validate(p *confyaml.Problems) { is.c.cfg.validateIssuer(p, is.c.td) }

func (is *issuerServer) logFields() []zap.Field {
	return []zap.Field{zap.String("issuer", is.ln.Addr().String())}
}

// issuerServiceConfig is the issuer service's configuration, for its TCP listener and its local socket alike.
func (c *Controller) issuerServiceConfig() issuer.ServiceConfig {
	is := c.cfg.Issuer
	return issuer.ServiceConfig{SVIDTTL: is.SVIDTTL, Withheld: c.withheld, RenewRefused: c.renewRefused,
		HandshakeTimeout: is.Limits.ReadHeaderTimeout, MaxConnIdle: is.Limits.IdleTimeout,
		AttestRate: netlimit.NewRateLimiter(is.RateLimit), Logger: c.log.Named("issuer")}
}

// listenLocal binds issuer.localSocket and builds the issuer service that attests by Unix peer credentials.
//
// The socket (and a directory it creates, umask permitting) is open to every local user on purpose: who may connect is not what
// decides anything. The kernel records the uid of each connecting process (SO_PEERCRED), which no process can
// forge; a uid listed in issuer.peerIDs gets that SPIFFE ID and any other is refused. Renewal is refused on this
// socket, and join tokens are bearer secrets wherever they are presented. Restricting the mode would only make
// the mapping useless to the workloads it names, which run as other users than the controller.
func (is *issuerServer) listenLocal() error {
	c := is.c
	peerIDs, err := c.cfg.peerIDs()
	if err != nil {
		return err
	}
	sc := c.issuerServiceConfig()
	sc.PeerIDs = peerIDs
	if is.local, err = issuer.NewLocalGRPCServer(c.ca, sc, grpc.ChainUnaryInterceptor(c.metrics.issuerInterceptor(true), c.actions.issuerInterceptor(true))); err != nil {
		return fmt.Errorf("issuer.peerIDs: %w", err)
	}
	path := c.cfg.Issuer.LocalSocket
	ln, err := listenUnix("issuer.localSocket", path, 0o755, 0o666)
	if err != nil {
		return err
	}
	c.onClose(func() { _ = ln.Close(); _ = os.Remove(path) })
	is.localLn = c.cfg.Issuer.Limits.Listener(ln)
	return nil
}

var (
	_ component = (*issuerServer)(nil)
	_ validator = (*issuerServer)(nil)
	_ serving   = (*issuerServer)(nil)
)
