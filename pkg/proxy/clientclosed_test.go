package proxy

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// TestClientClosedIsNoUpstreamFailure: a client that goes away while the upstream is still working is recorded
// as client_closed (499, result client_closed), not as upstream_unavailable, and the proxy logs nothing of it at
// info or above (the decision record is the one log line, at debug).
func TestClientClosedIsNoUpstreamFailure(t *testing.T) {
	arrived := make(chan struct{})
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // answers only when the sidecar gives up on it
	}))
	t.Cleanup(tool.Close)
	var logs bytes.Buffer
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs),
		zap.InfoLevel))
	s, m := &sink{}, &metrics{}
	addr, d := startEgress(t, EgressConfig{
		Options: Options{Self: agentID, Sink: s, Metrics: m, Logger: logger},
		Routes:  mustTable(t, &Route{Name: "slow", Match: Match{Host: "slow.test"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModePassthrough}),
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://slow.test/wait", nil)
	errc := make(chan error, 1)
	go func() {
		res, err := proxyClient(addr).Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the cancelled request got a response")
	}
	d.wait(t)
	recs := s.all()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	r := recs[0]
	if r.Reason != autherr.ErrClientClosed.Code() || r.Status != autherr.StatusClientClosed || !r.Allowed {
		t.Fatalf("record reason %q status %d allowed %v, want client_closed 499 allowed (it was forwarded)", r.Reason, r.Status, r.Allowed)
	}
	m.mu.Lock()
	obs := m.obs
	m.mu.Unlock()
	if want := "egress|slow|client_closed|client_closed"; len(obs) != 1 || obs[0] != want {
		t.Fatalf("metrics %v, want [%s]", obs, want)
	}
	if logs.Len() != 0 {
		t.Fatalf("the proxy logged at info or above: %s", logs.String())
	}
}
