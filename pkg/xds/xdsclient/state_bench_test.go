package xdsclient

import (
	"fmt"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

func stateWithRevocations(n int) *State {
	ups := make([]resourceUpdate, n)
	for i := range ups {
		id := fmt.Sprintf("r%d", i)
		ups[i] = resourceUpdate{name: id, version: "v", msg: spiffeRevocation(id, fmt.Sprintf("spiffe://example.org/agent/%d", i))}
	}
	return emptyState().with(agentauthv1.RevocationType, ups, nil)
}

// BenchmarkStateRevoked is the per-request revocation check of a sidecar holding 10,000 revocations.
func BenchmarkStateRevoked(b *testing.B) {
	st := stateWithRevocations(10_000)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if st.Revoked("spiffe", "", "spiffe://example.org/agent/not-revoked", now, now) != nil {
			b.Fatal("revoked")
		}
		if st.Revoked("spiffe", "", "spiffe://example.org/agent/77", now, now) == nil {
			b.Fatal("not revoked")
		}
	}
}

// BenchmarkApplyOneRevocation is applying one new revocation to a state holding 10,000 (copy-on-write).
func BenchmarkApplyOneRevocation(b *testing.B) {
	st := stateWithRevocations(10_000)
	up := []resourceUpdate{{name: "new", version: "v", msg: spiffeRevocation("new", "spiffe://example.org/agent/new")}}
	b.ReportAllocs()
	for b.Loop() {
		_ = st.with(agentauthv1.RevocationType, up, nil)
	}
}

// BenchmarkClientApplyRevocation is a sidecar's own work for one pushed revocation, transport aside: decode the
// response, check and apply it to a state of 200 revocations, and encode the ACK. With 1,000 sidecars in one
// process (BenchmarkRevocationPropagation), its garbage is what sets how often their shared heap is collected.
func BenchmarkClientApplyRevocation(b *testing.B) {
	c, err := NewClient(ClientConfig{Target: "127.0.0.1:1", TLSConfig: testTLS, OnUpdate: func(Update) {}})
	if err != nil {
		b.Fatal(err)
	}
	base := stateWithRevocations(200)
	value, err := proto.Marshal(spiffeRevocation("new", "spiffe://example.org/agent/new"))
	if err != nil {
		b.Fatal(err)
	}
	wire, err := proto.Marshal(&discovery.DeltaDiscoveryResponse{TypeUrl: agentauthv1.RevocationType, Nonce: "17",
		SystemVersionInfo: "201", Resources: []*discovery.Resource{{Name: "new", Version: "201",
			Resource: &anypb.Any{TypeUrl: agentauthv1.RevocationType, Value: value}}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.state.Store(base)
		var resp discovery.DeltaDiscoveryResponse
		if err := proto.Unmarshal(wire, &resp); err != nil {
			b.Fatal(err)
		}
		ack := c.handle(&resp)
		if ack.GetErrorDetail() != nil {
			b.Fatal(ack.GetErrorDetail())
		}
		if _, err := proto.Marshal(ack); err != nil {
			b.Fatal(err)
		}
	}
}
