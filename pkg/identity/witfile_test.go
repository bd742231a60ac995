package identity_test

import (
	"context"
	"errors"
	"testing"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/identity"
)

func TestWITFileSourceAsProvider(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ca := testca.New(t, td)
	wl := testca.StartWorkloadAPI(t, testca.WithoutWITProfile())
	wl.ServeCA(ca, agent)

	dir := t.TempDir()
	first := ca.CreateWITSVID(agent)
	tokenFile, keyFile := ca.WriteWITFiles(dir, first)
	var ev events
	wits, err := identity.NewWITFileSource(tokenFile, keyFile, ev.observer())
	if err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewWorkloadAPISource(ctx, identity.WorkloadAPIConfig{Addr: wl.Addr(), WITProvider: wits})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := identity.Ready(src, true); err != nil {
		t.Fatal(err)
	}
	if _, err := src.GetWITBundleForTrustDomain(td); !errors.Is(err, autherr.ErrUntrustedIssuer) {
		t.Fatalf("WIT bundle without a source of WIT authorities: %v", err)
	}

	// A WIT whose key does not match is refused and the old one stays.
	bad := ca.CreateWITSVID(agent)
	bad.Key = ca.CreateWITSVID(agent).Key
	ca.WriteWITFiles(dir, bad)
	if err := wits.Reload(); !errors.Is(err, autherr.ErrMismatch) {
		t.Fatalf("Reload = %v, want ErrMismatch", err)
	}
	if w, _ := src.GetWIT(); w.Token != first.Token {
		t.Fatal("refused WIT replaced the old one")
	}

	// A good one is picked up and forwarded as an update of the Workload API source.
	updated := src.Updated()
	next := ca.CreateWITSVID(agent)
	ca.WriteWITFiles(dir, next)
	if err := wits.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-updated:
	case <-ctx.Done():
		t.Fatal("WIT rotation not forwarded")
	}
	if w, _ := src.GetWIT(); w.Token != next.Token {
		t.Fatal("rotated WIT not served")
	}
	if r, f := ev.counts(); r != 2 || f != 1 {
		t.Fatalf("rotated %d failed %d, want 2 1", r, f)
	}

	// A WIT for another workload loads (no SVID to compare with here) but Ready catches the mismatch.
	ca.WriteWITFiles(dir, ca.CreateWITSVID(tool))
	if err := wits.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := identity.Ready(src, true); !errors.Is(err, autherr.ErrMismatch) {
		t.Fatalf("Ready = %v, want ErrMismatch", err)
	}
}
