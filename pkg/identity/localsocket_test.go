package identity_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// startLocalIssuer serves ca's issuer on a Unix socket in a temporary directory, attesting by peer uid.
func startLocalIssuer(t *testing.T, ca *issuer.CA, peerIDs map[uint32]spiffeid.ID) string {
	t.Helper()
	g, err := issuer.NewLocalGRPCServer(ca, issuer.ServiceConfig{PeerIDs: peerIDs})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "issuer.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return sock
}

func TestIssuerSourceLocalSocket(t *testing.T) {
	ca, addr, _ := startIssuer(t, 0)
	sock := startLocalIssuer(t, ca, map[uint32]spiffeid.ID{uint32(os.Getuid()): agentID})
	src, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{
		Address: addr, Bundle: ca.X509Bundle(), LocalSocket: sock,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// The SVID attested on the socket was renewed over mTLS at once, which brought the WIT.
	if err := identity.Ready(src, true); err != nil {
		t.Fatal(err)
	}
	svid, _ := src.GetX509SVID()
	if svid.ID != agentID {
		t.Fatalf("SVID for %v, want %v", svid.ID, agentID)
	}
	wit, err := src.GetWIT()
	if err != nil {
		t.Fatal(err)
	}
	v, err := wpt.NewVerifier(wpt.VerifierConfig{Bundles: wpt.FromWITBundles(src), Replay: replay.New(replay.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	if w, err := v.VerifyWIT(context.Background(), wit.Token); err != nil || w.Subject != agentID.String() {
		t.Fatalf("WIT: %v, %v", w, err)
	}
	// Renewals go over mTLS on Address, as for a workload that attested with a join token.
	before := serialOf(t, src)
	if err := src.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	if serialOf(t, src) == before {
		t.Fatal("Renew kept the SVID")
	}
}

func TestIssuerSourceLocalSocketRefusals(t *testing.T) {
	ca, addr, _ := startIssuer(t, 0)
	otherCA, _, _ := startIssuer(t, 0) // same trust domain, another root
	uid := uint32(os.Getuid())
	tests := []struct {
		name    string
		peerIDs map[uint32]spiffeid.ID
		bundle  *issuer.CA
		reason  error
		want    string
	}{
		{"unmapped uid", map[uint32]spiffeid.ID{uid + 1: agentID}, ca, autherr.ErrDenied, "is not mapped to a SPIFFE ID"},
		{"chain not from the bootstrap bundle", map[uint32]spiffeid.ID{uid: agentID}, otherCA, autherr.ErrUntrustedIssuer, "does not verify against the bootstrap bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := startLocalIssuer(t, ca, tt.peerIDs)
			src, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{
				Address: addr, Bundle: tt.bundle.X509Bundle(), LocalSocket: sock,
			})
			if err == nil {
				src.Close()
				t.Fatal("got credentials")
			}
			t.Log(err)
			if !errors.Is(err, tt.reason) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %v naming %q", err, tt.reason, tt.want)
			}
		})
	}
}
