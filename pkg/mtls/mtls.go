package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source is what mutual TLS needs: this workload's X.509-SVID and the X.509 authorities of trusted trust
// domains. identity.Source satisfies it.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// DefaultServerNextProtos is the ALPN list ServerConfig offers unless WithNextProtos says otherwise. net/http
// servers speak both.
var DefaultServerNextProtos = []string{"h2", "http/1.1"}

// Option configures ServerConfig and ClientConfig.
type Option func(*options)

type options struct {
	nextProtos []string
	minVersion uint16
	spiffe     []tlsconfig.Option
}

// WithNextProtos sets the ALPN protocols, in preference order. No arguments turns ALPN off.
func WithNextProtos(protos ...string) Option {
	return func(o *options) { o.nextProtos = protos }
}

// WithMinVersion raises the minimum TLS version, e.g. tls.VersionTLS13. Values below TLS 1.2 are ignored.
func WithMinVersion(v uint16) Option {
	return func(o *options) {
		if v > o.minVersion {
			o.minVersion = v
		}
	}
}

// WithSPIFFEOptions passes options (e.g. tlsconfig.WithTrace) to go-spiffe's tlsconfig.
func WithSPIFFEOptions(opts ...tlsconfig.Option) Option {
	return func(o *options) { o.spiffe = append(o.spiffe, opts...) }
}

func newOptions(nextProtos []string, opts []Option) options {
	o := options{nextProtos: nextProtos, minVersion: tls.VersionTLS12}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// ServerConfig returns a tls.Config that presents src's current X.509-SVID, requires a client X.509-SVID that
// chains to src's bundle for the client's trust domain, and accepts it only if authorizer does. TLS 1.2 is the
// floor; Go negotiates 1.3 whenever the peer can. ALPN offers DefaultServerNextProtos: serve it with net/http,
// or pass WithNextProtos when the listener does not speak HTTP/2.
//
// Session tickets are disabled: a resumed session skips certificate verification, which would let a peer
// outlive a bundle rotation or an authorizer change. Connection reuse (keep-alive, HTTP/2) amortises the cost.
func ServerConfig(src Source, authorizer tlsconfig.Authorizer, opts ...Option) *tls.Config {
	o := newOptions(DefaultServerNextProtos, opts)
	cfg := tlsconfig.MTLSServerConfig(src, src, withReason(authorizer), o.spiffe...)
	finish(cfg, o)
	cfg.SessionTicketsDisabled = true
	return cfg
}

// ClientConfig returns a tls.Config that presents src's current X.509-SVID and accepts the server only if its
// X.509-SVID chains to src's bundle and authorizer accepts its SPIFFE ID. The server's DNS name is not checked;
// the SPIFFE ID is the identity. Do not add a ClientSessionCache: resumed sessions skip verification.
//
// By default the client offers no ALPN protocols, because the HTTP stack adds exactly what it speaks
// (http.Transport with ForceAttemptHTTP2, or x/net/http2, add "h2"): offering "h2" from an HTTP/1-only transport
// makes the server answer in HTTP/2 and breaks the connection. Use WithNextProtos for non-HTTP clients.
func ClientConfig(src Source, authorizer tlsconfig.Authorizer, opts ...Option) *tls.Config {
	o := newOptions(nil, opts)
	cfg := tlsconfig.MTLSClientConfig(src, src, withReason(authorizer), o.spiffe...)
	finish(cfg, o)
	return cfg
}

// withReason makes every refusal carry autherr.ErrDenied (go-spiffe's own authorizers return plain errors), so
// classify can tell an authorization refusal from a verification failure. A nil authorizer refuses everyone.
func withReason(authorizer tlsconfig.Authorizer) tlsconfig.Authorizer {
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if authorizer == nil {
			return fmt.Errorf("mtls: %w: peer %s: no authorizer configured", autherr.ErrDenied, id)
		}
		if err := authorizer(id, chains); err != nil {
			return ensureReason(err)
		}
		return nil
	}
}

func finish(cfg *tls.Config, o options) {
	cfg.MinVersion = o.minVersion
	if len(o.nextProtos) > 0 {
		cfg.NextProtos = append([]string(nil), o.nextProtos...)
	}
	verify := cfg.VerifyPeerCertificate
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		return classify(verify(raw, chains))
	}
}

// classify gives a peer-verification failure its reason code, keeping the authorizer's own when it has one.
func classify(err error) error {
	if err == nil || autherr.Of(err) != nil {
		return err
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
		return fmt.Errorf("mtls: %w: peer certificate outside its validity period: %v", autherr.ErrExpired, err)
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) || errors.As(err, &invalid) {
		return fmt.Errorf("mtls: %w: peer certificate does not chain to a trusted authority: %v", autherr.ErrUntrustedIssuer, err)
	}
	return fmt.Errorf("mtls: %w: peer certificate is not a valid X.509-SVID: %v", autherr.ErrUntrustedIssuer, err)
}

// PeerID returns the SPIFFE ID of the peer of a completed handshake made with ServerConfig or ClientConfig
// (which verified the chain; this only reads the leaf's URI SAN).
func PeerID(cs *tls.ConnectionState) (spiffeid.ID, error) {
	if cs == nil || !cs.HandshakeComplete {
		return spiffeid.ID{}, fmt.Errorf("mtls: %w: TLS handshake not complete", autherr.ErrMissing)
	}
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, fmt.Errorf("mtls: %w: peer presented no certificate", autherr.ErrMissing)
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("mtls: %w: peer certificate: %v", autherr.ErrMalformed, err)
	}
	return id, nil
}
