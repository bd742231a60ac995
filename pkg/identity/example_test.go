package identity_test

import (
	"context"
	"log"
	"time"

	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Files written by cert-manager, a CSI driver or an init container; rotated in place.
func ExampleNewFileSource() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	src, err := identity.NewFileSource(identity.FileConfig{
		CertFile:   "/run/agentauth/svid.pem",
		KeyFile:    "/run/agentauth/svid_key.pem",
		Bundles:    map[spiffeid.TrustDomain][]string{td: {"/run/agentauth/bundle.pem"}},
		WITFile:    "/run/agentauth/wit.jwt",
		WITKeyFile: "/run/agentauth/wit_key.pem",
	})
	if err != nil {
		log.Fatal(err) // e.g. *identity.ReloadError wrapping autherr.ErrExpired
	}
	go src.Watch(context.Background(), 5*time.Second)
	if err := identity.Ready(src, true); err != nil {
		log.Print("not ready: ", err)
	}
}

// A SPIRE agent (or any SPIFFE Workload API server) at SPIFFE_ENDPOINT_SOCKET.
func ExampleNewWorkloadAPISource() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, err := identity.NewWorkloadAPISource(ctx, identity.WorkloadAPIConfig{WITFromWorkloadAPI: true})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	for {
		<-src.Updated() // rebuild per-rotation state here
		svid, _ := src.GetX509SVID()
		log.Printf("rotated: %s until %s", svid.ID, svid.Certificates[0].NotAfter)
	}
}
