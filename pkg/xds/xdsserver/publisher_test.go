package xdsserver

import (
	"crypto/tls"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/wire"
)

// The end-to-end tests of a server with real clients are in pkg/xds/xdsclient; these need the server's insides.

const permitAll = `permit (principal, action, resource);`

var (
	td           = spiffeid.RequireTrustDomainFromString("example.org")
	controllerID = wire.ControllerID(td)
)

func policy(id, text string) *agentauthv1.Policy {
	return &agentauthv1.Policy{Id: id, Cedar: text, Source: id + ".cedar"}
}

func TestNewServerRefusesTLSWithoutClientAuth(t *testing.T) {
	ca := testca.New(t, td)
	st, err := store.Open(t.TempDir()+"/s.db", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub, err := NewPublisher(st, PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	svid := ca.CreateX509SVID(controllerID)
	noClientAuth := tlsconfig.TLSServerConfig(svid)
	unverified := tlsconfig.TLSServerConfig(svid)
	unverified.ClientAuth = tls.RequireAnyClientCert
	for name, conf := range map[string]*tls.Config{"nil": nil, "no client auth": noClientAuth, "unverified": unverified} {
		if _, err := NewServer(pub, ServerConfig{TLSConfig: conf}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
