//go:build adversarial

package adversarial

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// The httpsig ingress: a tool's sidecar that takes WIMSE proofs (HTTP signatures or WPTs) in cleartext on
// loopback, so hostile clients can write raw HTTP/1.1 to it, with a tool that records what reaches it.
const (
	sigHost = "signed.tools.local"
	// Its listener takes sigMaxConns connections, sigMaxConnsPerIP from one address.
	sigMaxConns      = 400
	sigMaxConnsPerIP = 50
	// Bodies: one may be buffered up to sigMaxBody, all together up to sigBodyBudget (room for one of the largest
	// and a little more), and a body must arrive within bodyReadTimeout 2s plus 1s per 1024 bytes received.
	sigMaxBody    = 8 << 20
	sigBodyBudget = 16 << 20
)

var sigLimits = fmt.Sprintf("{maxConnections: %d, maxConnectionsPerIP: %d, readHeaderTimeout: 60s, idleTimeout: 60s, "+
	"maxBodyBytes: %d, maxBufferedBodies: %d, bodyReadTimeout: 2s, bodyMinRate: 1024}",
	sigMaxConns, sigMaxConnsPerIP, sigMaxBody, sigBodyBudget)

// sigIngress is an ingress sidecar requiring [wpt, httpsig], with file credentials from a test CA (whose agent
// WIT the test holds, so it can sign as a legitimate caller), in front of a recorder.
type sigIngress struct {
	proc        *testproc.Proc
	addr, admin string
	tool        *recorder
	wit         *testca.WITSVID
	signer      *httpsig.Signer
}

func startSigIngress(t *testing.T, dir string) *sigIngress {
	t.Helper()
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"))
	s := &sigIngress{addr: testproc.FreeAddr(t), admin: testproc.FreeAddr(t), tool: startRecorder(t),
		wit: ca.CreateWITSVID(spiffeid.RequireFromString(agentID))}
	var err error
	if s.signer, err = httpsig.NewSigner(s.wit.Token, s.wit.Key, httpsig.SignerOptions{}); err != nil {
		t.Fatal(err)
	}
	credDir := t.TempDir()
	cert, key := ca.WriteSVIDFiles(credDir, ca.CreateX509SVID(spiffeid.RequireFromString(toolID)))
	cfg := fmt.Sprintf(`identity:
  files:
    cert: %s
    key: %s
    bundles:
      example.org: [%s, %s]
ingress:
  listen: %s
  backend: http://%s
  allowCleartextProofs: true
  require: [wpt, httpsig]
  host: %s
admin: {listen: %s, limits: %s}
limits: %s
log: {level: warn}
`, cert, key, ca.WriteBundleFile(credDir), ca.WriteJWTBundleFile(credDir), s.addr, s.tool.addr, sigHost, s.admin,
		listenerLimits, sigLimits)
	s.proc = testproc.Start(t, filepath.Join(binDir, "sidecar"), testproc.Name("sig-ingress"),
		testproc.Args("-config", (&fixture{dir: dir}).write(t, "sig-ingress.yaml", cfg)))
	testproc.WaitHTTP(t, s.proc, "http://"+s.admin+"/readyz", http.StatusOK)
	return s
}

// signedHead is the request line and header of a POST to path signed by the agent over body, announcing length
// bytes (chunked when negative), with extra header lines; the body is for the caller to send.
func (s *sigIngress) signedHead(t *testing.T, path string, body []byte, length int64, extra string) string {
	t.Helper()
	return head(path, length, s.signedRequest(t, "http://"+sigHost+path, body).Header, extra)
}

// signedRequest is a POST to url, with Host sigHost, signed by the agent over body.
func (s *sigIngress) signedRequest(t *testing.T, url string, body []byte) *http.Request {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Host = sigHost
	req.Header.Set("Content-Type", "application/octet-stream")
	if err := s.signer.SignRequestFor(req, body, "http://"+sigHost+req.URL.Path); err != nil {
		t.Fatal(err)
	}
	return req
}

