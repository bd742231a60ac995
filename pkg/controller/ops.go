package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/internal/logging"
)

// opsServer serves /healthz, /readyz, /metrics and /logging on ops.listen.
type opsServer struct {
	c   *Controller
	ln  net.Listener
	srv *http.Server
}

func (o *opsServer) provision(context.Context) (err error) {
	if o.ln, err = o.c.listen("ops.listen", o.c.cfg.Ops.Listen, o.c.cfg.Ops.Limits); err != nil {
		return err
	}
	o.srv = o.c.cfg.Ops.Limits.Server(o.c.opsHandler())
	return nil
}

func (o *opsServer) start(_ context.Context, fail func(error)) error {
	go func() { fail(serveHTTP(o.srv, o.ln)) }()
	return nil
}

func (o *opsServer) stop(ctx context.Context) { _ = o.srv.Shutdown(ctx) }

func (o *opsServer) validate(p *confyaml.Problems) { validateListen(p, "ops", o.c.cfg.Ops) }

func (o *opsServer) logFields() []zap.Field {
	return []zap.Field{zap.String("ops", o.ln.Addr().String())}
}

func (c *Controller) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if c.stopping.Load() {
			writeError(w, http.StatusServiceUnavailable, errors.New("stopping"))
			return
		}
		if !c.started.Load() {
			writeError(w, http.StatusServiceUnavailable, errors.New("starting"))
			return
		}
		if _, err := c.store.Version(); err != nil {
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("store: %w", err))
			return
		}
		if rs, ok := c.store.(readyStore); ok {
			if err := rs.Ready(r.Context()); err != nil {
				writeError(w, http.StatusServiceUnavailable, fmt.Errorf("store: %w", err))
				return
			}
		}
		for _, comp := range c.components {
			if r, ok := comp.(readiness); ok {
				if err := r.notReady(); err != nil {
					writeError(w, http.StatusServiceUnavailable, err)
					return
				}
			}
		}
		if err := probeWritable(c.cfg.DataDir); err != nil {
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("dataDir is not writable: %w", err))
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{}))
	if c.logLevel != nil {
		mux.Handle("/logging", logging.LevelHandler(*c.logLevel, c.log))
	}
	return mux
}

// readyStore is a store whose reads come from a cache (kubestore): Ready says whether its source still answers.
type readyStore interface {
	Ready(ctx context.Context) error
}

// probeWritable creates, syncs and removes a small file in dir. Reading the store says nothing about writing:
// bbolt reads from its memory map, and the controller also writes bundle.pem in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write([]byte("ok"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

var (
	_ component = (*opsServer)(nil)
	_ validator = (*opsServer)(nil)
	_ serving   = (*opsServer)(nil)
)
