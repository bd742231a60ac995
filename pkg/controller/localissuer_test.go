package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/identity"
)

// TestLocalIssuerSocket: with issuer.localSocket the controller serves the issuer on a Unix socket any local user
// may open (replacing a stale socket file), maps the caller's uid through issuer.peerIDs, withholds credentials
// as on the TCP issuer, and removes the socket when it stops.
func TestLocalIssuerSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "issuer.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	planner := spiffeid.RequireFromString("spiffe://example.org/agent/planner")
	cfg := testConfig(t, fmt.Sprintf(", localSocket: %s, peerIDs: [{uid: %d, spiffeID: %q}]", sock, os.Getuid(), planner))
	c, stop := runController(t, cfg)

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("local socket has mode %v, want a socket with 0666", fi.Mode())
	}
	attest := func() (*identity.IssuerSource, error) {
		return identity.NewIssuerSource(context.Background(), identity.IssuerConfig{
			Address: c.issuerLn().Addr().String(), Bundle: c.ca.X509Bundle(), LocalSocket: sock,
		})
	}
	src, err := attest()
	if err != nil {
		t.Fatal(err)
	}
	svid, _ := src.GetX509SVID()
	src.Close()
	if svid.ID != planner {
		t.Fatalf("local attestation issued %v, want %v", svid.ID, planner)
	}

	if err := c.state.UpsertRevocation(&agentauthv1.Revocation{Id: "rev-1", Reason: "account disabled",
		Subject: &agentauthv1.Subject{Kind: "spiffe", Value: planner.String()}}); err != nil {
		t.Fatal(err)
	}
	if src, err := attest(); !errors.Is(err, autherr.ErrRevoked) || !strings.Contains(err.Error(), "account disabled") {
		if src != nil {
			src.Close()
		}
		t.Fatalf("withheld credentials: err = %v, want ErrRevoked naming the reason", err)
	}

	stop()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after stop: %v", err)
	}
}
