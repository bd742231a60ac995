package sidecar

import (
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestResolve: a valid config resolves into parsed values; an invalid one is an error naming the field, never a
// panic, whatever reaches the parsers.
func TestResolve(t *testing.T) {
	cfg, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Egress.TokenService = &EgressTokenServiceConfig{Endpoint: "https://127.0.0.1:8443/token",
		ServerID: "spiffe://example.org/token-service"}
	cfg.Ingress.MTLS.AllowIDs = []string{"spiffe://example.org/agent/planner"}
	rt, err := cfg.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.EgressRoutes) != 2 || rt.EgressRoutes[0].Modes != wire.ModeMTLS|wire.ModeWPT ||
		rt.EgressRoutes[0].Upstream.Host != "127.0.0.1:9443" || rt.EgressRoutes[1].ProofLifetime.Seconds() != 30 {
		t.Errorf("egress routes %+v", rt.EgressRoutes)
	}
	if rt.TokenServiceID.String() != "spiffe://example.org/token-service" || !rt.TxnKeysServerID.IsZero() {
		t.Errorf("token service %v, txn keys server %v", rt.TokenServiceID, rt.TxnKeysServerID)
	}
	if r := rt.IngressRoute; r.Name != "weather.tools.local" || r.Modes != wire.ModeMTLS|wire.ModeWPT|wire.ModeHTTPSig ||
		r.Upstream.String() != "http://127.0.0.1:8080" {
		t.Errorf("ingress route %+v", r)
	}
	if err := rt.Peers(spiffeid.RequireFromString("spiffe://example.org/agent/planner"), nil); err != nil {
		t.Errorf("an allowed peer refused: %v", err)
	}
	if err := rt.Peers(spiffeid.RequireFromString("spiffe://example.org/agent/other"), nil); err == nil {
		t.Error("a peer outside allowIDs admitted")
	}

	cfg.Ingress.MTLS.AllowIDs = []string{"not a SPIFFE ID"}
	if _, err := cfg.Resolve(); err == nil || !strings.Contains(err.Error(), "ingress.mtls.allowIDs[0]") {
		t.Errorf("invalid allowIDs: %v", err)
	}
	// What Validate guards, the parsers refuse too: no Require*/Must* is left to panic on a value that slipped past.
	for _, m := range []*IngressMTLSConfig{{AllowIDs: []string{"x"}}, {TrustDomains: []string{"bad domain"}}} {
		if _, err := peerAuthorizer(m); err == nil {
			t.Errorf("peerAuthorizer(%+v) accepted", m)
		}
	}
}