// wptHead is the request line and header of a POST to path with the agent's WIT and a WPT for it.
func (s *sigIngress) wptHead(t *testing.T, method, path, aud string, length int64) string {
	t.Helper()
	prover, err := wpt.NewProver(s.wit.Token, s.wit.Key)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := prover.Mint(wpt.ProofParams{Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(head(path, length, http.Header{wire.HeaderWIT: {s.wit.Token}, wire.HeaderWPT: {proof}}, ""),
		"POST ", method+" ", 1)
}

// head is a POST request line to path on sigHost and its header: h, then extra lines, then the framing.
func head(path string, length int64, h http.Header, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\n", path, sigHost)
	switch {
	case length >= 0:
		fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	default:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	h.Write(&b)
	b.WriteString(extra + "\r\n")
	return b.String()
}

// call makes a legitimate signed POST of body to path and returns the status and what the tool says it got.
func (s *sigIngress) call(t *testing.T, path string, body []byte) (int, toolSaw, error) {
	t.Helper()
	return do(s.signedRequest(t, "http://"+s.addr+path, body))
}

func do(req *http.Request) (int, toolSaw, error) {
	// Generous: on a loaded machine, behind a full listener, the answer may take several body timeouts.
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, toolSaw{}, err
	}
	defer resp.Body.Close()
	var saw toolSaw
	if resp.StatusCode == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(&saw)
	}
	return resp.StatusCode, saw, err
}

// recorder is the tool: it keeps the request line of everything that reaches it, and answers with the request
// and the number of body bytes it received. It answers OPTIONS * through its handler too, which net/http would
// otherwise do itself, so that nothing reaches it unseen.
type recorder struct {
	addr string
	mu   sync.Mutex
	seen []string
}

type toolSaw struct {
	Request string `json:"request"`
	Bytes   int64  `json:"bytes"`
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{addr: ln.Addr().String()}
	srv := &http.Server{Handler: rec, ReadHeaderTimeout: 30 * time.Second, DisableGeneralOptionsHandler: true}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rec
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	line := r.Method + " " + r.RequestURI
	rec.mu.Lock()
	rec.seen = append(rec.seen, line)
	rec.mu.Unlock()
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	json.NewEncoder(w).Encode(toolSaw{Request: line, Bytes: n})
}

// saw returns the request lines the tool saw that contain any of subs.
func (rec *recorder) saw(subs ...string) []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []string
	for _, l := range rec.seen {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// rssWatch samples a process's resident memory until stopped and keeps the highest value.
type rssWatch struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Int64
	err  error
}

func watchRSS(pid int) *rssWatch {
	w := &rssWatch{stop: make(chan struct{}), done: make(chan struct{})}
	sample := func() bool {
		rss, err := residentBytes(pid)
		if err != nil {
			w.err = err
			return false
		}
		if rss > w.peak.Load() {
			w.peak.Store(rss)
		}
		return true
	}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for sample() {
			select {
			case <-w.stop:
				sample()
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// check stops the watch and fails t if the peak was over rssBound.
func (w *rssWatch) check(t *testing.T, what string) {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatal(w.err)
	}
	peak := w.peak.Load()
	t.Logf("%s: ingress peak RSS %d MiB", what, peak>>20)
	if peak > rssBound {
		t.Errorf("%s: ingress RSS reached %d MiB, over the bound of %d MiB", what, peak>>20, rssBound>>20)
	}
}

// dialFrom connects to addr from the loopback address ip, so that many connections spread over clients.
func dialFrom(t *testing.T, ip net.IP, addr string) net.Conn {
	t.Helper()
	c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange is one raw request's outcome.
type exchange struct {
	status int
	reason string
	header http.Header
	body   []byte
	// written is how much of the body the client had sent when the answer came.
	written int64
	// closed: the server closed the connection (with status 0: without an answer).
	closed bool
	err    error
}

// readAnswer reads the final response on br (informational ones, such as a 100 Continue forwarded from the
// tool, are skipped), and its refusal reason.
func readAnswer(c net.Conn, br *bufio.Reader) exchange {
	// A bound on a broken run, not a timed assertion: the answers come at once, or after a body timeout.
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return exchange{closed: !isTimeout(err), err: err}
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode < 200 {
			continue
		}
		var refusal struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &refusal)
		return exchange{status: res.StatusCode, reason: refusal.Error, header: res.Header, body: body}
	}
}

// closedAfter reports whether the server closes the connection after its answer on br.
func closedAfter(c net.Conn, br *bufio.Reader) bool {
	c.SetReadDeadline(time.Now().Add(60 * time.Second)) // a bound on a broken run: the close comes at once
	_, err := br.ReadByte()
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// sendAndRead writes head, then pumps body while it waits for the answer, as a client that does not wait to be
// told: the server must answer (or close) without taking the whole body.
func sendAndRead(c net.Conn, head string, body []byte) exchange {
	// A small send buffer, so that what the client manages to write is what the server read (plus a little).
	c.(*net.TCPConn).SetWriteBuffer(64 << 10)
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, head); err != nil {
		return exchange{closed: true, err: err}
	}
	var written atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rest := body; len(rest) > 0; {
			n, err := c.Write(rest[:min(len(rest), 32<<10)])
			written.Add(int64(n))
			rest = rest[n:]
			if err != nil {
				return
			}
		}
	}()
	x := readAnswer(c, br)
	x.written = written.Load()
	c.Close()
	<-done
	return x
}

// TestDataPlaneAbuse sends hostile requests to an httpsig ingress sidecar: malformed framing, the asterisk
// form, oversized bodies without credentials, bodies over the buffering budget, and slow bodies filling its
// listener. Each is refused as documented, nothing reaches the tool that should not, memory stays bounded, and
// legitimate callers and the control plane are still served.
func TestDataPlaneAbuse(t *testing.T) {
	testproc.RaiseFileLimit(t)
	f := newFixture(t)
	f.startController(t)
	s := startSigIngress(t, f.dir)
	if code, saw, err := s.call(t, "/echo", []byte("hello")); err != nil || code != http.StatusOK || saw.Bytes != 5 {
		t.Fatalf("signed call: %d %+v %v", code, saw, err)
	}
	t.Run("asterisk form", func(t *testing.T) { testAsteriskForm(t, s) })
	t.Run("malformed chunked body", func(t *testing.T) { testMalformedChunked(t, s) })
	t.Run("unauthenticated oversized bodies", func(t *testing.T) { testUnauthenticatedOversized(t, s) })
	t.Run("body budget", func(t *testing.T) { testBodyBudget(t, f, s) })
	t.Run("slow bodies", func(t *testing.T) { testSlowBodies(t, f, s) })
}

// testAsteriskForm: "GET * HTTP/1.1" is refused 400 malformed before credentials are looked at, with or without
// them, and OPTIONS * is answered by net/http itself; none of them reaches the tool.
func testAsteriskForm(t *testing.T, s *sigIngress) {
	for _, tc := range []struct {
		name, req string
		status    int
		reason    string
	}{
		{"GET * without credentials", "GET * HTTP/1.1\r\nHost: " + sigHost + "\r\n\r\n", http.StatusBadRequest, "malformed"},
		// With a WIT and a WPT for the audience the target would give: a proof valid for "*" does not let it in.
		{"GET * with a WPT", s.wptHead(t, "GET", "*", "http://"+sigHost+"*", 0), http.StatusBadRequest, "malformed"},
		{"DELETE * with a WPT", s.wptHead(t, "DELETE", "*", "http://"+sigHost+"*", 0), http.StatusBadRequest, "malformed"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: " + sigHost + "\r\n\r\n", http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, net.IPv4(127, 0, 0, 1), s.addr)
			io.WriteString(c, tc.req)
			x := readAnswer(c, bufio.NewReader(c))
			if x.err != nil || x.status != tc.status || x.reason != tc.reason {
				t.Fatalf("got %d %q (%v), want %d %q", x.status, x.reason, x.err, tc.status, tc.reason)
			}
		})
	}
	// Had one been forwarded, the tool would have seen it before the client got its answer; and the tool still
	// sees what it should.
	if code, _, err := s.call(t, "/after-asterisk", nil); err != nil || code != http.StatusOK {
		t.Fatalf("signed call: %d %v", code, err)
	}
	if got := s.tool.saw("*", "%2A", "%2a"); len(got) != 0 {
		t.Errorf("the tool saw %q", got)
	}
}

