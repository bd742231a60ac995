package inject

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/certfile"
	"github.com/agentauth/agentauth/internal/netlimit"
)

// IssueFunc issues a TLS server certificate for dnsNames binding pub (issuer.CA.IssueServingCert).
type IssueFunc func(ctx context.Context, pub crypto.PublicKey, dnsNames []string, ttl time.Duration) ([]*x509.Certificate, error)

// ServerConfig configures NewServer. The serving certificate comes either from Issue (the controller's own CA,
// renewed at half its lifetime) or from CertFile and KeyFile (cert-manager's Secret, re-read when it changes).
type ServerConfig struct {
	Listen   string
	Injector *Injector
	// DNSNames are the webhook Service's names the API server dials, e.g. agentauth-webhook.agentauth.svc.
	DNSNames []string
	Issue    IssueFunc
	// CertTTL is the issued certificate's lifetime (default 24h).
	CertTTL time.Duration
	// CertFile and KeyFile, instead of Issue, hold a certificate someone else issues and renews.
	CertFile, KeyFile string
	// Keeper, when set, keeps the webhook configuration's caBundle current (only with Issue).
	Keeper *BundleKeeper
	// Handlers are other admission webhooks served beside the injector, by path (POST only), with the same
	// certificate: a validating webhook of the controller's custom resources, for instance.
	Handlers map[string]http.Handler
	Limits   netlimit.Config
	Log      *zap.Logger
}

// Server serves the injector's admission webhook over HTTPS. Construct it with NewServer, then Start it; Close
// stops it and its background work.
type Server struct {
	cfg    ServerConfig
	ln     net.Listener
	srv    *http.Server
	cert   atomic.Pointer[tls.Certificate]
	files  *certfile.Reloader
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errc   chan error
}

// NewServer gets the first certificate and binds the listener; nothing is served until Start.
func NewServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.Injector == nil || cfg.Log == nil {
		return nil, errors.New("inject: ServerConfig needs Injector and Log")
	}
	if (cfg.Issue == nil) == (cfg.CertFile == "") {
		return nil, errors.New("inject: ServerConfig needs exactly one of Issue and CertFile")
	}
	if cfg.CertTTL <= 0 {
		cfg.CertTTL = 24 * time.Hour
	}
	s := &Server{cfg: cfg, errc: make(chan error, 1)}
	if cfg.CertFile != "" {
		r, err := certfile.New(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("inject: webhook certificate: %w", err)
		}
		s.files = r
	} else if err := s.renew(ctx); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("inject: %w", err)
	}
	s.ln = cfg.Limits.Listener(ln)
	mux := http.NewServeMux()
	mux.Handle("/", Handler(cfg.Injector, cfg.Log))
	for path, h := range cfg.Handlers {
		mux.Handle("POST "+path, h)
	}
	s.srv = cfg.Limits.Server(mux)
	s.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.getCertificate}
	s.srv.ErrorLog = zap.NewStdLog(cfg.Log.Named("http"))
	return s, nil
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Err receives the error that stopped serving, if serving stops before Close.
func (s *Server) Err() <-chan error { return s.errc }

// Start serves in the background, renews the certificate and keeps the caBundle current until Close.
func (s *Server) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Go(func() {
		if err := s.srv.ServeTLS(s.ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("inject: webhook server: %w", err)
		}
	})
	if s.files != nil {
		s.wg.Go(func() {
			s.files.Watch(ctx, 10*time.Second, func(err error) {
				if err != nil {
					s.cfg.Log.Error("webhook certificate not reloaded; serving the previous one", zap.Error(err))
				} else {
					s.cfg.Log.Info("webhook certificate reloaded")
				}
			})
		})
	} else {
		s.wg.Go(func() { s.renewLoop(ctx) })
	}
	if s.cfg.Keeper != nil {
		s.wg.Go(func() { s.cfg.Keeper.Run(ctx) })
	}
	s.cfg.Log.Info("injector webhook serving", zap.String("listen", s.ln.Addr().String()), zap.Strings("dns_names", s.cfg.DNSNames))
	return nil
}

// Close stops serving (requests in flight get up to 5s) and waits for the background work.
func (s *Server) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	_ = s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.files != nil {
		return s.files.GetCertificate(nil)
	}
	return s.cert.Load(), nil
}

// Certificate is the serving certificate in use (its leaf first).
func (s *Server) Certificate() *x509.Certificate {
	c, err := s.getCertificate(nil)
	if err != nil || c == nil {
		return nil
	}
	return c.Leaf
}

func (s *Server) renew(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	chain, err := s.cfg.Issue(ctx, key.Public(), s.cfg.DNSNames, s.cfg.CertTTL)
	if err != nil {
		return fmt.Errorf("inject: issuing the webhook certificate: %w", err)
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	s.cert.Store(c)
	return nil
}

// renewLoop renews the certificate at half its lifetime; a failure is logged and retried, and the current
// certificate is served until it expires.
func (s *Server) renewLoop(ctx context.Context) {
	for {
		leaf := s.cert.Load().Leaf
		wait := time.Until(leaf.NotAfter) / 2
		if wait < time.Second {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := s.renew(ctx); err != nil {
			s.cfg.Log.Error("renewing the webhook certificate failed; retrying", zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			continue
		}
		s.cfg.Log.Info("webhook certificate renewed", zap.Time("not_after", s.cert.Load().Leaf.NotAfter))
	}
}
