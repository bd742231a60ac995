package controller

import (
	"context"
	"net"
	"net/http"

	"github.com/agentauth/agentauth/internal/confyaml"
	"go.uber.org/zap"
)

// tokenServer serves the token service (tokens.go) over TLS on tokenService.listen.
type tokenServer struct {
	c   *Controller
	ln  net.Listener
	srv *http.Server
}

func (t *tokenServer) provision(context.Context) (err error) {
	cfg := t.c.cfg.TokenService
	if t.ln, err = t.c.listen("tokenService.listen", cfg.Listen, cfg.Limits); err != nil {
		return err
	}
	t.srv, err = t.c.startTokenService(t.c.keys, t.ln.Addr().String())
	return err
}

func (t *tokenServer) start(_ context.Context, fail func(error)) error {
	go func() { fail(serveHTTP(t.srv, t.ln)) }()
	t.c.log.Info("token service serving", zap.String("endpoint", TokenEndpoint(t.ln.Addr().String())))
	return nil
}

func (t *tokenServer) stop(ctx context.Context) { _ = t.srv.Shutdown(ctx) }

func (t *tokenServer) validate(p *confyaml.Problems) { t.c.cfg.TokenService.validate(p, t.c.td) }

var (
	_ component = (*tokenServer)(nil)
	_ validator = (*tokenServer)(nil)
)
