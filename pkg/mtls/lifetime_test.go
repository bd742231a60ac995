package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/mtls"
)

func TestRetireAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		notAfter time.Time
		want     time.Time
	}{
		{"no certificate: never", time.Time{}, time.Time{}},
		{"a quarter of what is left", now.Add(4 * time.Second), now.Add(3 * time.Second)},
		{"at most MaxRetireMargin", now.Add(time.Hour), now.Add(time.Hour - mtls.MaxRetireMargin)},
		{"already expired", now.Add(-time.Second), now.Add(-time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mtls.RetireAt(now, tt.notAfter); !got.Equal(tt.want) {
				t.Errorf("RetireAt = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPeerNotAfterIsTheEarliestOfTheChain(t *testing.T) {
	now := time.Now()
	leaf := &x509.Certificate{NotAfter: now.Add(time.Hour)}
	inter := &x509.Certificate{NotAfter: now.Add(time.Minute)}
	cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf, inter}}
	if got := mtls.PeerNotAfter(cs); !got.Equal(inter.NotAfter) {
		t.Fatalf("PeerNotAfter = %v, want the intermediate's %v", got, inter.NotAfter)
	}
	if mtls.PeerExpired(cs, now) || !mtls.PeerExpired(cs, now.Add(2*time.Minute)) {
		t.Fatal("PeerExpired does not follow the earliest NotAfter")
	}
	if mtls.PeerExpired(&tls.ConnectionState{}, now) || mtls.PeerExpired(nil, now) {
		t.Fatal("a connection without a peer certificate is not expired")
	}
}

// svidSource serves an SVID the test can replace.
type svidSource struct {
	svid   atomic.Pointer[x509svid.SVID]
	bundle *x509bundle.Bundle
}

func (s *svidSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid.Load(), nil }
func (s *svidSource) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle, nil
}

// openConns counts a listener's open connections.
type openConns struct {
	net.Listener
	n atomic.Int64
}

func (l *openConns) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.n.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *openConns
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.n.Add(-1) })
	return c.Conn.Close()
}

// TestGRPCConnectionsEndWithTheirCertificates: a server closes a connection when the client's certificate expires;
// a client with GRPCCredentials closes it before, so the server never has to, and its next call handshakes with
// the current SVID.
func TestGRPCConnectionsEndWithTheirCertificates(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td)
	for _, clientRetires := range []bool{false, true} {
		name := "server closes"
		if clientRetires {
			name = "client retires first"
		}
		t.Run(name, func(t *testing.T) {
			srvSrc := &svidSource{bundle: ca.X509Bundle()}
			srvSrc.svid.Store(ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/server")))
			cliSrc := &svidSource{bundle: ca.X509Bundle()}
			first := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/client"), testca.WithTTL(2*time.Second))
			cliSrc.svid.Store(first)

			var expired atomic.Int64
			g := grpc.NewServer(grpc.Creds(mtls.GRPCCredentials(mtls.ServerConfig(srvSrc, mtls.AuthorizeTrustDomains(td)),
				func(net.Addr) { expired.Add(1) })))
			healthpb.RegisterHealthServer(g, health.NewServer())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			conns := &openConns{Listener: ln}
			go func() { _ = g.Serve(conns) }()
			defer g.Stop()

			cliTLS := mtls.ClientConfig(cliSrc, mtls.AuthorizeTrustDomains(td))
			creds := credentials.NewTLS(cliTLS)
			if clientRetires {
				creds = mtls.GRPCCredentials(cliTLS, nil)
			}
			cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			check := func() {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
					t.Fatal(err)
				}
			}
			check()
			// The client renews; the open connection still rests on the first certificate.
			cliSrc.svid.Store(ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/client")))
			notAfter := first.Certificates[0].NotAfter
			deadline := notAfter.Add(30 * time.Second)
			for conns.n.Load() > 0 || !time.Now().After(notAfter) {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections open after the client certificate expired", conns.n.Load())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got, want := expired.Load(), map[bool]int64{false: 1, true: 0}[clientRetires]; got != want {
				t.Fatalf("the server closed %d connections on expiry, want %d", got, want)
			}
			check()
		})
	}
}
