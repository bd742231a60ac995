package identity_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	agent   = spiffeid.RequireFromString("spiffe://example.org/agent")
	tool    = spiffeid.RequireFromString("spiffe://example.org/tool")
	timeout = 30 * time.Second
)

// creds writes a full credential set into dir and returns the matching config.
func creds(t *testing.T, ca *testca.CA, dir string, svid *x509svid.SVID, wit *testca.WITSVID) identity.FileConfig {
	t.Helper()
	cert, key := ca.WriteSVIDFiles(dir, svid)
	cfg := identity.FileConfig{
		CertFile: cert,
		KeyFile:  key,
		Bundles:  map[spiffeid.TrustDomain][]string{td: {ca.WriteBundleFile(dir), ca.WriteJWTBundleFile(dir)}},
	}
	if wit != nil {
		cfg.WITFile, cfg.WITKeyFile = ca.WriteWITFiles(dir, wit)
	}
	return cfg
}

type events struct {
	mu      sync.Mutex
	rotated []identity.Status
	failed  []error
}

func (e *events) observer() identity.Observer {
	return identity.ObserverFuncs{
		OnRotated:        func(s identity.Status) { e.mu.Lock(); e.rotated = append(e.rotated, s); e.mu.Unlock() },
		OnRotationFailed: func(err error) { e.mu.Lock(); e.failed = append(e.failed, err); e.mu.Unlock() },
	}
}

func (e *events) counts() (int, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.rotated), len(e.failed)
}

func TestFileSourceLoads(t *testing.T) {
	ca := testca.New(t, td, testca.WithIntermediate())
	svid := ca.CreateX509SVID(agent)
	wit := ca.CreateWITSVID(agent)
	var ev events
	cfg := creds(t, ca, t.TempDir(), svid, wit)
	cfg.Observer = ev.observer()
	src, err := identity.NewFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	got, _ := src.GetX509SVID()
	if got.ID != agent || !got.Certificates[0].Equal(svid.Certificates[0]) || len(got.Certificates) != 2 {
		t.Fatal("wrong SVID loaded")
	}
	if b, err := src.GetX509BundleForTrustDomain(td); err != nil || !b.Equal(ca.X509Bundle()) {
		t.Fatalf("X.509 bundle: %v", err)
	}
	if b, err := src.GetJWTBundleForTrustDomain(td); err != nil || !b.Equal(ca.JWTBundle()) {
		t.Fatalf("JWT bundle: %v", err)
	}
	if b, err := src.GetWITBundleForTrustDomain(td); err != nil || !b.Equal(ca.WITBundle()) {
		t.Fatalf("WIT bundle: %v", err)
	}
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.org")); err == nil {
		t.Fatal("bundle for an unconfigured trust domain")
	}
	w, err := src.GetWIT()
	if err != nil {
		t.Fatal(err)
	}
	if w.Token != wit.Token || w.Alg != "ES256" || w.Subject != agent.String() || !w.Expiry.Equal(wit.Expiry) {
		t.Fatalf("WIT = %+v", w)
	}
	if err := identity.Ready(src, true); err != nil {
		t.Fatal(err)
	}
	st := identity.StatusOf(src)
	if st.ID != agent || !st.X509Expiry.Equal(svid.Certificates[0].NotAfter) || len(st.TrustDomains) != 1 {
		t.Fatalf("status %+v", st)
	}
	if r, f := ev.counts(); r != 1 || f != 0 {
		t.Fatalf("rotated %d failed %d, want 1 0", r, f)
	}
}

