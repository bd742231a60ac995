package sidecarload

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/xds/xdstest"
)

// TestFleet runs three sidecars in two child processes against a real xDS server and checks that each reports
// enforcing a revocation after the controller accepted it, round after round.
func TestFleet(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td)
	dir := t.TempDir()
	ctlSVID := ca.CreateX509SVID(wire.ControllerID(td))
	bundle := ca.WriteBundleFile(dir)
	svids := filepath.Join(dir, "svids")
	if err := os.Mkdir(svids, 0o700); err != nil {
		t.Fatal(err)
	}
	const n = 3
	for i := range n {
		if err := WriteSVID(svids, i, ca.CreateX509SVID(spiffeid.RequireFromPathf(td, "/agent/%d", i))); err != nil {
			t.Fatal(err)
		}
	}

	pub, addr := xdstest.Start(t, ctlSVID, ca.X509Bundle())

	f := Start(t, "TestServe", Config{Target: addr, Controller: wire.ControllerID(td), Bundle: bundle,
		SVIDs: svids, N: n, PerProcess: 2})
	if len(f.hosts) != 2 {
		t.Fatalf("%d child processes, want 2", len(f.hosts))
	}
	for _, victim := range []string{"spiffe://example.org/agent/victim-1", "spiffe://example.org/agent/victim-2"} {
		f.Expect(victim)
		accepted := time.Now()
		if err := pub.UpsertRevocation(&agentauthv1.Revocation{Id: victim[len(victim)-8:], Reason: "test",
			Subject: &agentauthv1.Subject{Kind: "spiffe", Value: victim}}); err != nil {
			t.Fatal(err)
		}
		at := f.Enforced()
		if len(at) != n {
			t.Fatalf("%d enforcement times, want %d", len(at), n)
		}
		for i, when := range at {
			if when.Before(accepted) {
				t.Errorf("%s: sidecar %d reports enforcing it at %v, before it was accepted at %v", victim, i, when, accepted)
			}
		}
	}
	if f.CPU() <= 0 {
		t.Error("the child processes report no CPU time")
	}
}

// TestServe is the child processes' side of TestFleet.
func TestServe(t *testing.T) { Serve(t) }
