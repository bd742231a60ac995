package sidecar

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/proxy"
)

// Reload applies what of cfg can change while the sidecar runs (SIGHUP): the egress routes, the ingress policy
// files, the limits the handlers read per request (maxHeaderBytes, maxBodyBytes, maxBufferedBodies,
// bodyReadTimeout, bodyMinRate) and the listeners' connection caps (maxConnections, maxConnectionsPerIP: lowering
// them closes no connection), and it re-reads the credential files now rather than at the next poll. cfg is
// resolved first (Config.Resolve). Everything is built and checked before anything is swapped, so a config that fails changes nothing:
// the sidecar keeps serving its previous state and the error says why. Requests in flight finish with the state
// they started with.
//
// The rest (listeners, identity source, ingress settings, controller, admin) is bound at start: restart names the
// top-level sections that differ and are not applied until the next start, and the limits fields bound at start
// by name (limits.readHeaderTimeout, limits.idleTimeout: fields of the running http.Server; limits.upstreamTimeout:
// of the upstream transports; limits.maxHeaderBytes when raised past twice its start value, net/http's own cap).
func (s *Sidecar) Reload(cfg *Config) (restart []string, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.running
	rt, err := cfg.Resolve()
	if err != nil {
		return nil, err
	}

	// Credential files first: FileSource.Reload keeps the old credentials when the new files are bad.
	if r, ok := s.src.(interface{ Reload() error }); ok && cfg.Identity.Files != nil {
		if err := r.Reload(); err != nil {
			return nil, fmt.Errorf("identity.files: %w", err)
		}
	}

	var table *proxy.RouteTable
	if s.egressH != nil && cfg.Egress != nil {
		if err := sameRouteTokens(old.Egress, cfg.Egress); err != nil {
			return nil, err
		}
		if table, err = proxy.NewRouteTable(rt.EgressRoutes...); err != nil {
			return nil, fmt.Errorf("egress.routes: %w", err)
		}
	}
	var set *policy.Set
	if s.localPolicy != nil && cfg.Ingress != nil && cfg.Ingress.Policy != nil {
		if set, err = compilePolicyFiles(cfg.Ingress.Policy); err != nil {
			return nil, err
		}
	}
	// SetRoutes checks the table against the handler (signers, response verifier) before it swaps: the last
	// step that can fail, so nothing was swapped when it does.
	if table != nil {
		if err := s.egressH.SetRoutes(table); err != nil {
			return nil, fmt.Errorf("egress.routes: %w", err)
		}
		s.metrics.preRegister(string(proxy.Egress), routeNames(rt.EgressRoutes))
	}
	if set != nil {
		s.localPolicy.Swap(set)
	}

	// The limits last: nothing below fails. Requests in flight keep the snapshot they started with.
	s.live.Store(proxyLimits(cfg.Limits, s.cfg.ShutdownGrace))
	s.server.SetConnCaps(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerIP)

	next := *old
	next.Log = cfg.Log
	next.Limits = cfg.Limits
	if table != nil {
		e := *old.Egress
		e.Routes = cfg.Egress.Routes
		next.Egress = &e
	}
	if set != nil {
		in := *old.Ingress
		in.Policy = cfg.Ingress.Policy
		next.Ingress = &in
	}
	s.running = &next
	restart = slices.DeleteFunc(changedSections(&next, cfg), func(n string) bool { return n == "limits" })
	return append(restart, s.startBoundLimits(cfg.Limits)...), nil
}

// startBoundLimits names the limits fields in l that differ from those the sidecar started with and that only a
// restart applies.
func (s *Sidecar) startBoundLimits(l LimitsConfig) []string {
	start := s.cfg.Limits
	var out []string
	if l.ReadHeaderTimeout != start.ReadHeaderTimeout {
		out = append(out, "limits.readHeaderTimeout")
	}
	if l.IdleTimeout != start.IdleTimeout {
		out = append(out, "limits.idleTimeout")
	}
	if l.UpstreamTimeout != start.UpstreamTimeout {
		out = append(out, "limits.upstreamTimeout")
	}
	// Handlers refuse headers over the new value; net/http itself cuts at twice the value at start (proxy.Server).
	if l.MaxHeaderBytes > 2*start.MaxHeaderBytes {
		out = append(out, "limits.maxHeaderBytes")
	}
	return out
}

// sameRouteTokens refuses a route change that touches txnToken or accessToken: their token clients are built at
// start, per route name.
func sameRouteTokens(old, cur *EgressConfig) error {
	type tokens struct {
		txn    *RouteTxnConfig
		access *RouteAccessTokenConfig
	}
	was := map[string]tokens{}
	for _, r := range old.Routes {
		was[r.Name] = tokens{r.TxnToken, r.AccessToken}
	}
	for i, r := range cur.Routes {
		w := was[r.Name]
		if !reflect.DeepEqual(w.txn, r.TxnToken) || !reflect.DeepEqual(w.access, r.AccessToken) {
			return fmt.Errorf("egress.routes[%d] (%q): txnToken and accessToken changes need a restart", i, r.Name)
		}
	}
	return nil
}

// changedSections names the top-level config sections (YAML keys) where cur differs from running.
func changedSections(running, cur *Config) []string {
	var out []string
	a, b := reflect.ValueOf(running).Elem(), reflect.ValueOf(cur).Elem()
	for i := range a.NumField() {
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("yaml"), ",")
			out = append(out, name)
		}
	}
	return out
}
