package wire

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestIDs(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, tc := range []struct {
		name string
		got  spiffeid.ID
		want string
	}{
		{"controller", ControllerID(td), "spiffe://example.org/agentauth/controller"},
		{"issuer", IssuerID(td), "spiffe://example.org/agentauth/issuer"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, tc.got, tc.want)
		}
	}
	if r := ReservedIDs(td); len(r) != 2 || r[0] != IssuerID(td) || r[1] != ControllerID(td) {
		t.Errorf("ReservedIDs = %v", r)
	}
}
