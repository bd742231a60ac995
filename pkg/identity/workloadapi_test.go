package identity_test

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/identity"
)

func TestWorkloadAPISource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ca := testca.New(t, td)
	wl := testca.StartWorkloadAPI(t)
	svid, wit := wl.ServeCA(ca, agent)

	var ev events
	src, err := identity.NewWorkloadAPISource(ctx, identity.WorkloadAPIConfig{
		Addr: wl.Addr(), WITFromWorkloadAPI: true, Observer: ev.observer(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	if got, _ := src.GetX509SVID(); !got.Certificates[0].Equal(svid.Certificates[0]) {
		t.Fatal("wrong SVID")
	}
	if b, err := src.GetX509BundleForTrustDomain(td); err != nil || !b.Equal(ca.X509Bundle()) {
		t.Fatalf("X.509 bundle: %v", err)
	}
	if b, err := src.GetJWTBundleForTrustDomain(td); err != nil || !b.Equal(ca.JWTBundle()) {
		t.Fatalf("JWT bundle: %v", err)
	}
	if b, err := src.GetWITBundleForTrustDomain(td); err != nil || !b.Equal(ca.WITBundle()) {
		t.Fatalf("WIT bundle: %v", err)
	}
	w, err := src.GetWIT()
	if err != nil {
		t.Fatal(err)
	}
	if w.Token != wit.Token || w.Alg != "ES256" || w.Subject != agent.String() || !w.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(wit.Key.Public()) {
		t.Fatalf("WIT = %+v", w)
	}
	if err := identity.Ready(src, true); err != nil {
		t.Fatal(err)
	}

	// Rotate the X.509-SVID and the WIT over the open streams.
	updated := src.Updated()
	next := ca.CreateX509SVID(agent)
	nextWIT := ca.CreateWITSVID(agent)
	wl.SetX509SVID(next, ca.X509Bundle())
	wl.SetWITSVID(nextWIT)
	for {
		select {
		case <-updated:
		case <-ctx.Done():
			t.Fatal("rotation not observed")
		}
		// Re-armed before reading, so an update between the read and the next wait is not missed (the SVID and
		// the WIT arrive on separate streams).
		updated = src.Updated()
		got, _ := src.GetX509SVID()
		w, err := src.GetWIT()
		if got.Certificates[0].Equal(next.Certificates[0]) && err == nil && w.Token == nextWIT.Token {
			break
		}
	}
	if r, _ := ev.counts(); r < 2 {
		t.Fatalf("Rotated called %d times, want the initial load and at least one rotation", r)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestWorkloadAPISourceWITProfileMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ca := testca.New(t, td)
	wl := testca.StartWorkloadAPI(t, testca.WithoutWITProfile())
	wl.ServeCA(ca, agent)

	_, err := identity.NewWorkloadAPISource(ctx, identity.WorkloadAPIConfig{Addr: wl.Addr(), WITFromWorkloadAPI: true})
	if err == nil || !strings.Contains(err.Error(), "WITProvider") {
		t.Fatalf("err = %v, want a hint to configure a WITProvider", err)
	}

	// Fall back to a provider: here WIT files read by a FileSource.
	dir := t.TempDir()
	wit := ca.CreateWITSVID(agent)
	files, err := identity.NewFileSource(creds(t, ca, dir, ca.CreateX509SVID(agent), wit))
	if err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewWorkloadAPISource(ctx, identity.WorkloadAPIConfig{Addr: wl.Addr(), WITProvider: files})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if w, err := src.GetWIT(); err != nil || w.Token != wit.Token {
		t.Fatalf("GetWIT from provider: %v", err)
	}
	if b, err := src.GetWITBundleForTrustDomain(td); err != nil || !b.Equal(ca.WITBundle()) {
		t.Fatalf("WIT bundle from provider: %v", err)
	}
	// A provider rotation is forwarded as an update.
	updated := src.Updated()
	next := ca.CreateWITSVID(agent)
	ca.WriteWITFiles(dir, next)
	if err := files.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-updated:
	case <-ctx.Done():
		t.Fatal("provider rotation not forwarded")
	}
	if w, _ := src.GetWIT(); w.Token != next.Token {
		t.Fatal("rotated WIT not served")
	}
}

func TestWorkloadAPISourceEnvAndNoWIT(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	wl := testca.StartWorkloadAPI(t)
	wl.ServeCA(testca.New(t, td), agent)
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", wl.Addr())

	src, err := identity.NewWorkloadAPISource(ctx, identity.WorkloadAPIConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.GetWIT(); !errors.Is(err, identity.ErrNoWIT) {
		t.Fatalf("GetWIT = %v, want ErrNoWIT", err)
	}
	if err := identity.Ready(src, false); err != nil {
		t.Fatal(err)
	}
	if err := identity.Ready(src, true); !errors.Is(err, identity.ErrNoWIT) {
		t.Fatalf("Ready(requireWIT) = %v", err)
	}
}

func TestWorkloadAPISourceConfigErrors(t *testing.T) {
	ctx := context.Background()
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	for name, cfg := range map[string]identity.WorkloadAPIConfig{
		"no address":       {},
		"bad address":      {Addr: "http://127.0.0.1:1"},
		"both WIT origins": {Addr: "unix:///nonexistent", WITFromWorkloadAPI: true, WITProvider: &identity.FileSource{}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := identity.NewWorkloadAPISource(ctx, cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
