package xdsclient

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/xds/xdsserver"
)

var (
	td           = spiffeid.RequireTrustDomainFromString("example.org")
	controllerID = spiffeid.RequireFromPath(td, "/agentauth/controller")
	// testTLS stands in where a client is built but never dials.
	testTLS = &tls.Config{MinVersion: tls.VersionTLS13}
)

// waitFor polls cond until it holds. The timeout only stops a broken test from hanging; nothing is timed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// controller is a real Publisher + Server on a bbolt file and a 127.0.0.1 port, restartable on both.
type controller struct {
	t    testing.TB
	ca   *testca.CA
	path string
	addr string

	st   *store.Store
	pub  *xdsserver.Publisher
	w    writes
	srv  *xdsserver.Server
	done chan error
}

func newController(t testing.TB, ca *testca.CA) *controller {
	c := &controller{t: t, ca: ca, path: filepath.Join(t.TempDir(), "controller.db"), addr: "127.0.0.1:0"}
	c.start()
	t.Cleanup(c.stop)
	return c
}

func (c *controller) serverTLS() *tls.Config {
	return tlsconfig.MTLSServerConfig(c.ca.CreateX509SVID(controllerID), c.ca.X509Bundle(), tlsconfig.AuthorizeMemberOf(td))
}

func (c *controller) start() {
	c.t.Helper()
	st, err := store.Open(c.path, store.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	pub, err := xdsserver.NewPublisher(st, xdsserver.PublisherConfig{})
	if err != nil {
		c.t.Fatal(err)
	}
	srv, err := xdsserver.NewServer(pub, xdsserver.ServerConfig{TLSConfig: c.serverTLS(), Logger: zaptest.NewLogger(c.t, zaptest.Level(zap.InfoLevel))})
	if err != nil {
		c.t.Fatal(err)
	}
	l, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.addr = l.Addr().String() // a restart listens on the same port
	c.st, c.pub, c.w, c.srv, c.done = st, pub, writes{st}, srv, make(chan error, 1)
	go func() { c.done <- srv.Serve(l) }()
}

func (c *controller) stop() {
	if c.srv == nil {
		return
	}
	c.srv.Stop()
	<-c.done
	c.pub.Close()
	if err := c.st.Close(); err != nil {
		c.t.Error(err)
	}
	c.srv = nil
}

// sidecar is a real Client connected to the controller with its own SVID and connection.
type sidecar struct {
	*Client
	id      spiffeid.ID
	mu      sync.Mutex
	updates []Update
	cancel  context.CancelFunc
	done    chan struct{}
}

func (c *controller) sidecar(name string, tlsConf *tls.Config, edit func(*ClientConfig)) *sidecar {
	c.t.Helper()
	id := spiffeid.RequireFromPath(td, "/agent/"+name)
	if tlsConf == nil {
		tlsConf = tlsconfig.MTLSClientConfig(c.ca.CreateX509SVID(id), c.ca.X509Bundle(), tlsconfig.AuthorizeID(controllerID))
	}
	s := &sidecar{id: id, done: make(chan struct{})}
	cfg := ClientConfig{
		Target:      c.addr,
		TLSConfig:   tlsConf,
		NodeID:      id.String(),
		BackoffBase: 20 * time.Millisecond,
		BackoffMax:  200 * time.Millisecond,
		OnUpdate: func(u Update) {
			s.mu.Lock()
			s.updates = append(s.updates, u)
			s.mu.Unlock()
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	cl, err := NewClient(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	s.Client = cl
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		if err := cl.Run(ctx); err != nil {
			c.t.Error(err)
		}
	}()
	c.t.Cleanup(s.stop)
	return s
}

func (s *sidecar) stop() {
	s.cancel()
	<-s.done
}

func (s *sidecar) waitSynced(t testing.TB) {
	t.Helper()
	waitFor(t, s.id.String()+" to sync", func() bool { return s.Status().Synced })
}

// writes stores resources as the controller's state service does (pkg/controller/state, which imports this
// package), without its checks: the publisher serves whatever the store commits.
type writes struct{ st *store.Store }

func (w writes) SetPolicies(ps []*agentauthv1.Policy) error {
	_, err := w.st.Policies().Replace(ps)
	return err
}

func (w writes) UpsertRevocation(r *agentauthv1.Revocation) error {
	_, err := w.st.Revocations().Put(r)
	return err
}

func (w writes) DeleteRevocation(id string) error {
	_, err := w.st.Revocations().Delete(id)
	return err
}

func (w writes) SetRisk(r *agentauthv1.RiskState) error {
	_, err := w.st.Risk().Put(r)
	return err
}

func (w writes) SetTrustBundle(b *agentauthv1.TrustBundle) error {
	_, err := w.st.TrustBundles().Put(b)
	return err
}

// cedarValidator compiles a policy with cedar-go, as the sidecar does before it accepts one.
func cedarValidator(_ string, res proto.Message) error {
	p := res.(*agentauthv1.Policy)
	_, err := cedar.NewPolicySetFromBytes(p.GetSource(), []byte(p.GetCedar()))
	return err
}

func policy(id, text string) *agentauthv1.Policy {
	return &agentauthv1.Policy{Id: id, Cedar: text, Source: id + ".cedar"}
}

func spiffeRevocation(id, subject string) *agentauthv1.Revocation {
	return &agentauthv1.Revocation{
		Id:      id,
		Subject: &agentauthv1.Subject{Kind: "spiffe", Value: subject},
		Reason:  "credential compromised",
		Cause: &agentauthv1.Cause{EventType: "https://schemas.openid.net/secevent/risc/event-type/credential-compromise",
			SetJti: "set-" + id, Issuer: "https://idp.example.org"},
	}
}

func trustBundle(ca *testca.CA, seq int64) *agentauthv1.TrustBundle {
	var ders [][]byte
	for _, c := range ca.X509Authorities() {
		ders = append(ders, c.Raw)
	}
	return &agentauthv1.TrustBundle{TrustDomain: ca.TrustDomain().Name(), X509Authorities: ders, Sequence: seq}
}

func nodeByID(s *xdsserver.Server, id string) (xdsserver.NodeStatus, bool) {
	for _, n := range s.Nodes() {
		if n.ID == id {
			return n, true
		}
	}
	return xdsserver.NodeStatus{}, false
}
