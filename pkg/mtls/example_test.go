package mtls_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// An ingress that accepts agents of its own trust domain plus one named partner workload, and tells the handler
// who called.
func ExampleServerConfig() {
	var src identity.Source // identity.NewFileSource or identity.NewWorkloadAPISource
	authz := mtls.AnyOf(
		mtls.AuthorizeTrustDomains(spiffeid.RequireTrustDomainFromString("example.org")),
		mtls.AuthorizeIDs(spiffeid.RequireFromString("spiffe://partner.example/billing-agent")),
	)
	srv := &http.Server{
		Addr:      "127.0.0.1:8443",
		TLSConfig: mtls.ServerConfig(src, authz),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, _ := mtls.PeerID(r.TLS)
			fmt.Fprintln(w, "hello", id)
		}),
	}
	log.Fatal(srv.ListenAndServeTLS("", "")) // certificates come from src on every handshake
}

// An egress that only talks to the tool it expects, over HTTP/2 when the tool offers it.
func ExampleClientConfig() {
	var src identity.Source
	tool := spiffeid.RequireFromString("spiffe://example.org/tools/search")
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   mtls.ClientConfig(src, mtls.AuthorizeIDs(tool)),
		ForceAttemptHTTP2: true,
	}}
	resp, err := client.Get("https://search.tools.internal/")
	if err != nil {
		log.Fatal(err) // a refused server says which SPIFFE ID it presented and why
	}
	defer resp.Body.Close()
}
