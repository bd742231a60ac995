package controller

import (
	"context"
	"net"
	"net/http"
	"os"

	"github.com/agentauth/agentauth/internal/confyaml"
	"go.uber.org/zap"
)

// adminServer serves the admin API (admin.go) on the Unix socket admin.socket.
type adminServer struct {
	c   *Controller
	ln  net.Listener
	srv *http.Server
}

func (a *adminServer) provision(context.Context) (err error) {
	cfg := a.c.cfg.Admin
	dirMode, sockMode := os.FileMode(0o700), os.FileMode(0o600)
	if len(cfg.AllowedUIDs)+len(cfg.AllowedGIDs) > 0 {
		// Other users must be able to connect; the peer check decides who is served.
		dirMode, sockMode = 0o755, 0o666
	}
	ln, err := listenUnix("admin.socket", cfg.Socket, dirMode, sockMode)
	if err != nil {
		return err
	}
	a.c.onClose(func() { _ = ln.Close(); _ = os.Remove(cfg.Socket) })
	a.ln = cfg.Limits.Listener(ln)
	a.srv = cfg.Limits.Server(a.c.adminPeerCheck(a.c.adminHandler()))
	a.srv.ConnContext = withPeerCred
	return nil
}

func (a *adminServer) start(_ context.Context, fail func(error)) error {
	go func() { fail(serveHTTP(a.srv, a.ln)) }()
	return nil
}

func (a *adminServer) stop(ctx context.Context) { _ = a.srv.Shutdown(ctx) }

func (a *adminServer) validate(p *confyaml.Problems) { a.c.cfg.Admin.validate(p) }

func (a *adminServer) logFields() []zap.Field {
	return []zap.Field{zap.String("admin_socket", a.c.cfg.Admin.Socket)}
}

var (
	_ component = (*adminServer)(nil)
	_ validator = (*adminServer)(nil)
	_ serving   = (*adminServer)(nil)
)
