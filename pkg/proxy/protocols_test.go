package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// pair is an egress sidecar and an ingress sidecar in front of one tool, connected by mTLS with WIT+WPT.
type pair struct {
	egress      string // cleartext listener the agent uses (explicit proxy, or origin-form with Host tool.test)
	egressSink  *sink
	ingressSink *sink
	egressDone  *done
	ingressDone *done
	tlsCalls    func() int

	mu     sync.Mutex
	protos []string // protocol of each request the ingress received
}

func newPair(t testing.TB, toolURL string, h2c bool, lim Limits) *pair {
	t.Helper()
	pki := newPKI(t)
	p := &pair{egressSink: &sink{}, ingressSink: &sink{}}

	ingress, err := NewIngressHandler(IngressConfig{
		Options: Options{Self: toolID, Sink: p.ingressSink, Limits: lim},
		Routes: mustTable(t, &Route{Name: "tool", Match: Match{Host: "127.0.0.1"}, Upstream: mustURL(t, toolURL), H2C: h2c,
			Modes: wire.ModeMTLS | wire.ModeWPT}),
		Steps: testChain(map[wire.Mode]Authenticator{wire.ModeWPT: fakeAuthn{}}, nil, allowAll()),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ingress.Close)
	p.ingressDone = track(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.protos = append(p.protos, r.Proto)
		p.mu.Unlock()
		ingress.ServeHTTP(w, r)
	}))
	iln := listen(t)
	serve(t, lim, Listener{Name: "ingress", Listener: iln, Handler: p.ingressDone, TLSConfig: pki.serverTLS(t, toolID)})

	var (
		calls int
		mu    sync.Mutex
	)
	inner := pki.tlsFunc(t, agentID, nil)
	egress, err := NewEgressHandler(EgressConfig{
		Options: Options{Self: agentID, Sink: p.egressSink, Limits: lim,
			TLSConfig: func(ctx context.Context, rt *Route) (*tls.Config, error) {
				mu.Lock()
				calls++
				mu.Unlock()
				return inner(ctx, rt)
			}},
		Routes: mustTable(t, &Route{Name: "tool", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, "https://"+iln.Addr().String()),
			Modes: wire.ModeMTLS | wire.ModeWPT, UpstreamID: toolID}),
		Steps: signChain(map[wire.Mode]ProofSigner{wire.ModeWPT: &fakeSigner{subject: agentID}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(egress.Close)
	p.egressDone = track(egress)
	eln := listen(t)
	serve(t, lim, Listener{Name: "egress", Listener: eln, Handler: p.egressDone})
	p.egress = eln.Addr().String()
	p.tlsCalls = func() int {
		mu.Lock()
		defer mu.Unlock()
		return calls
	}
	return p
}

func (p *pair) ingressProtos() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.protos...)
}

// HTTP/1.1 from the agent, HTTP/2 over mTLS between the sidecars, one pooled connection for many requests.
func TestPairHTTP2OverTLS(t *testing.T) {
	tool := echoTool(t)
	p := newPair(t, tool.URL, false, Limits{})
	c := proxyClient(p.egress)
	for i := range 3 {
		res, err := c.Post(fmt.Sprintf("http://tool.test/r%d", i), "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		got := decodeSeen(t, res)
		if got.Header.Get(wire.HeaderWorkloadID) != agentID || got.Header.Get(wire.HeaderAuthMethod) != string(wire.AuthWITWPT) ||
			got.Body != "body" || got.Path != fmt.Sprintf("/r%d", i) || !strings.Contains(got.Header.Get(wire.HeaderXFCC), "URI="+agentID) {
			t.Fatalf("tool saw %+v", got)
		}
		p.egressDone.wait(t)
		p.ingressDone.wait(t)
	}
	for _, proto := range p.ingressProtos() {
		if proto != "HTTP/2.0" {
			t.Errorf("ingress received %s, want HTTP/2.0", proto)
		}
	}
	if n := p.tlsCalls(); n != 1 {
		t.Errorf("TLS config fetched %d times for 3 requests; want 1 pooled connection", n)
	}
	if e, i := p.egressSink.all(), p.ingressSink.all(); len(e) != 3 || len(i) != 3 || !e[2].Allowed || !i[2].Allowed ||
		i[2].Subject != agentID || i[2].PeerID != agentID {
		t.Errorf("records: egress %+v ingress %+v", e, i)
	}

	// The agent may also speak h2c to the egress listener, routing by :authority.
	h2c := &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}
	req, _ := http.NewRequest("GET", "http://"+p.egress+"/h2c", nil)
	req.Host = "tool.test"
	res, err := h2c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProtoMajor != 2 {
		t.Errorf("agent→egress spoke %s", res.Proto)
	}
	if got := decodeSeen(t, res); got.Path != "/h2c" {
		t.Fatalf("tool saw %+v", got)
	}
}

