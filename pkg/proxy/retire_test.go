package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// shortCert issues an X.509-SVID for id valid until notAfter.
func (p *testPKI) shortCert(t testing.TB, id string, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		URIs:         []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// rotatingCert is a client SVID of a short lifetime, renewed once past renewAt of it (0.5: at half its lifetime, as
// sidecars do; 1: only once expired). It remembers every certificate it handed out, by XFCC hash.
type rotatingCert struct {
	t        testing.TB
	pki      *testPKI
	life     time.Duration
	renewAt  float64
	mu       sync.Mutex
	cur      *tls.Certificate
	notAfter map[string]time.Time
}

func newRotatingCert(t testing.TB, pki *testPKI, life time.Duration, renewAt float64) *rotatingCert {
	return &rotatingCert{t: t, pki: pki, life: life, renewAt: renewAt, notAfter: map[string]time.Time{}}
}

func (r *rotatingCert) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.cur == nil || now.After(r.cur.Leaf.NotAfter.Add(-time.Duration(float64(r.life)*(1-r.renewAt)))) {
		c := r.pki.shortCert(r.t, agentID, now.Add(r.life))
		r.cur = &c
		sum := sha256.Sum256(c.Leaf.Raw)
		r.notAfter[hex.EncodeToString(sum[:])] = c.Leaf.NotAfter
	}
	return r.cur, nil
}

func (r *rotatingCert) expiryOf(hash string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	na, ok := r.notAfter[hash]
	return na, ok
}

func (r *rotatingCert) lastExpiry() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.Leaf.NotAfter
}

// connCounter counts a listener's open connections.
type connCounter struct {
	net.Listener
	open atomic.Int64
}

func (l *connCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *connCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// hashTool answers 200 with the XFCC Hash= it was handed, and records when it saw each.
type hashTool struct {
	mu   sync.Mutex
	seen []hashSeen
}

type hashSeen struct {
	hash string
	at   time.Time
}

func (h *hashTool) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	_, hash, _ := strings.Cut(r.Header.Get("X-Forwarded-Client-Cert"), "Hash=")
	hash, _, _ = strings.Cut(hash, ";")
	h.mu.Lock()
	h.seen = append(h.seen, hashSeen{hash, at})
	h.mu.Unlock()
	io.WriteString(w, hash)
}

func (h *hashTool) all() []hashSeen {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hashSeen(nil), h.seen...)
}

// startMTLSIngress serves an mtls-only ingress in front of tool on a TLS listener whose open connections it counts.
func startMTLSIngress(t *testing.T, pki *testPKI, tool http.Handler, s *sink, rev RevocationChecker) (addr string, conns *connCounter) {
	t.Helper()
	backend := httptest.NewServer(tool)
	t.Cleanup(backend.Close)
	h, err := NewIngressHandler(IngressConfig{
		Options: Options{Self: toolID, Sink: s},
		Routes:  mustTable(t, &Route{Name: "in", Match: Match{Host: AnyHost}, Upstream: mustURL(t, backend.URL), Modes: wire.ModeMTLS}),
		Steps:   testChain(nil, rev, allowAll()),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	conns = &connCounter{Listener: listen(t)}
	serve(t, Limits{}, Listener{Name: "tls", Listener: conns, Handler: h, TLSConfig: pki.serverTLS(t, toolID)})
	return conns.Addr().String(), conns
}

func TestIngressClosesTheConnectionOfAnExpiredPeer(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			pki := newPKI(t)
			tool := &hashTool{}
			s := &sink{}
			addr, _ := startMTLSIngress(t, pki, tool, s, nil)
			// Renewed only once expired: the first connection outlives its certificate unless it is closed.
			cert := newRotatingCert(t, pki, 2*time.Second, 1)
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, GetClientCertificate: cert.get}}
			if proto == "HTTP/2.0" {
				tr.ForceAttemptHTTP2 = true
			} else {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			get := func() (*http.Response, bool) {
				t.Helper()
				var reused bool
				ctx := httptrace.WithClientTrace(context.Background(),
					&httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/", nil)
				res, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if res.Proto != proto {
					t.Fatalf("proto %s, want %s", res.Proto, proto)
				}
				return res, reused
			}
			res, _ := get()
			first, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("first request: status %d", res.StatusCode)
			}
			expiry := cert.lastExpiry()
			for !time.Now().After(expiry) {
				time.Sleep(20 * time.Millisecond)
			}
			res, reused := get()
			if !reused {
				t.Fatal("the second request did not reuse the connection; the test proves nothing")
			}
			if proto == "HTTP/1.1" && !res.Close {
				t.Error("the refusal does not close the HTTP/1.1 connection")
			}
			checkRefusal(t, res, http.StatusUnauthorized, autherr.ErrPeerCertExpired.Code())
			// HTTP/2: GOAWAY may reach the client just after the refusal, so a request or two may still go out on
			// the old connection (and be refused the same way); then the client must be on a new one.
			for i := 0; ; i++ {
				res, reused = get()
				if res.StatusCode == http.StatusOK {
					break
				}
				checkRefusal(t, res, http.StatusUnauthorized, autherr.ErrPeerCertExpired.Code())
				if i == 10 {
					t.Fatal("the connection of the expired certificate is still in use")
				}
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if reused || string(b) == string(first) {
				t.Fatalf("after the refusal: reused %v, XFCC hash %s (first %s): want a new connection with the new certificate", reused, b, first)
			}
			var refused int
			for _, rec := range s.all() {
				if rec.Reason == autherr.ErrPeerCertExpired.Code() {
					refused++
				}
			}
			if refused == 0 {
				t.Error("no decision record with reason peer_certificate_expired")
			}
		})
	}
}

