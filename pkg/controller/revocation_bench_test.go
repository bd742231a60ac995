package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/controller/state"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/store"
)

// storedRevocations is n revocations as a busy controller holds them: agents' sessions ended, users disabled
// (with the names the token service gives them), certificates revoked by serial.
func storedRevocations(n int) []*agentauthv1.Revocation {
	nb := timestamppb.New(time.Now().Add(-time.Hour))
	revs := make([]*agentauthv1.Revocation, n)
	for i := range revs {
		r := &agentauthv1.Revocation{Id: fmt.Sprintf("r%d", i), Reason: "bench", NotBefore: nb}
		switch i % 3 {
		case 0:
			r.Subject = &agentauthv1.Subject{Kind: "spiffe", Value: fmt.Sprintf("spiffe://example.org/agent/%d", i)}
		case 1:
			r.Subject = &agentauthv1.Subject{Kind: "user_email", Value: fmt.Sprintf("u%d@example.com", i)}
			r.DelegatedSubjects = []string{fmt.Sprintf("corp:u%d@example.com", i)}
			r.NotBefore = nil
		case 2:
			r.Subject = &agentauthv1.Subject{Kind: "x509_serial", Value: fmt.Sprintf("%x", 0x1000+i)}
		}
		revs[i] = r
	}
	return revs
}

// benchController is a controller whose store holds n revocations, as the token service and the issuer see them.
func benchController(b *testing.B, n int) *Controller {
	st, err := store.Open(filepath.Join(b.TempDir(), "state.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	if _, err := st.Revocations().Replace(storedRevocations(n)); err != nil {
		b.Fatal(err)
	}
	ss, err := state.New(st, state.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ss.Close)
	return &Controller{store: st, state: ss, log: zap.NewNop()}
}

// BenchmarkTokenServiceRevoked is the token service's revocation check of one token request (agent, user,
// transaction) with 100,000 revocations stored, none of them about the caller.
func BenchmarkTokenServiceRevoked(b *testing.B) {
	revs := indexRevocations{benchController(b, 100_000).state}
	ctx, now := context.Background(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range [][2]string{{oauth.RevokedAgent, "spiffe://example.org/agent/planner"},
			{oauth.RevokedUser, "corp:alice@example.com"}, {oauth.RevokedTxn, "txn-1"}} {
			if _, revoked := revs.Revoked(ctx, c[0], c[1], now); revoked {
				b.Fatal("revoked")
			}
		}
	}
}

// BenchmarkRenewRefused is the issuer's check of one renewal (renewal refused, then withheld) with 100,000
// revocations stored, none of them about the workload.
func BenchmarkRenewRefused(b *testing.B) {
	c := benchController(b, 100_000)
	id := spiffeid.RequireFromString("spiffe://example.org/agent/planner")
	ctx, issued := context.Background(), time.Now().Add(-time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		if why, refused := c.renewRefused(ctx, id, "abcdef", issued); refused {
			b.Fatal(why)
		}
		if why, refused := c.withheld(ctx, id); refused {
			b.Fatal(why)
		}
	}
}
