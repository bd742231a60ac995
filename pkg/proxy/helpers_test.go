package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

const (
	agentID = "spiffe://test.example/agent"
	toolID  = "spiffe://test.example/tool"
)

// testPKI is a throwaway CA issuing X.509-SVIDs for 127.0.0.1.
type testPKI struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{caCert: ca, caKey: key, pool: pool}
}

func (p *testPKI) issue(t testing.TB, spiffeID string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if spiffeID != "" {
		u, _ := url.Parse(spiffeID)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// serverTLS requires and verifies a client certificate from our CA.
func (p *testPKI) serverTLS(t testing.TB, id string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.issue(t, id)},
		ClientCAs:    p.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// tlsFunc hands out a client config with a fresh SVID for id, counting calls (one per handshake).
func (p *testPKI) tlsFunc(t testing.TB, id string, calls *int) TLSConfigFunc {
	cert := p.issue(t, id)
	var mu sync.Mutex
	return func(ctx context.Context, rt *Route) (*tls.Config, error) {
		if calls != nil {
			mu.Lock()
			*calls++
			mu.Unlock()
		}
		return &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}}, nil
	}
}

// fakeSigner is a stand-in WIT+WPT signer: the "WIT" names the subject, the "WPT" names the audience.
type fakeSigner struct {
	subject string
	err     error
}

func (s *fakeSigner) SignRequest(_ context.Context, r *http.Request, rt *Route) error {
	if s.err != nil {
		return s.err
	}
	r.Header.Set(wire.HeaderWIT, "wit-of:"+s.subject)
	r.Header.Set(wire.HeaderWPT, "aud="+rt.TargetAudience(r))
	return nil
}

// fakeAuthn verifies what fakeSigner wrote, against the audience ingress derives from trusted config.
type fakeAuthn struct{}

func (fakeAuthn) Authenticate(_ context.Context, r *http.Request, _ *Peer, rt *Route) (*Identity, error) {
	sub, ok := strings.CutPrefix(r.Header.Get(wire.HeaderWIT), "wit-of:")
	if !ok {
		return nil, fmt.Errorf("fake: %w: no WIT", autherr.ErrMissing)
	}
	if got, want := r.Header.Get(wire.HeaderWPT), "aud="+rt.ExpectedAudience(r); got != want {
		return nil, fmt.Errorf("fake: %w: %q, want %q", autherr.ErrWrongAudience, got, want)
	}
	return &Identity{Subject: sub, DelegatedSubject: r.Header.Get("X-Test-Delegated"),
		TransactionID: r.Header.Get("X-Test-Txn"), ProofID: "jti-1"}, nil
}

// fakeSigSigner stands in for an HTTP-signature signer: it "signs" the body length, read through GetBody.
type fakeSigSigner struct{}

func (fakeSigSigner) SignRequest(_ context.Context, r *http.Request, _ *Route) error {
	b, err := readGetBody(r)
	if err != nil {
		return err
	}
	r.Header.Set(wire.HeaderWIT, "wit-of:"+agentID)
	r.Header.Set(wire.HeaderSignatureInput, fmt.Sprintf("wimse=();len=%d", len(b)))
	r.Header.Set(wire.HeaderSignature, "wimse=:AAAA:")
	return nil
}

// fakeSigAuthn verifies what fakeSigSigner wrote in two parts, as an HTTP signature verifier does: the "WIT" and a
// signature other than "wimse=:bad:" from the headers alone, then the body length the signature covers.
type fakeSigAuthn struct{}

func (fakeSigAuthn) Authenticate(_ context.Context, r *http.Request, _ *Peer, _ *Route) (*Identity, error) {
	sub, ok := strings.CutPrefix(r.Header.Get(wire.HeaderWIT), "wit-of:")
	if !ok {
		return nil, fmt.Errorf("fake: %w: no WIT", autherr.ErrMissing)
	}
	if r.Header.Get(wire.HeaderSignature) == "wimse=:bad:" {
		return nil, fmt.Errorf("fake: %w: signature over the headers", autherr.ErrBadSignature)
	}
	in := r.Header.Get(wire.HeaderSignatureInput)
	return &Identity{Subject: sub, VerifyBody: func(b []byte) error {
		if want := fmt.Sprintf("wimse=();len=%d", len(b)); in != want {
			return fmt.Errorf("fake: %w: %q, want %q", autherr.ErrBadSignature, in, want)
		}
		return nil
	}}, nil
}