func h2cOnly() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// An upstream marked h2c gets cleartext HTTP/2 with prior knowledge.
func TestPairH2CUpstream(t *testing.T) {
	tool := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Proto, r.Header.Get(wire.HeaderWorkloadID))
	}))
	tool.Config.Protocols = h2cOnly()
	tool.Start()
	defer tool.Close()
	p := newPair(t, tool.URL, true, Limits{})
	res, err := proxyClient(p.egress).Get("http://tool.test/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "HTTP/2.0 "+agentID {
		t.Fatalf("tool said %q (status %d)", b, res.StatusCode)
	}
}

type duplexService struct {
	testpb.UnimplementedTestServiceServer
	seen chan metadata.MD
}

func (s *duplexService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	s.seen <- md
	stream.SetTrailer(metadata.Pairs("x-trailer", "end-of-stream"))
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

func (s *duplexService) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	grpc.SetTrailer(ctx, metadata.Pairs("x-why", "policy"))
	return nil, status.Error(codes.PermissionDenied, "tool says no")
}

// gRPC bidi streaming through the pair: messages interleave, trailers and status codes arrive.
func TestPairGRPCBidi(t *testing.T) {
	svc := &duplexService{seen: make(chan metadata.MD, 4)}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, svc)
	gln := listen(t)
	go gs.Serve(gln)
	defer gs.Stop()

	p := newPair(t, "http://"+gln.Addr().String(), true, Limits{})
	cc, err := grpc.NewClient(p.egress, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("tool.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"one", "two", "three"} {
		// Each reply is read before the next message is sent: only a full-duplex path gets past the first.
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if string(res.GetPayload().GetBody()) != msg {
			t.Fatalf("got %q, want %q", res.GetPayload().GetBody(), msg)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	if got := stream.Trailer().Get("x-trailer"); len(got) != 1 || got[0] != "end-of-stream" {
		t.Errorf("trailer %v", stream.Trailer())
	}
	md := <-svc.seen
	if got := md.Get(strings.ToLower(wire.HeaderWorkloadID)); len(got) != 1 || got[0] != agentID {
		t.Errorf("tool metadata %v", md)
	}

	// An error with no message is a Trailers-Only response: status and metadata must still arrive.
	for range 5 {
		var trailer metadata.MD
		_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Trailer(&trailer))
		if s, _ := status.FromError(err); s.Code() != codes.PermissionDenied || s.Message() != "tool says no" {
			t.Fatalf("unary status %v", err)
		}
		if got := trailer.Get("x-why"); len(got) != 1 || got[0] != "policy" {
			t.Fatalf("unary trailer %v", trailer)
		}
	}
}

// Server-sent events arrive one by one: the client reads event 1 before the tool writes event 2.
func TestPairSSE(t *testing.T) {
	next := make(chan struct{})
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: two\n\n")
	}))
	defer tool.Close()
	p := newPair(t, tool.URL, false, Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://tool.test/events", nil)
	res, err := proxyClient(p.egress).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	readEvent := func() string {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading event: %v", err)
		}
		br.ReadString('\n')
		return strings.TrimSpace(line)
	}
	if ev := readEvent(); ev != "data: one" {
		t.Fatalf("first event %q", ev)
	}
	close(next)
	if ev := readEvent(); ev != "data: two" {
		t.Fatalf("second event %q", ev)
	}
}