// TestEgressRetiresConnectionsBeforeTheirCertificates runs an egress → ingress pair under steady load while the
// egress's client certificate rotates every second: no request may fail, each must be authenticated by a
// certificate valid when the tool saw it, and once every certificate has expired no connection may be left open.
func TestEgressRetiresConnectionsBeforeTheirCertificates(t *testing.T) {
	pki := newPKI(t)
	tool := &hashTool{}
	addr, conns := startMTLSIngress(t, pki, tool, &sink{}, nil)
	// Renewed a quarter into its 4s life, a connection's certificate has at least 3s left at the handshake, so the
	// egress retires it at least 0.75s before it expires: room for a request in flight on a loaded machine.
	cert := newRotatingCert(t, pki, 4*time.Second, 0.25)
	egress, err := NewEgressHandler(EgressConfig{
		Options: Options{TLSConfig: func(context.Context, *Route) (*tls.Config, error) {
			return &tls.Config{RootCAs: pki.pool, GetClientCertificate: cert.get}, nil
		}},
		Routes: mustTable(t, &Route{Name: "tool", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, "https://"+addr),
			Modes: wire.ModeMTLS}),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer egress.Close()
	srv := httptest.NewServer(egress)
	defer srv.Close()
	c := proxyClient(strings.TrimPrefix(srv.URL, "http://"))

	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		sent     atomic.Int64
		firstErr atomic.Pointer[string]
	)
	stop := time.Now().Add(7 * time.Second)
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				sent.Add(1)
				res, err := c.Get("http://tool.test/")
				msg := ""
				switch {
				case err != nil:
					msg = err.Error()
				default:
					b, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						msg = res.Status + ": " + string(b)
					}
				}
				if msg != "" {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, &msg)
				}
			}
		})
	}
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", n, sent.Load(), *firstErr.Load())
	}
	hashes := map[string]bool{}
	for _, s := range tool.all() {
		na, ok := cert.expiryOf(s.hash)
		if !ok {
			t.Fatalf("the tool saw XFCC hash %q, which is no certificate the egress had", s.hash)
		}
		if s.at.After(na) {
			t.Fatalf("a request reached the tool at %s authenticated by a certificate that expired at %s", s.at, na)
		}
		hashes[s.hash] = true
	}
	if len(hashes) < 3 {
		t.Fatalf("%d requests used %d client certificates over 7s of 4s certificates: the rotated ones are not used", sent.Load(), len(hashes))
	}
	// Every certificate has expired once the last one has: by then every connection must be closed.
	last := cert.lastExpiry()
	deadline := last.Add(30 * time.Second)
	for conns.open.Load() > 0 || !time.Now().After(last) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open after every certificate expired", conns.open.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d requests, %d certificates", sent.Load(), len(hashes))
}

// TestRevocationClosesTheConnection: a revocation that refuses the caller of an open connection refuses its next
// request, as any request-level check does, and closes that connection (HTTP/1.1 Connection: close, HTTP/2 GOAWAY),
// so the caller has to handshake again; with a renewed certificate it is let in.
func TestRevocationClosesTheConnection(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			pki := newPKI(t)
			var revokedSerial atomic.Pointer[big.Int]
			rev := revFunc(func(_ context.Context, id *Identity) error {
				if s := revokedSerial.Load(); s != nil && id.PeerCert.SerialNumber.Cmp(s) == 0 {
					return Revoked("rev-1", "x509 serial revoked")
				}
				return nil
			})
			addr, conns := startMTLSIngress(t, pki, &hashTool{}, &sink{}, rev)
			var handshakes atomic.Int64
			current := atomic.Pointer[tls.Certificate]{}
			c1 := pki.shortCert(t, agentID, time.Now().Add(time.Hour))
			current.Store(&c1)
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					handshakes.Add(1)
					return current.Load(), nil
				}}}
			if proto == "HTTP/2.0" {
				tr.ForceAttemptHTTP2 = true
			} else {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			get := func() *http.Response {
				t.Helper()
				res, err := c.Get("https://" + addr + "/")
				if err != nil {
					t.Fatal(err)
				}
				if res.Proto != proto {
					t.Fatalf("proto %s, want %s", res.Proto, proto)
				}
				return res
			}
			res := get()
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || handshakes.Load() != 1 || conns.open.Load() != 1 {
				t.Fatalf("status %d, %d handshakes, %d connections", res.StatusCode, handshakes.Load(), conns.open.Load())
			}
			revokedSerial.Store(c1.Leaf.SerialNumber)
			checkRefusal(t, get(), http.StatusForbidden, autherr.ErrRevoked.Code())
			// The ingress closes the connection: HTTP/1.1 right after the refusal, HTTP/2 after GOAWAY.
			deadline := time.Now().Add(10 * time.Second)
			for conns.open.Load() > 0 {
				if time.Now().After(deadline) {
					t.Fatal("the connection of the revoked certificate is still open")
				}
				time.Sleep(10 * time.Millisecond)
			}
			c2 := pki.shortCert(t, agentID, time.Now().Add(time.Hour))
			current.Store(&c2)
			res = get()
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || handshakes.Load() != 2 {
				t.Fatalf("with a renewed certificate: status %d after %d handshakes", res.StatusCode, handshakes.Load())
			}
		})
	}
}
