// Command bareproxy is the benchmark's baseline: one net/http/httputil.ReverseProxy and nothing else — no identity,
// no proofs, no policy, no metrics. Two in a row (an egress-like one taking HTTP_PROXY-style absolute-form requests,
// an ingress-like one in front of the tool) are what a sidecar pair is measured against. It is configured as a
// competent Go proxy would be: keep-alive pools of 64 idle connections per host, pooled copy buffers, and over TLS
// HTTP/2 by ALPN with mutual TLS, as the sidecar pair uses.
//
//	bareproxy -listen 127.0.0.1:9000 -upstream https://127.0.0.1:9001 \
//	    -upstream-cert c.pem -upstream-key k.pem -upstream-ca ca.pem -upstream-server-name bare.bench.local
//	bareproxy -listen 127.0.0.1:9001 -upstream http://127.0.0.1:8080 -cert s.pem -key sk.pem -client-ca ca.pem
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	upstream := flag.String("upstream", "", "http:// or https:// URL requests are forwarded to")
	cert := flag.String("cert", "", "serve TLS with this PEM certificate chain (with -key and -client-ca)")
	key := flag.String("key", "", "PEM private key of -cert")
	clientCA := flag.String("client-ca", "", "PEM CA certificates client certificates must chain to (required with -cert)")
	upCert := flag.String("upstream-cert", "", "PEM client certificate chain presented to an https upstream")
	upKey := flag.String("upstream-key", "", "PEM private key of -upstream-cert")
	upCA := flag.String("upstream-ca", "", "PEM CA certificates the https upstream's certificate must chain to")
	upName := flag.String("upstream-server-name", "", "DNS name the https upstream's certificate must carry")
	flag.Parse()

	u, err := url.Parse(*upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-upstream %q is not an http:// or https:// URL", *upstream)
	}
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	if u.Scheme == "https" {
		if tr.TLSClientConfig, err = clientTLS(*upCert, *upKey, *upCA, *upName); err != nil {
			return err
		}
		tr.ForceAttemptHTTP2 = true
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // the name the agent called, as the sidecars keep it
		},
		Transport:  tr,
		BufferPool: &bufferPool{},
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	if *cert != "" {
		if srv.TLSConfig, err = serverTLS(*cert, *key, *clientCA); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if srv.TLSConfig != nil {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func clientTLS(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	if caFile == "" || serverName == "" {
		return nil, errors.New("an https upstream needs -upstream-ca and -upstream-server-name")
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

func serverTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, errors.New("-cert needs -client-ca: the baseline is mutual TLS, like the sidecar pair")
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{c},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return pool, nil
}

// bufferPool reuses ReverseProxy's 32 KiB copy buffers instead of allocating one per request.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