func readGetBody(r *http.Request) ([]byte, error) {
	if r.GetBody == nil {
		return nil, errors.New("no GetBody")
	}
	rc, err := r.GetBody()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

type authzFunc func(ctx context.Context, req *AuthzRequest) (*Decision, error)

func (f authzFunc) Authorize(ctx context.Context, req *AuthzRequest) (*Decision, error) {
	return f(ctx, req)
}

func allowAll() Authorizer {
	return authzFunc(func(context.Context, *AuthzRequest) (*Decision, error) {
		return &Decision{Allowed: true, PolicyIDs: []string{"allow-all"}}, nil
	})
}

type revFunc func(ctx context.Context, id *Identity) error

func (f revFunc) Check(ctx context.Context, id *Identity) error { return f(ctx, id) }

// sink collects decision records.
type sink struct {
	mu   sync.Mutex
	recs []DecisionRecord
}

func (s *sink) Record(_ context.Context, d *DecisionRecord) {
	s.mu.Lock()
	s.recs = append(s.recs, *d)
	s.mu.Unlock()
}

func (s *sink) all() []DecisionRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]DecisionRecord(nil), s.recs...)
}

// metrics counts observations.
type metrics struct {
	mu  sync.Mutex
	obs []string
}

func (m *metrics) ObserveRequest(direction, route, result, reason string, _ time.Duration) {
	m.mu.Lock()
	m.obs = append(m.obs, strings.Join([]string{direction, route, result, reason}, "|"))
	m.mu.Unlock()
}

// done wraps a handler and signals each time ServeHTTP has returned, so a test knows the decision record of a
// request is in before it counts records.
type done struct {
	h  http.Handler
	ch chan struct{}
}

func track(h http.Handler) *done { return &done{h: h, ch: make(chan struct{}, 64)} }

func (d *done) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() { d.ch <- struct{}{} }()
	d.h.ServeHTTP(w, r)
}

func (d *done) wait(t testing.TB) {
	t.Helper()
	select {
	case <-d.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not return")
	}
}

// serve runs ls on a Server until the test ends.
func serve(t testing.TB, lim Limits, ls ...Listener) {
	t.Helper()
	s, err := NewServer(lim, nil, ls...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func mustTable(t testing.TB, rs ...*Route) *RouteTable {
	t.Helper()
	tab, err := NewRouteTable(rs...)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// checkRefusal asserts the one refusal format.
func checkRefusal(t testing.TB, res *http.Response, status int, code string) errorBody {
	t.Helper()
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", res.StatusCode, status, b)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
	if e.Error != code || e.Description == "" {
		t.Fatalf("body %+v, want error %q with a description", e, code)
	}
	return e
}

// echoTool answers with the request it saw, as JSON.
type seen struct {
	Method, Host, Path, Query, Proto string
	Header                           http.Header
	Body                             string
}

func echoTool(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{r.Method, r.Host, r.URL.Path, r.URL.RawQuery, r.Proto, r.Header, string(b)})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func decodeSeen(t testing.TB, res *http.Response) seen {
	t.Helper()
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
	var s seen
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return s
}

func proxyClient(proxyAddr string) *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr})}}
}

var errBoom = errors.New("boom")

// testChain is the core of the chain pkg/proxy/steps builds for the sidecar (authentication → binding →
// revocation → authorization), over this package's fakes; a nil RevocationChecker leaves revocation out.
func testChain(authn map[wire.Mode]Authenticator, rev RevocationChecker, authz Authorizer) []Step {
	steps := []Step{&AuthenticateStep{Authenticators: authn}, BindingStep{}}
	if rev != nil {
		steps = append(steps, &RevocationStep{Checker: rev})
	}
	return append(steps, &AuthorizeStep{Authorizer: authz})
}

// signChain is the egress chain pkg/proxy/steps builds for the sidecar, without credentials: traceparent, then
// the route's proofs by signers.
func signChain(signers map[wire.Mode]ProofSigner) []EgressStep {
	return []EgressStep{TraceparentStep{}, &SignStep{Signers: signers}}
}
