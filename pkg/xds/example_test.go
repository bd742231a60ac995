package xds_test

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/controller/state"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/xds/xdsclient"
	"github.com/agentauth/agentauth/pkg/xds/xdsserver"
)

// The controller serves its store, which its state service writes; a sidecar follows it and checks revocations
// on each request.
func Example() {
	var serverTLS, sidecarTLS *tls.Config // from pkg/mtls: mTLS with X.509-SVIDs

	st, _ := store.Open("/var/lib/agentauth/controller.db", store.Options{})
	pub, _ := xdsserver.NewPublisher(st, xdsserver.PublisherConfig{})
	srv, _ := xdsserver.NewServer(pub, xdsserver.ServerConfig{TLSConfig: serverTLS})
	l, _ := net.Listen("tcp", "127.0.0.1:18000")
	go srv.Serve(l)

	client, _ := xdsclient.NewClient(xdsclient.ClientConfig{Target: "127.0.0.1:18000", TLSConfig: sidecarTLS})
	go client.Run(context.Background())

	writes, _ := state.New(st, state.Config{})
	_ = writes.UpsertRevocation(&agentauthv1.Revocation{Id: "r1",
		Subject: &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/agent/a"}})
	// On the sidecar, per request: one atomic load and one index lookup.
	if r := client.State().Revoked("spiffe", "", "spiffe://example.org/agent/a", time.Now(), time.Now()); r != nil {
		_ = r.GetReason()
	}
}
