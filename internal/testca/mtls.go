package testca

import (
	"crypto/tls"
	"errors"
	"io"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// MTLSEcho serves one mutual-TLS connection on loopback with server's SVID and bundle, connects to it with
// client's, and echoes a message: nil when each side accepted the other's chain, else the client's error.
func MTLSEcho(tb testing.TB, server *x509svid.SVID, serverBundle x509bundle.Source, client *x509svid.SVID, clientBundle x509bundle.Source) error {
	tb.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(server, serverBundle, tlsconfig.AuthorizeAny()))
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(conn, io.LimitReader(conn, 4))
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), tlsconfig.MTLSClientConfig(client, clientBundle, tlsconfig.AuthorizeAny()))
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("echo mismatch")
	}
	return nil
}