// testMalformedChunked: a request body that is not valid chunked encoding is the client's fault, 400
// bad_request_framing, whether ingress buffers it (to check an HTTP signature's digest) or streams it to the tool
// (a WPT does not cover the body), not 502 as if the tool had failed.
func testMalformedChunked(t *testing.T, s *sigIngress) {
	const bad = "5\r\nhello\r\nzz-not-hex\r\n"
	for _, tc := range []struct{ name, head string }{
		{"buffered (httpsig)", s.signedHead(t, "/chunked", []byte("hello"), -1, "")},
		{"streamed (wpt)", s.wptHead(t, "POST", "/chunked", "http://"+sigHost+"/chunked", -1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, net.IPv4(127, 0, 0, 1), s.addr)
			io.WriteString(c, tc.head+bad)
			x := readAnswer(c, bufio.NewReader(c))
			if x.err != nil || x.status != http.StatusBadRequest || x.reason != "bad_request_framing" {
				t.Fatalf("got %d %q (%v), want 400 bad_request_framing", x.status, x.reason, x.err)
			}
		})
	}
}

// testUnauthenticatedOversized: 100 clients announce and send 8 MiB bodies with a forged WIT, none, or a real
// WIT and a forged signature. Each is refused on its header, while most of its body is unsent (before the fix,
// ingress buffered every body before verifying anything: 100 × 8 MiB), ingress memory stays bounded during and
// after, and a legitimate signed call still goes through.
func testUnauthenticatedOversized(t *testing.T, s *sigIngress) {
	const clients, perIP, length = 100, 20, int64(sigMaxBody)
	forgedSig := "Content-Digest: sha-256=:AAAA:\r\n" +
		"Signature-Input: wimse=(\"@method\");created=1;expires=2;nonce=\"n\";tag=\"wimse-workload-to-workload\"\r\n" +
		"Signature: wimse=:AAAA:\r\n"
	// The agent's real WIT and signature input, with a signature (64 zero bytes) that is not the agent's.
	forged := s.signedRequest(t, "http://"+sigHost+"/oversized", []byte("x")).Header
	forged.Set(wire.HeaderSignature, "wimse=:"+strings.Repeat("A", 86)+"==:")
	realWIT := head("/oversized", length, forged, "")
	variants := []struct {
		name, head string
		status     int
		reason     string
	}{
		{"forged WIT", head("/oversized", length, nil, "Workload-Identity-Token: eyJhbGciOiJFUzI1NiJ9.e30.AAAA\r\n"+forgedSig),
			http.StatusBadRequest, "malformed"},
		{"no WIT", head("/oversized", length, nil, forgedSig), http.StatusUnauthorized, "credential_missing"},
		{"real WIT, forged signature", realWIT, http.StatusBadRequest, "bad_signature"},
	}
	body := make([]byte, length)
	rss := watchRSS(s.proc.Pid())
	results := make([]exchange, clients)
	var wg sync.WaitGroup
	for i := range clients {
		c := dialFrom(t, net.IPv4(127, 0, 4, byte(1+i/perIP)), s.addr)
		wg.Go(func() { results[i] = sendAndRead(c, variants[i%len(variants)].head, body) })
	}
	wg.Wait()
	rss.check(t, "during the oversized bodies")
	var answered, closed int
	var most int64
	for i, x := range results {
		v := variants[i%len(variants)]
		most = max(most, x.written)
		switch {
		case x.written >= length:
			t.Errorf("client %d (%s): the whole body was taken before the answer (%d %q)", i, v.name, x.status, x.reason)
		case x.err == nil && (x.status != v.status || x.reason != v.reason):
			t.Errorf("client %d (%s): got %d %q, want %d %q", i, v.name, x.status, x.reason, v.status, v.reason)
		case x.err == nil:
			answered++
		case x.closed:
			closed++
		default:
			t.Errorf("client %d (%s): no answer: %v", i, v.name, x.err)
		}
	}
	t.Logf("%d clients refused on their header, %d cut off without an answer; at most %d KiB of a body sent of %d KiB",
		answered, closed, most>>10, length>>10)
	rssAfter, _ := procStatus(t, s.proc.Pid())
	if rssAfter > rssBound {
		t.Errorf("after the oversized bodies: ingress RSS %d MiB, over the bound of %d MiB", rssAfter>>20, rssBound>>20)
	}
	big := bytes.Repeat([]byte("b"), 1<<20)
	if code, saw, err := s.call(t, "/echo", big); err != nil || code != http.StatusOK || saw.Bytes != int64(len(big)) {
		t.Fatalf("signed call after the oversized bodies: %d %+v %v", code, saw, err)
	}
	if got := s.tool.saw("/oversized"); len(got) != 0 {
		t.Errorf("the tool saw %q", got)
	}
}

