package controller

import (
	"context"
	"net"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/xds/xdsserver"
)

// xdsServer serves the delta-ADS stream that pushes the publisher's state to sidecars, over mTLS on xds.listen.
// It sets Controller.xds, which the admin API asks for the sidecars connected.
type xdsServer struct {
	c  *Controller
	ln net.Listener
}

func (x *xdsServer) provision(context.Context) (err error) {
	c, cfg := x.c, x.c.cfg.XDS
	xdsTLS := mtls.ServerConfig(c.self, mtls.AuthorizeTrustDomains(c.td))
	if c.xds, err = xdsserver.NewServer(c.pub, xdsserver.ServerConfig{TLSConfig: xdsTLS, HandshakeTimeout: cfg.Limits.ReadHeaderTimeout,
		MaxConnIdle: cfg.Limits.IdleTimeout, Logger: c.log.Named("xds")}); err != nil {
		return err
	}
	if err := c.reg.Register(xdsserver.NewServerCollector(c.xds)); err != nil {
		return err
	}
	x.ln, err = c.listen("xds.listen", cfg.Listen, cfg.Limits)
	return err
}

func (x *xdsServer) start(_ context.Context, fail func(error)) error {
	go func() { fail(x.c.xds.Serve(x.ln)) }()
	return nil
}

func (x *xdsServer) stop(context.Context) { x.c.xds.Stop() }

func (x *xdsServer) validate(p *confyaml.Problems) { validateListen(p, "xds", x.c.cfg.XDS) }

func (x *xdsServer) logFields() []zap.Field {
	return []zap.Field{zap.String("xds", x.ln.Addr().String())}
}

var (
	_ component = (*xdsServer)(nil)
	_ validator = (*xdsServer)(nil)
	_ serving   = (*xdsServer)(nil)
)
