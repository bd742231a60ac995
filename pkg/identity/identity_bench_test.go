package identity_test

import (
	"context"
	"testing"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The proxy reads credentials on every handshake and every request.
func BenchmarkFileSourceGet(b *testing.B) {
	ca := testca.New(b, td)
	dir := b.TempDir()
	cert, key := ca.WriteSVIDFiles(dir, ca.CreateX509SVID(agent))
	tok, witKey := ca.WriteWITFiles(dir, ca.CreateWITSVID(agent))
	src, err := identity.NewFileSource(identity.FileConfig{
		CertFile: cert, KeyFile: key, WITFile: tok, WITKeyFile: witKey,
		Bundles: map[spiffeid.TrustDomain][]string{td: {ca.WriteBundleFile(dir)}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := src.GetX509SVID(); err != nil {
			b.Fatal(err)
		}
		if _, err := src.GetX509BundleForTrustDomain(td); err != nil {
			b.Fatal(err)
		}
		if _, err := src.GetWIT(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWorkloadAPISourceGetWIT(b *testing.B) {
	wl := testca.StartWorkloadAPI(b)
	wl.ServeCA(testca.New(b, td), agent)
	src, err := identity.NewWorkloadAPISource(context.Background(), identity.WorkloadAPIConfig{Addr: wl.Addr(), WITFromWorkloadAPI: true})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := src.GetWIT(); err != nil {
			b.Fatal(err)
		}
	}
}
