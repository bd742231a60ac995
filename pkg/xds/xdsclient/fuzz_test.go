package xdsclient

import (
	"os"
	"path/filepath"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// FuzzClientHandle feeds arbitrary resource bytes to the sidecar's response handling: it must NACK or apply,
// never panic, and a NACK must leave the state untouched.
func FuzzClientHandle(f *testing.F) {
	seed, _ := proto.Marshal(spiffeRevocation("r1", "spiffe://example.org/a"))
	f.Add(uint8(1), "r1", seed)
	pol, _ := proto.Marshal(policy("p1", permitAll))
	f.Add(uint8(3), "p1", pol)
	f.Add(uint8(0), "example.org", []byte{0x0a, 0x0b, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r', 'g', 0x12, 0x01, 0x30})
	f.Add(uint8(2), "x", []byte{0xff, 0xff, 0xff})
	types := agentauthv1.ServedTypes()
	f.Fuzz(func(t *testing.T, typ uint8, name string, value []byte) {
		c, err := NewClient(ClientConfig{Target: "127.0.0.1:1", TLSConfig: testTLS})
		if err != nil {
			t.Fatal(err)
		}
		typeURL := types[int(typ)%len(types)]
		before := c.State()
		ack := c.handle(&discovery.DeltaDiscoveryResponse{
			TypeUrl:   typeURL,
			Nonce:     "1",
			Resources: []*discovery.Resource{{Name: name, Version: "v", Resource: &anypb.Any{TypeUrl: typeURL, Value: value}}},
		})
		if ack.GetErrorDetail() != nil && c.State() != before {
			t.Fatal("NACKed update changed the state")
		}
		if ack.GetErrorDetail() == nil && c.State().Len(typeURL) != 1 {
			t.Fatal("ACKed update not applied")
		}
	})
}

// FuzzRestore feeds arbitrary bytes as the saved state file: it must be refused or restored whole, never panic,
// and a refused file leaves the client empty and not synced (fail-closed).
func FuzzRestore(f *testing.F) {
	f.Add([]byte(`{"format":"agentauth-xds-state/1","trustDomain":"example.org","sha256":"","types":[]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "xds-state.json")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(ClientConfig{Target: "127.0.0.1:1", TLSConfig: testTLS, StateFile: file, TrustDomain: "example.org"})
		if err != nil {
			t.Fatal(err)
		}
		if !c.Status().Synced && c.State().Len(agentauthv1.PolicyType)+c.State().Len(agentauthv1.RevocationType) != 0 {
			t.Fatal("a refused state was applied")
		}
	})
}