// A WebSocket is authenticated at the upgrade request and then spliced.
func TestPairWebSocket(t *testing.T) {
	upgradeID := make(chan string, 1)
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upgradeID <- r.Header.Get(wire.HeaderWorkloadID)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	}))
	defer tool.Close()
	p := newPair(t, tool.URL, false, Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://tool.test/ws", &websocket.DialOptions{HTTPClient: proxyClient(p.egress)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, msg := range []string{"a", "b"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo:"+msg {
			t.Fatalf("got %q", got)
		}
	}
	if id := <-upgradeID; id != agentID {
		t.Errorf("upgrade request identity %q", id)
	}
	c.Close(websocket.StatusNormalClosure, "")
	p.ingressDone.wait(t)
	if recs := p.ingressSink.all(); len(recs) != 1 || recs[0].Status != http.StatusSwitchingProtocols || !recs[0].Allowed {
		t.Errorf("ingress records %+v", recs)
	}
}

// upstreamFailure checks that a route whose upstream fails answers 502 upstream_unavailable and records it.
func upstreamFailure(t *testing.T, upstream string) {
	t.Helper()
	s := &sink{}
	h, err := NewIngressHandler(IngressConfig{
		Options: Options{Sink: s},
		Routes:  mustTable(t, &Route{Name: "dead", Match: Match{Host: AnyHost}, Upstream: mustURL(t, upstream), Modes: wire.ModePassthrough}),
	})
	if err != nil {
		t.Fatal(err)
	}
	d := track(h)
	srv := httptest.NewServer(d)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	checkRefusal(t, res, http.StatusBadGateway, "upstream_unavailable")
	d.wait(t)
	if r := s.all(); len(r) != 1 || !r[0].Allowed || r[0].Reason != "upstream_unavailable" || r[0].Status != 502 {
		t.Errorf("records %+v", r)
	}
}

// An upstream that accepts and hangs up at once.
func TestUpstreamHangsUp(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	upstreamFailure(t, "http://"+ln.Addr().String())
}

func TestUpstreamSlow(t *testing.T) {
	release := make(chan struct{})
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(tool.Close)
	t.Cleanup(func() { close(release) })
	addr, _ := startEgress(t, EgressConfig{
		Options: Options{Limits: Limits{ResponseHeaderTimeout: 200 * time.Millisecond}},
		Routes:  mustTable(t, &Route{Name: "slow", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough}),
	})
	res, err := proxyClient(addr).Get("http://tool.test/")
	if err != nil {
		t.Fatal(err)
	}
	checkRefusal(t, res, http.StatusGatewayTimeout, "upstream_timeout")
}

// Headers over MaxHeaderBytes get the JSON refusal (431 too_large), over HTTP/1.1 egress and HTTP/2 ingress
// alike; only beyond twice the limit does net/http refuse them itself, before any handler runs.
func TestOversizedHeader(t *testing.T) {
	tool := echoTool(t)
	lim := Limits{MaxHeaderBytes: 4 << 10}
	egress, _ := startEgress(t, EgressConfig{
		Options: Options{Limits: lim},
		Routes:  mustTable(t, &Route{Name: "r", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough}),
	})
	ingress := startIngress(t, IngressConfig{
		Options: Options{Limits: lim},
		Routes:  mustTable(t, &Route{Name: "r", Match: Match{Host: "127.0.0.1"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough}),
	})
	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		proto  string
	}{
		{"egress HTTP/1.1", proxyClient(egress), "http://tool.test/", "HTTP/1.1"},
		{"ingress HTTP/2", ingress.client(nil), "https://" + ingress.tls + "/", "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send := func(header int) (*http.Response, error) {
				req, _ := http.NewRequest("GET", tc.url, nil)
				req.Header.Set("X-Big", strings.Repeat("x", header))
				return tc.client.Do(req)
			}
			get := func(header int) *http.Response {
				t.Helper()
				res, err := send(header)
				if err != nil {
					t.Fatal(err)
				}
				if res.Proto != tc.proto {
					t.Fatalf("answered over %s, want %s", res.Proto, tc.proto)
				}
				return res
			}
			decodeSeen(t, get(3<<10))
			checkRefusal(t, get(6<<10), http.StatusRequestHeaderFieldsTooLarge, "too_large")
			// Beyond twice the limit an HTTP/2 client knows the server's limit (SETTINGS_MAX_HEADER_LIST_SIZE) and
			// does not send; an HTTP/1.1 one gets net/http's own 431.
			res, err := send(64 << 10)
			switch {
			case err != nil && tc.proto == "HTTP/2.0" && strings.Contains(err.Error(), "larger than peer's advertised limit"):
			case err != nil:
				t.Fatal(err)
			default:
				res.Body.Close()
				if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
					t.Fatalf("status %d, want 431 from net/http", res.StatusCode)
				}
			}
		})
	}
}