func TestFileSourceWithoutWIT(t *testing.T) {
	ca := testca.New(t, td)
	src, err := identity.NewFileSource(creds(t, ca, t.TempDir(), ca.CreateX509SVID(agent), nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.GetWIT(); !errors.Is(err, identity.ErrNoWIT) {
		t.Fatalf("GetWIT: %v, want ErrNoWIT", err)
	}
	if err := identity.Ready(src, false); err != nil {
		t.Fatal(err)
	}
	if err := identity.Ready(src, true); !errors.Is(err, identity.ErrNoWIT) {
		t.Fatalf("Ready(requireWIT): %v", err)
	}
}

func TestFileSourceRejects(t *testing.T) {
	ca := testca.New(t, td)
	other := testca.New(t, td)
	past := time.Now().Add(-time.Minute)
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string, cfg *identity.FileConfig)
		want   error
	}{
		{"expired SVID", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			ca.WriteSVIDFiles(dir, ca.CreateX509SVID(agent, testca.WithNotAfter(past)))
		}, autherr.ErrExpired},
		{"SVID not yet valid", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			ca.WriteSVIDFiles(dir, ca.CreateX509SVID(agent, testca.WithNotBefore(time.Now().Add(time.Hour))))
		}, autherr.ErrNotYetValid},
		{"key does not match certificate", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			a, b := ca.CreateX509SVID(agent), ca.CreateX509SVID(agent)
			_, key := ca.WriteSVIDFiles(t.TempDir(), b)
			cert, _ := ca.WriteSVIDFiles(dir, a)
			cfg.CertFile, cfg.KeyFile = cert, key
		}, autherr.ErrMismatch},
		{"SVID from an untrusted CA", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			other.WriteSVIDFiles(dir, other.CreateX509SVID(agent))
		}, autherr.ErrUntrustedIssuer},
		{"two URI SANs", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			ca.WriteSVIDFiles(dir, ca.CreateX509SVID(agent, testca.WithExtraURIs(&url.URL{Scheme: "https", Host: "a.example"})))
		}, autherr.ErrMalformed},
		{"garbage certificate", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			os.WriteFile(cfg.CertFile, []byte("not PEM"), 0o600)
		}, autherr.ErrMalformed},
		{"bundle is a leaf certificate", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			cert, _ := ca.WriteSVIDFiles(t.TempDir(), ca.CreateX509SVID(tool))
			cfg.Bundles[td] = []string{cert}
		}, autherr.ErrMalformed},
		{"file too large", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			os.WriteFile(cfg.CertFile, make([]byte, identity.MaxFileSize+1), 0o600)
		}, autherr.ErrTooLarge},
		{"missing key file", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			os.Remove(cfg.KeyFile)
		}, fs.ErrNotExist},
		{"WIT key does not match cnf", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			w := ca.CreateWITSVID(agent)
			w.Key = ca.CreateWITSVID(agent).Key
			ca.WriteWITFiles(dir, w)
		}, autherr.ErrMismatch},
		{"WIT for another subject", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			ca.WriteWITFiles(dir, ca.CreateWITSVID(tool))
		}, autherr.ErrMismatch},
		{"WIT expired", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			ca.WriteWITFiles(dir, ca.CreateWITSVID(agent, testca.WithNotAfter(past)))
		}, autherr.ErrExpired},
		{"WIT signed by another issuer", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			ca.WriteWITFiles(dir, other.CreateWITSVID(agent))
		}, autherr.ErrBadSignature},
		{"WIT is not a JWS", func(t *testing.T, dir string, cfg *identity.FileConfig) {
			os.WriteFile(cfg.WITFile, []byte("a.b"), 0o600)
		}, autherr.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := creds(t, ca, dir, ca.CreateX509SVID(agent), ca.CreateWITSVID(agent))
			tc.mutate(t, dir, &cfg)
			_, err := identity.NewFileSource(cfg)
			var re *identity.ReloadError
			if !errors.As(err, &re) || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want a *ReloadError wrapping %v", err, tc.want)
			}
		})
	}
}

