// Command sampletool is the demo's tool: an ordinary HTTP service that knows nothing of agentauth. It reports the
// identity headers its sidecar set, streams Server-Sent Events, echoes bodies and WebSocket messages, answers MCP
// JSON-RPC calls, and (with -grpc) serves the gRPC health service over h2c for streaming tests.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8080", "HTTP listen address (keep it on loopback: only the sidecar may reach it)")
	grpcAddr := flag.String("grpc", "", "if set, also serve the gRPC health service (h2c) here")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	srv := &http.Server{Addr: *addr, Handler: newMux(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if *grpcAddr != "" {
		ln, err := net.Listen("tcp", *grpcAddr)
		if err != nil {
			log.Fatal(err)
		}
		gs := grpc.NewServer()
		hs := health.NewServer()
		healthpb.RegisterHealthServer(gs, hs)
		go flipHealth(ctx, hs)
		go func() { _ = gs.Serve(ln) }()
		defer gs.GracefulStop()
	}
	log.Printf("sampletool listening on %s", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// flipHealth changes the "stream" service's status every 50ms so a Watch stream carries a steady flow of messages.
func flipHealth(ctx context.Context, hs *health.Server) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	serving := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if serving {
				st = healthpb.HealthCheckResponse_SERVING
			}
			hs.SetServingStatus("stream", st)
			serving = !serving
		}
	}
}

func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", whoami)
	mux.HandleFunc("POST /echo", echo)
	mux.HandleFunc("GET /sse", sse)
	mux.HandleFunc("GET /ws", ws)
	mux.HandleFunc("POST /mcp", mcp)
	return mux
}

// whoami reports what the tool was told about its caller: every X-Agentauth-* header and the XFCC header (and
// the proofs, tokens and W3C traceparent that reached it).
func whoami(w http.ResponseWriter, r *http.Request) {
	seen := map[string][]string{}
	for k, v := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-agentauth-") || lk == "x-forwarded-client-cert" || lk == "txn-token" ||
			lk == "workload-identity-token" || lk == "workload-proof-token" || lk == "signature" || lk == "traceparent" {
			seen[lk] = v
		}
	}
	out := map[string]any{"method": r.Method, "path": r.URL.Path, "headers": seen}
	// A legacy API reads its bearer token; the sample shows the token's (unverified) header and claims.
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		out["bearer"] = jwtParts(tok)
	}
	writeJSON(w, out)
}

// jwtParts decodes a compact JWT's header and claims without verifying them: display only.
func jwtParts(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return map[string]any{"opaque": true}
	}
	out := map[string]any{}
	for i, name := range []string{"header", "claims"} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		var v map[string]any
		if err == nil && json.Unmarshal(b, &v) == nil {
			out[name] = v
		}
	}
	return out
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(b)
}

// sse sends n events, interval apart, flushing each: a proxy that buffers shows up as all events arriving at once.
func sse(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	if n <= 0 || n > 1000 {
		n = 3
	}
	interval, err := time.ParseDuration(r.URL.Query().Get("interval"))
	if err != nil || interval <= 0 || interval > 10*time.Second {
		interval = 100 * time.Millisecond
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "id: %d\nevent: tick\ndata: {\"seq\":%d,\"at\":%q}\n\n", i, i, time.Now().Format(time.RFC3339Nano))
		fl.Flush()
		if i < n {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(interval):
			}
		}
	}
}

func ws(w http.ResponseWriter, r *http.Request) {
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
		if err := c.Write(r.Context(), typ, msg); err != nil {
			return
		}
	}
}

type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// mcp answers MCP JSON-RPC requests (single or batch) with a result that echoes the method and tool name.
func mcp(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var batch []rpcRequest
	single := false
	if err := json.Unmarshal(body, &batch); err != nil {
		var one rpcRequest
		if err := json.Unmarshal(body, &one); err != nil {
			writeJSON(w, map[string]any{"jsonrpc": "2.0", "id": nil, "error": map[string]any{"code": -32700, "message": "parse error"}})
			return
		}
		batch, single = []rpcRequest{one}, true
	}
	out := make([]map[string]any, 0, len(batch))
	for _, req := range batch {
		var p struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(req.Params, &p)
		out = append(out, map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": map[string]any{
			"content": []map[string]any{{"type": "text", "text": fmt.Sprintf("%s %s by %s", req.Method, p.Name,
				r.Header.Get("X-Agentauth-Workload-Id"))}},
		}})
	}
	if single {
		writeJSON(w, out[0])
		return
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
