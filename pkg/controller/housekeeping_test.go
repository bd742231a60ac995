package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

func TestHousekeepingPrunesWhatNoLongerMatters(t *testing.T) {
	cfg := testConfig(t, "")
	c, err := New(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	now := time.Now()
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	for _, r := range []*agentauthv1.Revocation{
		{Id: "expired", Expires: ts(-time.Minute)},
		{Id: "live", Expires: ts(time.Hour)},
		{Id: "forever"},
	} {
		r.Subject = &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/agent/" + r.Id}
		if err := c.state.UpsertRevocation(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, jt := range []*agentauthv1.JoinToken{
		{Id: "used-expired", Expires: ts(-time.Minute), Used: true, UsedAt: ts(-time.Hour)},
		{Id: "unused-expired", Expires: ts(-time.Second)},
		{Id: "used-live", Expires: ts(time.Minute), Used: true, UsedAt: ts(-time.Second)},
	} {
		jt.SpiffeId = "spiffe://example.org/agent/a"
		if _, err := c.store.JoinTokens().Put(jt); err != nil {
			t.Fatal(err)
		}
	}
	for _, ic := range []*agentauthv1.IssuedCert{
		{Serial: "01", NotAfter: ts(-issuedRetention - time.Hour)},
		{Serial: "02", NotAfter: ts(-time.Hour)},
		{Serial: "03", NotAfter: ts(time.Hour)},
	} {
		ic.SpiffeId = "spiffe://example.org/agent/a"
		if _, err := c.store.IssuedCerts().Put(ic); err != nil {
			t.Fatal(err)
		}
	}

	c.prune(now)

	revs, _ := c.store.Revocations().List()
	if got := ids(revs, (*agentauthv1.Revocation).GetId); !slices.Equal(got, []string{"forever", "live"}) {
		t.Errorf("revocations left: %v", got)
	}
	tokens, _ := c.store.JoinTokens().List()
	if got := ids(tokens, (*agentauthv1.JoinToken).GetId); !slices.Equal(got, []string{"used-live"}) {
		t.Errorf("join tokens left: %v", got)
	}
	certs, _ := c.store.IssuedCerts().List()
	var serials []string
	for _, ic := range certs {
		serials = append(serials, ic.GetSerial())
	}
	// The CA records its own server certificates too; only the old test record must be gone.
	if slices.Contains(serials, "01") || !slices.Contains(serials, "02") || !slices.Contains(serials, "03") {
		t.Errorf("issued-certificate records left: %v", serials)
	}
}

// Run prunes at start, so a controller restarted after a long stop does not serve stale revocations.
func TestRunPrunesAtStart(t *testing.T) {
	cfg := testConfig(t, "")
	c, err := New(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	err = c.state.UpsertRevocation(&agentauthv1.Revocation{Id: "stale",
		Subject: &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/agent/a"},
		Expires: timestamppb.New(time.Now().Add(-time.Minute))})
	c.close()
	if err != nil {
		t.Fatal(err)
	}
	c, _ = runController(t, cfg)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		revs, err := c.store.Revocations().List()
		if err != nil {
			t.Fatal(err)
		}
		if len(revs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the expired revocation is still stored: %v", revs)
		}
	}
}

func ids[T any](list []T, id func(T) string) []string {
	out := make([]string, 0, len(list))
	for _, v := range list {
		out = append(out, id(v))
	}
	return out
}
