package certfile

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// serve runs a TLS server on loopback with r's certificate; each connection gets its handshake and is closed.
func serve(t *testing.T, r *Reloader) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// served is the serial number of the certificate the server presents, verified against ca.
func served(t *testing.T, addr string, ca *testca.CA) string {
	roots := x509.NewCertPool()
	for _, c := range ca.X509Authorities() {
		roots.AddCert(c)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "ssf.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestReloadOnChange(t *testing.T) {
	ca := testca.New(t, td)
	dir := t.TempDir()
	first := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/ssf"), testca.WithDNSNames("ssf.test"))
	certPath, keyPath := ca.WriteSVIDFiles(dir, first)
	r, err := New(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	if got := served(t, addr, ca); got != first.Certificates[0].SerialNumber.String() {
		t.Fatalf("served %s", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloads := make(chan error, 16)
	go r.Watch(ctx, 20*time.Millisecond, func(err error) { reloads <- err })

	second := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/ssf"), testca.WithDNSNames("ssf.test"))
	ca.WriteSVIDFiles(dir, second)
	want := second.Certificates[0].SerialNumber.String()
	deadline := time.Now().Add(30 * time.Second)
	for served(t, addr, ca) != want {
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not served within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Leaf().SerialNumber.String() != want {
		t.Fatal("Leaf is not the new certificate")
	}

	// A bad rotation is reported and keeps the certificate in use.
	if err := os.WriteFile(certPath, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	for failed := false; !failed; {
		select {
		case err := <-reloads:
			failed = err != nil
		case <-time.After(30 * time.Second):
			t.Fatal("the bad rotation was not reported within 30s")
		}
	}
	if got := served(t, addr, ca); got != want {
		t.Fatalf("after a bad rotation the server presents %s, want the previous %s", got, want)
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	ca := testca.New(t, td)
	dir := t.TempDir()
	certPath, keyPath := ca.WriteSVIDFiles(dir, ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/a")))
	otherDir := t.TempDir()
	_, otherKey := ca.WriteSVIDFiles(otherDir, ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/b")))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, cert, key, want string }{
		{"missing cert", filepath.Join(dir, "none.pem"), keyPath, "none.pem: no such file"},
		{"missing key", certPath, filepath.Join(dir, "none-key.pem"), "none-key.pem: no such file"},
		{"garbage cert", garbage, keyPath, "garbage.pem"},
		{"key of another certificate", certPath, otherKey, "private key does not match public key"},
	} {
		_, err := New(tt.cert, tt.key)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
		if tt.name == "missing cert" && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("missing cert: %v is not ErrNotExist", err)
		}
	}
}
