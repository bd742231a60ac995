package revocation

import (
	"fmt"
	"testing"
	"time"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

func benchIndex(n int) *Index {
	revs := make([]*agentauthv1.Revocation, n)
	for i := range revs {
		if i%2 == 0 {
			revs[i] = subjectRev(fmt.Sprintf("r%d", i), KindSPIFFE, "", fmt.Sprintf("spiffe://example.org/agent/%d", i))
		} else {
			revs[i] = subjectRev(fmt.Sprintf("r%d", i), KindUserEmail, "", fmt.Sprintf("u%d@example.com", i))
			revs[i].DelegatedSubjects = []string{fmt.Sprintf("corp:u%d@example.com", i)}
		}
	}
	return NewIndex(revs...)
}

// BenchmarkRefusingCall is the revocation check of one request (agent, user, transaction) against 100,000
// revocations, none about it.
func BenchmarkRefusingCall(b *testing.B) {
	x := benchIndex(100_000)
	call := Call{Agent: "spiffe://example.org/agent/planner", Delegated: "corp:alice@example.com", Txn: "txn-1"}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := x.RefusingCall(call, now); r != nil {
			b.Fatal("refused")
		}
	}
}

// BenchmarkIndexWithOne is adding one revocation to an index of 100,000: the copy each write pays.
func BenchmarkIndexWithOne(b *testing.B) {
	x := benchIndex(100_000)
	add := []*agentauthv1.Revocation{subjectRev("new", KindSPIFFE, "", "spiffe://example.org/agent/new")}
	b.ReportAllocs()
	for b.Loop() {
		_ = x.With(add, nil)
	}
}
