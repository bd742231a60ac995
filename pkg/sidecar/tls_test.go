package sidecar

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Each list that is set restricts: with trust domains and allowed IDs both, a peer must pass both.
func TestPeerAuthorizer(t *testing.T) {
	planner := spiffeid.RequireFromString("spiffe://example.org/agent/planner")
	other := spiffeid.RequireFromString("spiffe://example.org/agent/other")
	partner := spiffeid.RequireFromString("spiffe://partner.example/agent/planner")
	for _, tc := range []struct {
		name  string
		cfg   IngressMTLSConfig
		admit map[spiffeid.ID]bool
	}{
		{"trust domain", IngressMTLSConfig{TrustDomains: []string{"example.org"}},
			map[spiffeid.ID]bool{planner: true, other: true, partner: false}},
		{"ids", IngressMTLSConfig{AllowIDs: []string{planner.String(), partner.String()}},
			map[spiffeid.ID]bool{planner: true, other: false, partner: true}},
		{"both", IngressMTLSConfig{TrustDomains: []string{"example.org"}, AllowIDs: []string{planner.String(), partner.String()}},
			map[spiffeid.ID]bool{planner: true, other: false, partner: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authorize, err := peerAuthorizer(&tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for id, want := range tc.admit {
				if err := authorize(id, nil); (err == nil) != want {
					t.Errorf("%s: admitted = %t, want %t (%v)", id, err == nil, want, err)
				}
			}
		})
	}
}
