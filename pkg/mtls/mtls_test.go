package mtls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const timeout = 30 * time.Second

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	otherTD  = spiffeid.RequireTrustDomainFromString("other.org")
	agent    = spiffeid.RequireFromString("spiffe://example.org/agent")
	tool     = spiffeid.RequireFromString("spiffe://example.org/tool")
	intruder = spiffeid.RequireFromString("spiffe://example.org/intruder")
	foreign  = spiffeid.RequireFromString("spiffe://other.org/agent")
)

// static is a fixed SVID plus bundle set: the simplest real Source.
type static struct {
	*x509svid.SVID
	*x509bundle.Set
}

type result struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
	reply                string
}

// exchange runs one connection over 127.0.0.1: handshake, the server writes "ok", the client reads it. In TLS 1.3
// the client learns of a refused client certificate only on that read.
func exchange(t *testing.T, serverCfg, clientCfg *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	var r result
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			r.serverErr = err
			return
		}
		defer c.Close()
		tc := tls.Server(c, serverCfg)
		if r.serverErr = tc.HandshakeContext(ctx); r.serverErr == nil {
			r.server = tc.ConnectionState()
			_, r.serverErr = tc.Write([]byte("ok"))
		}
	}()
	d := tls.Dialer{Config: clientCfg}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		r.clientErr = err
	} else {
		tc := c.(*tls.Conn)
		r.client = tc.ConnectionState()
		tc.SetReadDeadline(time.Now().Add(timeout))
		b, err := io.ReadAll(io.LimitReader(tc, 2))
		r.reply, r.clientErr = string(b), err
		if err == nil && r.reply != "ok" {
			r.clientErr = io.ErrUnexpectedEOF
		}
		c.Close()
	}
	<-done
	return r
}

