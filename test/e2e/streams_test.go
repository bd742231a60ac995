package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/agentauth/agentauth/internal/testca"
)

// TestSSEStreamsThrough: Server-Sent Events reach the agent one by one, not buffered until the end (MCP's
// streamable HTTP depends on it): the agent holds event 1 before the tool has even sent event 2.
func TestSSEStreamsThrough(t *testing.T) {
	ca := testca.New(t, trustDomain)
	p := startPair(t, ca, pairOptions{egressModes: "[mtls, wpt]", ingressReq: "[mtls, wpt]", tls: true})
	resp, err := p.agent().Get("http://" + toolHost + "/sse?n=3&interval=400ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	type event struct {
		Seq int       `json:"seq"`
		At  time.Time `json:"at"`
	}
	var got []event
	var firstSeen time.Time
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var e event
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e); err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			firstSeen = time.Now()
		}
		got = append(got, e)
	}
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3", len(got))
	}
	if !firstSeen.Before(got[1].At) {
		t.Fatalf("event 1 reached the agent at %v, after the tool sent event 2 at %v: the response was buffered", firstSeen, got[1].At)
	}
}

// TestGRPCStreamThrough: a gRPC server-streaming call crosses egress → ingress (HTTP/2 over mTLS) → an h2c
// backend with every message and the trailers intact. The agent's gRPC client dials the egress listener as it
// would after transparent interception.
func TestGRPCStreamThrough(t *testing.T) {
	ca := testca.New(t, trustDomain)
	p := startPair(t, ca, pairOptions{egressModes: "[mtls, wpt]", ingressReq: "[mtls, wpt]", tls: true, grpc: true,
		routeExtra: "      h2c: false\n"})
	cc, err := grpc.NewClient("passthrough:///"+p.egressProxy,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(toolHost))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{Service: "stream"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[healthpb.HealthCheckResponse_ServingStatus]int{}
	for i := 0; i < 8; i++ {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		seen[m.Status]++
	}
	if seen[healthpb.HealthCheckResponse_SERVING] == 0 || seen[healthpb.HealthCheckResponse_NOT_SERVING] == 0 {
		t.Fatalf("stream did not carry the tool's status changes: %v", seen)
	}
	// A unary call for an unknown service ends with the gRPC status from the tool's trailers.
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("Check(nope) = %v, want NotFound from the tool", err)
	}
}

// TestWebSocketThrough: the upgrade request is authenticated like any other, then messages flow both ways.
func TestWebSocketThrough(t *testing.T) {
	ca := testca.New(t, trustDomain)
	p := startPair(t, ca, pairOptions{egressModes: "[wpt]", ingressReq: "[wpt]", tls: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	proxyURL, _ := url.Parse("http://" + p.egressProxy)
	c, _, err := websocket.Dial(ctx, "ws://"+toolHost+"/ws", &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, msg := range []string{"hello", "tools/call forecast", strings.Repeat("x", 10000)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(got), err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")

	// Without the egress sidecar, the upgrade itself is refused.
	direct, base := p.direct(true)
	req, _ := http.NewRequest(http.MethodGet, base+"/ws", nil)
	req.Host = toolHost
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := direct.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated upgrade got %d %s, want 401", resp.StatusCode, body)
	}
}
