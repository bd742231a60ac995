package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/logging"
	"github.com/agentauth/agentauth/internal/netlimit"
)

// ReadinessCheck reports why the sidecar cannot serve yet (an error) or a detail while it can (e.g. "fail-static:
// controller unreachable since ..."). Checks must be cheap: /readyz is polled.
type ReadinessCheck func(ctx context.Context) (detail string, err error)

// Admin serves /healthz (the process is alive), /readyz (credentials loaded and every check passes, with JSON
// detail), /metrics (Prometheus, from the sidecar's own registry) and, when asked for, /logging and
// /debug/pprof/.
type Admin struct {
	mu     sync.RWMutex
	checks map[string]ReadinessCheck
	srv    *http.Server
	limits netlimit.Config
	// stopping is set on SIGTERM, before the drain: /readyz answers 503 from then on so load balancers stop
	// sending while in-flight requests finish.
	stopping atomic.Bool
	// starting is set while the sidecar is being built: the checks run (they say what the start waits for)
	// but /readyz is not ready.
	starting atomic.Bool
}

// AdminOption adjusts an Admin at construction.
type AdminOption func(*http.ServeMux)

// WithPprof serves net/http/pprof's profiles under /debug/pprof/ (admin.pprof in the config).
func WithPprof() AdminOption {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
}

// WithLogging serves lvl at /logging: GET reads it, PUT or POST ?level=debug changes it, from a loopback peer
// only (see logging.LevelHandler).
func WithLogging(lvl zap.AtomicLevel, log *zap.Logger) AdminOption {
	return func(mux *http.ServeMux) { mux.Handle("/logging", logging.LevelHandler(lvl, log)) }
}

// NewAdmin returns an admin server for reg's metrics.
func NewAdmin(reg *prometheus.Registry, opts ...AdminOption) *Admin {
	a := &Admin{checks: map[string]ReadinessCheck{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	for _, o := range opts {
		o(mux)
	}
	a.srv = &http.Server{Handler: mux}
	a.SetLimits(defaultAdminLimits)
	return a
}

// SetLimits bounds the admin server's connections and timeouts (admin.limits); call it before Serve.
func (a *Admin) SetLimits(l netlimit.Config) {
	a.limits = l
	a.srv.ReadHeaderTimeout, a.srv.ReadTimeout, a.srv.IdleTimeout = l.ReadHeaderTimeout, l.ReadTimeout, l.IdleTimeout
}

// AddCheck registers a named readiness check; a later check of the same name replaces it.
func (a *Admin) AddCheck(name string, c ReadinessCheck) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks[name] = c
}

type readyReport struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// SetStopping makes /readyz answer 503 ("shutdown": "stopping") from now on, whatever the checks say.
func (a *Admin) SetStopping() { a.stopping.Store(true) }

// SetStarting says whether the sidecar is still being built (not ready whatever the checks say).
func (a *Admin) SetStarting(b bool) { a.starting.Store(b) }

// Ready runs every check and reports the result.
func (a *Admin) Ready(ctx context.Context) (bool, map[string]string) {
	if a.stopping.Load() {
		return false, map[string]string{"shutdown": "stopping: draining in-flight requests"}
	}
	a.mu.RLock()
	names := make([]string, 0, len(a.checks))
	for n := range a.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	checks := make([]ReadinessCheck, len(names))
	for i, n := range names {
		checks[i] = a.checks[n]
	}
	a.mu.RUnlock()

	ready, out := true, make(map[string]string, len(names))
	for i, c := range checks {
		detail, err := c(ctx)
		switch {
		case err != nil:
			ready, out[names[i]] = false, "not ready: "+err.Error()
		case detail == "":
			out[names[i]] = "ok"
		default:
			out[names[i]] = detail
		}
	}
	if a.starting.Load() {
		ready, out["start"] = false, "starting"
	}
	return ready, out
}

func (a *Admin) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	ready, checks := a.Ready(ctx)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(readyReport{Ready: ready, Checks: checks})
}

// Serve serves on ln until Shutdown.
func (a *Admin) Serve(ln net.Listener) error {
	if err := a.srv.Serve(a.limits.Listener(ln)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the admin server at once.
func (a *Admin) Close() error { return a.srv.Close() }

// Shutdown stops the admin server.
func (a *Admin) Shutdown(ctx context.Context) error { return a.srv.Shutdown(ctx) }