// A client that sends its header slowly is disconnected after ReadHeaderTimeout.
func TestSlowHeaderClientCutOff(t *testing.T) {
	tool := echoTool(t)
	addr, _ := startEgress(t, EgressConfig{
		Options: Options{Limits: Limits{ReadHeaderTimeout: 100 * time.Millisecond}},
		Routes:  mustTable(t, &Route{Name: "r", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough}),
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET http://tool.test/ HTTP/1.1\r\nHost: tool.test\r\n") // and never the blank line
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = io.ReadAll(conn)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatal("server kept the slow client's connection open")
	}
}

func TestServerShutdownDrains(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	}))
	defer tool.Close()
	h, err := NewEgressHandler(EgressConfig{Routes: mustTable(t,
		&Route{Name: "r", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough})})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	s, err := NewServer(Limits{}, nil, Listener{Name: "egress", Listener: ln, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())

	type result struct {
		body string
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		res, err := proxyClient(ln.Addr().String()).Get("http://tool.test/")
		if err != nil {
			resc <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		resc <- result{string(b), err}
	}()
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	if r := <-resc; r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// When the drain deadline passes, Shutdown closes what is left.
func TestServerShutdownDeadline(t *testing.T) {
	started := make(chan struct{})
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}))
	defer tool.Close()
	h, err := NewEgressHandler(EgressConfig{Routes: mustTable(t,
		&Route{Name: "r", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough})})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	s, err := NewServer(Limits{}, nil, Listener{Name: "egress", Listener: ln, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	errc := make(chan error, 1)
	go func() {
		res, err := proxyClient(ln.Addr().String()).Get("http://tool.test/")
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		errc <- err
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := <-errc; err == nil {
		t.Fatal("request survived a forced shutdown")
	}
}

func TestNewServerValidation(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	if _, err := NewServer(Limits{}, nil, Listener{Name: "x", Listener: ln}); err == nil {
		t.Error("listener without handler accepted")
	}
	_, err := NewServer(Limits{}, nil, Listener{Name: "x", Listener: ln, Handler: http.NotFoundHandler(), Transparent: true,
		TLSConfig: &tls.Config{}})
	if err == nil {
		t.Error("transparent TLS listener accepted")
	}
}

func TestNewServerRefusesUnverifiedClientCerts(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	for _, auth := range []tls.ClientAuthType{tls.RequestClientCert, tls.RequireAnyClientCert} {
		_, err := NewServer(Limits{}, nil, Listener{Name: "x", Listener: ln, Handler: http.NotFoundHandler(),
			TLSConfig: &tls.Config{ClientAuth: auth}})
		if err == nil || !strings.Contains(err.Error(), "nothing verifies") {
			t.Errorf("ClientAuth %v: %v", auth, err)
		}
	}
	verify := func(tls.ConnectionState) error { return nil }
	if _, err := NewServer(Limits{}, nil, Listener{Name: "x", Listener: ln, Handler: http.NotFoundHandler(),
		TLSConfig: &tls.Config{ClientAuth: tls.RequireAnyClientCert, VerifyConnection: verify}}); err != nil {
		t.Errorf("verified config refused: %v", err)
	}
}