// testBodyBudget: while one signed request holds a body of the largest size in the buffering budget, 20 more
// correctly signed ones of that size are refused 503 body_budget_exhausted with Retry-After, on their header;
// memory stays bounded; a small signed call still fits, and the budget comes back when the holder ends.
func testBodyBudget(t *testing.T, f *fixture, s *sigIngress) {
	const probes, length = 20, int64(sigMaxBody)
	body := bytes.Repeat([]byte("h"), int(length))
	// The holder asks for 100-continue: ingress sends it when it starts reading the body, which is after it
	// verified the signature and took the body's bytes from the budget.
	holder := dialFrom(t, net.IPv4(127, 0, 5, 1), s.addr)
	hr := bufio.NewReader(holder)
	io.WriteString(holder, s.signedHead(t, "/echo", body, length, "Expect: 100-continue\r\n"))
	holder.SetReadDeadline(time.Now().Add(60 * time.Second)) // a bound on a broken run
	if res, err := http.ReadResponse(hr, nil); err != nil || res.StatusCode != http.StatusContinue {
		t.Fatalf("holder: got %v (%v), want 100 Continue", res, err)
	}
	holder.Write(body[:64<<10])

	rss := watchRSS(s.proc.Pid())
	results := make([]exchange, probes)
	var wg sync.WaitGroup
	for i := range probes {
		c := dialFrom(t, net.IPv4(127, 0, 5, 2), s.addr)
		h := s.signedHead(t, "/echo", body, length, "")
		wg.Go(func() { results[i] = sendAndRead(c, h, body) })
	}
	wg.Wait()
	for i, x := range results {
		if x.err != nil || x.status != http.StatusServiceUnavailable || x.reason != "body_budget_exhausted" ||
			x.header.Get("Retry-After") == "" || x.written >= length {
			t.Errorf("probe %d: got %d %q Retry-After %q after sending %d of %d bytes (%v), want 503 body_budget_exhausted "+
				"with Retry-After before the body", i, x.status, x.reason, x.header.Get("Retry-After"), x.written, length, x.err)
		}
	}
	if code, saw, err := s.call(t, "/echo", []byte("small")); err != nil || code != http.StatusOK || saw.Bytes != 5 {
		t.Errorf("a small signed call while the budget is held: %d %+v %v", code, saw, err)
	}
	for name, check := range f.controlPlaneChecks() {
		if _, err := answersWithin(check, time.Second); err != nil {
			t.Errorf("%s did not answer within 1s while the budget was held: %v", name, err)
		}
	}
	rss.check(t, "with the budget held")

	holder.Write(body[64<<10:])
	x := readAnswer(holder, hr)
	var saw toolSaw
	if err := json.Unmarshal(x.body, &saw); err != nil || x.status != http.StatusOK || saw.Bytes != length {
		t.Fatalf("holder: %d %s (%v)", x.status, x.body, x.err)
	}
	if code, saw, err := s.call(t, "/echo", body); err != nil || code != http.StatusOK || saw.Bytes != length {
		t.Fatalf("a signed call of the largest size after the holder: %d %+v %v", code, saw, err)
	}
}