func TestHandshakes(t *testing.T) {
	ca := testca.New(t, td, testca.WithIntermediate())
	otherCA := testca.New(t, otherTD)
	rogue := testca.New(t, td)
	bundles := x509bundle.NewSet(ca.X509Bundle(), otherCA.X509Bundle())
	server := static{ca.CreateX509SVID(tool), bundles}
	client := func(svid *x509svid.SVID) static { return static{svid, bundles} }

	tests := []struct {
		name        string
		serverAuthz tlsconfig.Authorizer
		clientAuthz tlsconfig.Authorizer
		client      *tls.Config // overrides the default client config built from clientSrc
		clientSrc   static
		serverOpts  []mtls.Option
		clientOpts  []mtls.Option
		wantServer  error  // reason the server refuses with; nil: accepted
		wantClient  error  // reason the client refuses with
		wantInError string // text the refusal must contain
		wantProto   string
		wantVersion uint16
	}{
		{name: "allowed peer", serverAuthz: mtls.AuthorizeIDs(agent), clientAuthz: mtls.AuthorizeIDs(tool),
			clientSrc: client(ca.CreateX509SVID(agent)), clientOpts: []mtls.Option{alpn}, wantProto: "h2", wantVersion: tls.VersionTLS13},
		{name: "allowed by trust domain", serverAuthz: mtls.AuthorizeTrustDomains(otherTD, td), clientAuthz: mtls.AuthorizeIDs(tool),
			clientSrc: client(otherCA.CreateX509SVID(foreign)), clientOpts: []mtls.Option{alpn}, wantProto: "h2", wantVersion: tls.VersionTLS13},
		{name: "wrong trust domain refused", serverAuthz: mtls.AuthorizeTrustDomains(td), clientAuthz: mtls.AuthorizeIDs(tool),
			clientSrc: client(otherCA.CreateX509SVID(foreign)), wantServer: autherr.ErrDenied, wantInError: `trust domain "other.org" is not one of`},
		{name: "wrong ID refused", serverAuthz: mtls.AuthorizeIDs(agent), clientAuthz: mtls.AuthorizeIDs(tool),
			clientSrc: client(ca.CreateX509SVID(intruder)), wantServer: autherr.ErrDenied, wantInError: "spiffe://example.org/intruder is not one of"},
		{name: "expired client certificate refused", serverAuthz: mtls.AuthorizeIDs(agent), clientAuthz: mtls.AuthorizeIDs(tool),
			clientSrc: client(ca.CreateX509SVID(agent, testca.WithTTL(-time.Minute))), wantServer: autherr.ErrExpired},
		{name: "untrusted CA refused", serverAuthz: mtls.AuthorizeIDs(agent), clientAuthz: mtls.AuthorizeIDs(tool),
			clientSrc: client(rogue.CreateX509SVID(agent)), wantServer: autherr.ErrUntrustedIssuer},
		{name: "client without certificate refused", serverAuthz: mtls.AuthorizeIDs(agent),
			client: tlsconfig.TLSClientConfig(bundles, tlsconfig.AuthorizeID(tool)), wantInError: "certificate"},
		{name: "client refuses the wrong server", serverAuthz: mtls.AuthorizeIDs(agent), clientAuthz: mtls.AuthorizeIDs(intruder),
			clientSrc: client(ca.CreateX509SVID(agent)), wantClient: autherr.ErrDenied, wantInError: "spiffe://example.org/tool is not one of"},
		{name: "go-spiffe authorizer composes", serverAuthz: mtls.AnyOf(mtls.AuthorizeIDs(intruder), tlsconfig.AuthorizeMemberOf(td)),
			clientAuthz: mtls.AllOf(mtls.AuthorizeTrustDomains(td), tlsconfig.AuthorizeID(tool)),
			clientSrc:   client(ca.CreateX509SVID(agent)), clientOpts: []mtls.Option{alpn}, wantProto: "h2", wantVersion: tls.VersionTLS13},
		{name: "nil authorizer refuses", serverAuthz: nil, clientAuthz: mtls.AuthorizeIDs(tool),
			clientSrc: client(ca.CreateX509SVID(agent)), wantServer: autherr.ErrDenied},
		{name: "http/1.1 only", serverAuthz: mtls.AuthorizeIDs(agent), clientAuthz: mtls.AuthorizeIDs(tool),
			serverOpts: []mtls.Option{mtls.WithNextProtos("http/1.1")},
			clientSrc:  client(ca.CreateX509SVID(agent)), clientOpts: []mtls.Option{alpn}, wantProto: "http/1.1", wantVersion: tls.VersionTLS13},
		{name: "client offers no ALPN by default", serverAuthz: mtls.AuthorizeIDs(agent), clientAuthz: mtls.AuthorizeIDs(tool),
			clientSrc: client(ca.CreateX509SVID(agent)), wantProto: "", wantVersion: tls.VersionTLS13},
		{name: "TLS 1.2 client accepted by default", serverAuthz: mtls.AuthorizeIDs(agent), clientAuthz: mtls.AuthorizeIDs(tool),
			client:    tls12(mtls.ClientConfig(client(ca.CreateX509SVID(agent)), mtls.AuthorizeIDs(tool), alpn)),
			wantProto: "h2", wantVersion: tls.VersionTLS12},
		{name: "TLS 1.2 client refused with WithMinVersion(1.3)", serverAuthz: mtls.AuthorizeIDs(agent),
			serverOpts: []mtls.Option{mtls.WithMinVersion(tls.VersionTLS13)},
			client:     tls12(mtls.ClientConfig(client(ca.CreateX509SVID(agent)), mtls.AuthorizeIDs(tool), alpn)), wantInError: "version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clientCfg := tc.client
			if clientCfg == nil {
				clientCfg = mtls.ClientConfig(tc.clientSrc, tc.clientAuthz, tc.clientOpts...)
			}
			r := exchange(t, mtls.ServerConfig(server, tc.serverAuthz, tc.serverOpts...), clientCfg)
			accepted := tc.wantServer == nil && tc.wantClient == nil && tc.wantInError == ""
			if accepted {
				if r.serverErr != nil || r.clientErr != nil {
					t.Fatalf("refused: server %v, client %v", r.serverErr, r.clientErr)
				}
				if got, err := mtls.PeerID(&r.client); err != nil || got != tool {
					t.Fatalf("client sees peer %v (%v), want %v", got, err, tool)
				}
				want := agent
				if tc.clientSrc.SVID != nil {
					want = tc.clientSrc.ID
				}
				if got, err := mtls.PeerID(&r.server); err != nil || got != want {
					t.Fatalf("server sees peer %v (%v), want %v", got, err, want)
				}
				if r.server.NegotiatedProtocol != tc.wantProto || r.server.Version != tc.wantVersion {
					t.Fatalf("ALPN %q version %x, want %q %x", r.server.NegotiatedProtocol, r.server.Version, tc.wantProto, tc.wantVersion)
				}
				return
			}
			if r.serverErr == nil && r.clientErr == nil {
				t.Fatal("connection accepted")
			}
			if r.clientErr == nil {
				t.Fatalf("client did not notice the refusal (server: %v)", r.serverErr)
			}
			if tc.wantServer != nil && !errors.Is(r.serverErr, tc.wantServer) {
				t.Fatalf("server error %v, want %v", r.serverErr, tc.wantServer)
			}
			if tc.wantClient != nil && !errors.Is(r.clientErr, tc.wantClient) {
				t.Fatalf("client error %v, want %v", r.clientErr, tc.wantClient)
			}
			refusal := errors.Join(r.serverErr, r.clientErr)
			t.Logf("refused: %v", refusal)
			if !strings.Contains(refusal.Error(), tc.wantInError) {
				t.Fatalf("refusal %q does not say %q", refusal, tc.wantInError)
			}
		})
	}
}

