package mtls_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// BenchmarkHandshake measures one full mutual-TLS handshake (both SVIDs verified, authorizers run, ECDSA P-256)
// over loopback TCP, without session resumption, as every new sidecar connection pays it.
func BenchmarkHandshake(b *testing.B) {
	for _, tc := range []struct {
		name    string
		version uint16
	}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}} {
		b.Run(tc.name, func(b *testing.B) {
			ca := testca.New(b, td, testca.WithIntermediate())
			bundles := x509bundle.NewSet(ca.X509Bundle())
			serverCfg := mtls.ServerConfig(static{ca.CreateX509SVID(tool), bundles}, mtls.AuthorizeIDs(agent))
			clientCfg := mtls.ClientConfig(static{ca.CreateX509SVID(agent), bundles}, mtls.AuthorizeIDs(tool))
			clientCfg.MaxVersion = tc.version

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						tc := tls.Server(c, serverCfg)
						if tc.Handshake() == nil {
							tc.Write([]byte{1}) // completes the TLS 1.3 client-certificate check before the client reads
						}
					}()
				}
			}()
			ctx := context.Background()
			d := tls.Dialer{Config: clientCfg}
			buf := make([]byte, 1)
			b.ReportAllocs()
			for b.Loop() {
				c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
