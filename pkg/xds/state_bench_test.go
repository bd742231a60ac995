package xds

import (
	"fmt"
	"testing"
	"time"

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
