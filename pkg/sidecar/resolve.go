package sidecar

import (
	"fmt"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Runtime is a Config resolved: the values the sidecar runs with, each parsed once, here. New and Reload build
// from it and never parse a config value again, so a config that resolved cannot fail (or panic) there on a value
// Validate accepted.
type Runtime struct {
	*Config
	// EgressRoutes are egress.routes as the data plane routes them; nil without egress.
	EgressRoutes []*proxy.Route
	// TokenServiceID is the SPIFFE ID egress.tokenService must present; zero: the controller's.
	TokenServiceID spiffeid.ID
	// IngressRoute is the ingress's one route; nil without ingress.
	IngressRoute *proxy.Route
	// TxnKeysServerID is the SPIFFE ID ingress.txnToken.jwksURL must present; zero: the controller's.
	TxnKeysServerID spiffeid.ID
	// Peers admits the client certificates ingress.mtls allows; nil without ingress.mtls.
	Peers tlsconfig.Authorizer
}

// Resolve validates c (Validate is its error half) and parses it into the Runtime the sidecar runs with.
func (c *Config) Resolve() (*Runtime, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rt := &Runtime{Config: c}
	var err error
	if e := c.Egress; e != nil {
		if rt.EgressRoutes, err = egressRoutes(e); err != nil {
			return nil, err
		}
		if ts := e.TokenService; ts != nil {
			if rt.TokenServiceID, err = optionalID("egress.tokenService.serverID", ts.ServerID); err != nil {
				return nil, err
			}
		}
	}
	if in := c.Ingress; in != nil {
		if rt.IngressRoute, err = ingressRoute(in); err != nil {
			return nil, err
		}
		if t := in.TxnToken; t != nil {
			if rt.TxnKeysServerID, err = optionalID("ingress.txnToken.serverID", t.ServerID); err != nil {
				return nil, err
			}
		}
		if m := in.MTLS; m != nil {
			if rt.Peers, err = peerAuthorizer(m); err != nil {
				return nil, err
			}
		}
	}
	return rt, nil
}

// optionalID parses a SPIFFE ID field that may be empty (the zero ID then).
func optionalID(field, raw string) (spiffeid.ID, error) {
	if raw == "" {
		return spiffeid.ID{}, nil
	}
	id, err := spiffeid.FromString(raw)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%s: %w", field, err)
	}
	return id, nil
}

// egressRoutes are the routes of egress.routes.
func egressRoutes(e *EgressConfig) ([]*proxy.Route, error) {
	routes := make([]*proxy.Route, 0, len(e.Routes))
	for i, rc := range e.Routes {
		modes, err := wire.ParseModes(rc.Modes...)
		if err != nil {
			return nil, fmt.Errorf("egress.routes[%d].modes: %w", i, err)
		}
		up, err := url.Parse(rc.Upstream)
		if err != nil {
			return nil, fmt.Errorf("egress.routes[%d].upstream: %w", i, err)
		}
		routes = append(routes, &proxy.Route{
			Name:            rc.Name,
			Match:           proxy.Match{Host: rc.Host, PathPrefix: rc.PathPrefix},
			Upstream:        up,
			H2C:             rc.H2C,
			Modes:           modes,
			Audience:        rc.Audience,
			ProofLifetime:   rc.ProofLifetime,
			UpstreamID:      rc.ServerID,
			SignedResponses: rc.SignedResponses,
			KeepHost:        true,
		})
	}
	return routes, nil
}

// ingressRoute is the ingress's one route. The expected proof audience is built from the configured host (or is
// the configured audience), never from the request; a request for another host matches no route and is refused.
func ingressRoute(in *IngressConfig) (*proxy.Route, error) {
	modes, err := wire.ParseModes(in.Require...)
	if err != nil {
		return nil, fmt.Errorf("ingress.require: %w", err)
	}
	backend, err := url.Parse(in.Backend)
	if err != nil {
		return nil, fmt.Errorf("ingress.backend: %w", err)
	}
	route := &proxy.Route{Name: ingressRouteName(in), Match: proxy.Match{Host: in.Host}, Upstream: backend, H2C: in.BackendH2C,
		Modes: modes, Audience: in.Audience, KeepHost: true}
	if in.ExternalURL != "" {
		if route.ExternalURL, err = url.Parse(in.ExternalURL); err != nil {
			return nil, fmt.Errorf("ingress.externalURL: %w", err)
		}
	}
	if in.Host == "" {
		route.Match.Host = proxy.AnyHost
	}
	return route, nil
}

// ingressRouteName names the ingress route in metrics, decision records and the WWW-Authenticate realm: the
// tool's name (ingress.host, what policy calls the Tool), or "ingress" when any host is served.
func ingressRouteName(in *IngressConfig) string {
	if in.Host != "" {
		return in.Host
	}
	return "ingress"
}

// peerAuthorizer admits a client X.509-SVID from one of the trust domains, and only one of the AllowIDs when
// those are set: each list that is set restricts.
func peerAuthorizer(m *IngressMTLSConfig) (tlsconfig.Authorizer, error) {
	var authzs []tlsconfig.Authorizer
	var tds []spiffeid.TrustDomain
	for i, name := range m.TrustDomains {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("ingress.mtls.trustDomains[%d]: %w", i, err)
		}
		tds = append(tds, td)
	}
	if len(tds) > 0 {
		authzs = append(authzs, mtls.AuthorizeTrustDomains(tds...))
	}
	var ids []spiffeid.ID
	for i, raw := range m.AllowIDs {
		id, err := spiffeid.FromString(raw)
		if err != nil {
			return nil, fmt.Errorf("ingress.mtls.allowIDs[%d]: %w", i, err)
		}
		ids = append(ids, id)
	}
	if len(ids) > 0 {
		authzs = append(authzs, mtls.AuthorizeIDs(ids...))
	}
	return mtls.AllOf(authzs...), nil
}
