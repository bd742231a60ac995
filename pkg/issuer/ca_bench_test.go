package issuer

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func BenchmarkIssueX509SVID(b *testing.B) {
	f := newFixture(b)
	pub := newP256(b).Public()
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	for b.Loop() {
		if _, err := f.ca.IssueX509SVID(context.Background(), pub, id, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssueWIT(b *testing.B) {
	f := newFixture(b)
	pub := newP256(b).Public()
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	for b.Loop() {
		if _, err := f.ca.IssueWIT(context.Background(), id, pub, "ES256", time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