// testSlowBodies: as many clients as the listener takes send a 1000-byte body one byte at a time, half with a
// valid signature (ingress buffers the body to check its digest) and half without credentials (refused, and the
// body drained by net/http to reuse the connection). Each is cut off by bodyReadTimeout (408 body_timeout, or the
// 401 once the drain gives up) and its connection closed; meanwhile a legitimate caller, queued behind the full
// listener, is served, the control plane answers within 1s, and memory stays bounded.
func testSlowBodies(t *testing.T, f *fixture, s *sigIngress) {
	const clients, length = sigMaxConns, 1000
	body := bytes.Repeat([]byte("s"), length)
	unsigned := head("/slow", length, nil, "")
	rss := watchRSS(s.proc.Pid())
	stop := make(chan struct{})
	results := make([]exchange, clients)
	var wg sync.WaitGroup
	for i := range clients {
		c := dialFrom(t, net.IPv4(127, 0, 3, byte(1+i/sigMaxConnsPerIP)), s.addr)
		h := unsigned
		if i%2 == 0 {
			h = s.signedHead(t, "/slow", body, length, "")
		}
		if _, err := io.WriteString(c, h+"s"); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { results[i] = trickle(c, stop) })
	}
	t.Logf("%d slow bodies started", clients)

	legit := make(chan string, 1)
	req := s.signedRequest(t, "http://"+s.addr+"/legit", []byte("hello"))
	go func() {
		code, saw, err := do(req)
		if err != nil || code != http.StatusOK || saw.Bytes != 5 {
			legit <- fmt.Sprintf("%d %+v %v", code, saw, err)
			return
		}
		legit <- ""
	}()
	for name, check := range f.controlPlaneChecks() {
		if _, err := answersWithin(check, time.Second); err != nil {
			t.Errorf("%s did not answer within 1s while %d slow bodies were held: %v", name, clients, err)
		}
	}
	if msg := <-legit; msg != "" {
		t.Errorf("legitimate call while the slow bodies held the listener: %s", msg)
	}

	// The slow clients would go on for 500s; the body timeout ends them in seconds. stop bounds a broken run.
	timer := time.AfterFunc(60*time.Second, func() { close(stop) })
	wg.Wait()
	timer.Stop()
	rss.check(t, "during the slow bodies")
	counts := map[string]int{}
	for i, x := range results {
		want := exchange{status: http.StatusRequestTimeout, reason: "body_timeout"}
		if i%2 == 1 {
			want = exchange{status: http.StatusUnauthorized, reason: "credential_missing"}
		}
		counts[fmt.Sprintf("%d %s", x.status, x.reason)]++
		if x.err != nil || x.status != want.status || x.reason != want.reason || !x.closed {
			t.Errorf("slow client %d: got %d %q closed=%t (%v), want %d %q and the connection closed",
				i, x.status, x.reason, x.closed, x.err, want.status, want.reason)
		}
	}
	t.Logf("slow clients' answers: %v", counts)
	if got := s.tool.saw("/slow"); len(got) != 0 {
		t.Errorf("the tool saw %q", got)
	}
}

// trickle sends c's body one byte every 500ms until the server answers or closes, or stop.
func trickle(c net.Conn, stop <-chan struct{}) exchange {
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := br.Peek(1)
		if err == nil || !isTimeout(err) {
			break // an answer, or the connection closed
		}
		select {
		case <-stop:
			return exchange{err: errors.New("still open: the body was not cut off")}
		default:
		}
		if _, err := c.Write([]byte("s")); err != nil {
			break
		}
	}
	x := readAnswer(c, br)
	if x.err == nil {
		x.closed = closedAfter(c, br)
	}
	return x
}
