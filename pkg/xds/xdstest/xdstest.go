// Package xdstest runs a real controller-side xDS server for tests of what talks to one: a bbolt store in a
// temporary directory, the controller's state service writing it, an xdsserver.Publisher and an xdsserver.Server with mTLS on
// 127.0.0.1. Only tests use it.
package xdstest

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentauth/agentauth/pkg/controller/state"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/xds/xdsserver"
)

// Start serves xDS with the controller's svid to clients whose X.509-SVIDs bundle verifies, from the svid's trust
// domain. It returns the state service, whose writes reach the clients, and the address; all stop with tb.
func Start(tb testing.TB, svid *x509svid.SVID, bundle x509bundle.Source) (*state.Service, string) {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "controller.db"), store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	writes, err := state.New(st, state.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(writes.Close)
	pub, err := xdsserver.NewPublisher(st, xdsserver.PublisherConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pub.Close)
	srv, err := xdsserver.NewServer(pub, xdsserver.ServerConfig{TLSConfig: tlsconfig.MTLSServerConfig(svid, bundle,
		tlsconfig.AuthorizeMemberOf(svid.ID.TrustDomain()))})
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	tb.Cleanup(srv.Stop)
	return writes, l.Addr().String()
}