var alpn = mtls.WithNextProtos("h2", "http/1.1")

func tls12(c *tls.Config) *tls.Config {
	c.MaxVersion = tls.VersionTLS12
	return c
}

func TestAuthorizers(t *testing.T) {
	tests := []struct {
		name  string
		authz tlsconfig.Authorizer
		id    spiffeid.ID
		ok    bool
	}{
		{"ID listed", mtls.AuthorizeIDs(tool, agent), agent, true},
		{"ID not listed", mtls.AuthorizeIDs(tool), agent, false},
		{"no IDs", mtls.AuthorizeIDs(), agent, false},
		{"trust domain listed", mtls.AuthorizeTrustDomains(otherTD, td), agent, true},
		{"trust domain not listed", mtls.AuthorizeTrustDomains(otherTD), agent, false},
		{"no trust domains", mtls.AuthorizeTrustDomains(), agent, false},
		{"AnyOf one matches", mtls.AnyOf(mtls.AuthorizeIDs(tool), mtls.AuthorizeTrustDomains(td)), agent, true},
		{"AnyOf none matches", mtls.AnyOf(mtls.AuthorizeIDs(tool), tlsconfig.AuthorizeMemberOf(otherTD)), agent, false},
		{"AnyOf empty", mtls.AnyOf(), agent, false},
		{"AllOf all match", mtls.AllOf(mtls.AuthorizeIDs(agent), mtls.AuthorizeTrustDomains(td)), agent, true},
		{"AllOf one fails", mtls.AllOf(mtls.AuthorizeTrustDomains(td), tlsconfig.AuthorizeID(tool)), agent, false},
		{"AllOf empty", mtls.AllOf(), agent, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.authz(tc.id, nil)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && (!errors.Is(err, autherr.ErrDenied) || !strings.Contains(err.Error(), tc.id.String())) {
				t.Fatalf("refusal %q must wrap ErrDenied and name the peer", err)
			}
		})
	}
}

func TestPeerIDWithoutPeer(t *testing.T) {
	for name, cs := range map[string]*tls.ConnectionState{
		"nil":          nil,
		"no handshake": {},
		"no cert":      {HandshakeComplete: true},
	} {
		if _, err := mtls.PeerID(cs); !errors.Is(err, autherr.ErrMissing) {
			t.Errorf("%s: err = %v, want ErrMissing", name, err)
		}
	}
}