func TestFileSourceBadRotationKeepsOldState(t *testing.T) {
	ca := testca.New(t, td)
	dir := t.TempDir()
	first := ca.CreateX509SVID(agent)
	var ev events
	cfg := creds(t, ca, dir, first, nil)
	cfg.Observer = ev.observer()
	src, err := identity.NewFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	updated := src.Updated()

	// An SVID of a CA the bundle does not know yet: refused, old state kept, failure reported once.
	newCA := testca.New(t, td)
	next := newCA.CreateX509SVID(agent)
	newCA.WriteSVIDFiles(dir, next)
	for range 3 {
		var re *identity.ReloadError
		if err := src.Reload(); !errors.As(err, &re) || !errors.Is(err, autherr.ErrUntrustedIssuer) {
			t.Fatalf("Reload = %v, want ReloadError wrapping ErrUntrustedIssuer", err)
		}
	}
	if got, _ := src.GetX509SVID(); !got.Certificates[0].Equal(first.Certificates[0]) {
		t.Fatal("a refused rotation replaced the SVID")
	}
	if r, f := ev.counts(); r != 1 || f != 1 {
		t.Fatalf("rotated %d failed %d, want 1 1 (same bad content counted once)", r, f)
	}
	select {
	case <-updated:
		t.Fatal("Updated fired for a refused rotation")
	default:
	}

	// Once the bundle carries both CAs the same files are accepted.
	old, _ := os.ReadFile(ca.WriteBundleFile(t.TempDir()))
	add, _ := os.ReadFile(newCA.WriteBundleFile(t.TempDir()))
	if err := os.WriteFile(cfg.Bundles[td][0], append(old, add...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := src.GetX509SVID(); !got.Certificates[0].Equal(next.Certificates[0]) {
		t.Fatal("rotation to the new CA not applied")
	}
	<-updated
	if r, f := ev.counts(); r != 2 || f != 1 {
		t.Fatalf("rotated %d failed %d, want 2 1", r, f)
	}
}

func TestFileSourceReloadUnchangedIsNoop(t *testing.T) {
	ca := testca.New(t, td)
	var ev events
	cfg := creds(t, ca, t.TempDir(), ca.CreateX509SVID(agent), nil)
	cfg.Observer = ev.observer()
	src, err := identity.NewFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	updated := src.Updated()
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-updated:
		t.Fatal("Updated fired without a change")
	default:
	}
	if r, _ := ev.counts(); r != 1 {
		t.Fatalf("rotated %d times, want 1", r)
	}
}

func TestFileSourceWatch(t *testing.T) {
	ca := testca.New(t, td)
	dir := t.TempDir()
	src, err := identity.NewFileSource(creds(t, ca, dir, ca.CreateX509SVID(agent), ca.CreateWITSVID(agent)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	watchCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Watch(watchCtx, 5*time.Millisecond) }()

	// Two independent waiters both see the change.
	w1, w2 := src.Updated(), src.Updated()
	next := ca.CreateX509SVID(agent)
	nextWIT := ca.CreateWITSVID(agent)
	ca.WriteSVIDFiles(dir, next)
	ca.WriteWITFiles(dir, nextWIT)
	for {
		select {
		case <-w1:
		case <-ctx.Done():
			t.Fatal("no rotation seen")
		}
		<-w2
		// Re-armed before reading, so a change between the read and the next wait is not missed.
		w1, w2 = src.Updated(), src.Updated()
		got, _ := src.GetX509SVID()
		wit, werr := src.GetWIT()
		if got.Certificates[0].Equal(next.Certificates[0]) && werr == nil && wit.Token == nextWIT.Token {
			break
		}
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v", err)
	}
}

// TestFileSourceRotationUnderTLS: an open connection keeps working across a rotation, new handshakes get the new
// certificate.
func TestFileSourceRotationUnderTLS(t *testing.T) {
	ca := testca.New(t, td)
	dir := t.TempDir()
	first := ca.CreateX509SVID(tool)
	src, err := identity.NewFileSource(creds(t, ca, dir, first, nil))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		TLSConfig: tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeID(agent)),
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()

	client := ca.CreateX509SVID(agent)
	tr := &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(client, ca.X509Bundle(), tlsconfig.AuthorizeID(tool))}
	defer tr.CloseIdleConnections()
	get := func() (serial string, reused bool) {
		t.Helper()
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ln.Addr().String(), nil)
		resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.ReadAll(resp.Body)
		return resp.TLS.PeerCertificates[0].SerialNumber.String(), reused
	}

	s1, _ := get()
	if s1 != first.Certificates[0].SerialNumber.String() {
		t.Fatal("first handshake did not present the first SVID")
	}
	second := ca.CreateX509SVID(tool)
	ca.WriteSVIDFiles(dir, second)
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if s, reused := get(); !reused || s != s1 {
		t.Fatalf("open connection: reused=%v serial %s, want the old connection to keep serving", reused, s)
	}
	tr.CloseIdleConnections()
	if s, reused := get(); reused || s != second.Certificates[0].SerialNumber.String() {
		t.Fatalf("new connection: reused=%v serial %s, want the rotated SVID", reused, s)
	}
}

// expiredSVID serves a real but expired SVID over an otherwise valid FileSource.
type expiredSVID struct {
	*identity.FileSource
	svid *x509svid.SVID
}

func (e expiredSVID) GetX509SVID() (*x509svid.SVID, error) { return e.svid, nil }

func TestReadyRefusesExpired(t *testing.T) {
	ca := testca.New(t, td)
	src, err := identity.NewFileSource(creds(t, ca, t.TempDir(), ca.CreateX509SVID(agent), nil))
	if err != nil {
		t.Fatal(err)
	}
	expired := expiredSVID{src, ca.CreateX509SVID(agent, testca.WithTTL(-time.Minute))}
	if err := identity.Ready(expired, false); !errors.Is(err, autherr.ErrExpired) {
		t.Fatalf("Ready = %v, want ErrExpired", err)
	}
}

// TestFileSourceEd25519WIT: a WIT whose workload key is Ed25519 (cnf.jwk.alg EdDSA, WIMSE) loads, with its issuer
// signature checked against the bundle as for the WIT-SVID profile's algorithms; whether EdDSA is allowed is the
// sidecar's rule (identity.witProfile), not the source's.
func TestFileSourceEd25519WIT(t *testing.T) {
	ca := testca.New(t, td)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wit := ca.CreateWITSVID(agent, testca.WithKey(edKey))
	src, err := identity.NewFileSource(creds(t, ca, t.TempDir(), ca.CreateX509SVID(agent), wit))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	w, err := src.GetWIT()
	if err != nil {
		t.Fatal(err)
	}
	if w.Token != wit.Token || w.Alg != "EdDSA" || w.Subject != agent.String() || !w.Expiry.Equal(wit.Expiry) {
		t.Fatalf("WIT = %+v", w)
	}

	// Signed by another CA of the same trust domain: refused as it would be with an ES256 workload key.
	foreign := testca.New(t, td).CreateWITSVID(agent, testca.WithKey(edKey))
	_, err = identity.NewFileSource(creds(t, ca, t.TempDir(), ca.CreateX509SVID(agent), foreign))
	if !errors.Is(err, autherr.ErrBadSignature) {
		t.Fatalf("foreign EdDSA WIT: err = %v, want bad_signature", err)
	}
}
