package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// auditLog is an Auditor that remembers each record with how many requests the tool had seen when it was audited,
// and fails once failing is set.
type auditLog struct {
	mu      sync.Mutex
	recs    []DecisionRecord
	seenAt  []int64
	toolHit *atomic.Int64
	failing atomic.Bool
}

func (a *auditLog) Audit(_ context.Context, d *DecisionRecord) error {
	if a.failing.Load() {
		return errBoom
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, *d)
	a.seenAt = append(a.seenAt, a.toolHit.Load())
	return nil
}

func (a *auditLog) all() ([]DecisionRecord, []int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]DecisionRecord(nil), a.recs...), append([]int64(nil), a.seenAt...)
}

// countingTool answers 200 and counts the requests that reached it, remembering the last traceparent.
func countingTool(t *testing.T) (*httptest.Server, *atomic.Int64, *atomic.Value) {
	var hits atomic.Int64
	var tp atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		tp.Store(r.Header.Get(HeaderTraceparent))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits, &tp
}

func TestEgressAuditsBeforeForwarding(t *testing.T) {
	tool, hits, tp := countingTool(t)
	a := &auditLog{toolHit: hits}
	addr, d := startEgress(t, EgressConfig{
		Options: Options{Self: agentID, Sink: &sink{}, Auditor: a},
		Routes: mustTable(t,
			&Route{Name: "signed", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, tool.URL), Modes: wire.ModeWPT}),
		Steps: signChain(map[wire.Mode]ProofSigner{wire.ModeWPT: &fakeSigner{subject: agentID}}),
	})
	c := proxyClient(addr)

	// Allowed, with the agent's own traceparent, which is forwarded unchanged.
	const agentTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req, _ := http.NewRequest("GET", "http://tool.test/a", nil)
	req.Header.Set(HeaderTraceparent, agentTP)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	d.wait(t)
	if got := tp.Load(); got != agentTP {
		t.Errorf("tool saw traceparent %q, want the agent's %q", got, agentTP)
	}
	// Allowed, without one (and with a malformed one): the egress starts a trace.
	for _, sent := range []string{"", "00-zz-bad"} {
		req, _ = http.NewRequest("GET", "http://tool.test/b", nil)
		if sent != "" {
			req.Header.Set(HeaderTraceparent, sent)
		}
		res, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		d.wait(t)
		if got, _ := tp.Load().(string); !validTraceparent(got) || got == agentTP {
			t.Errorf("sent %q: tool saw traceparent %q, want a new valid one", sent, got)
		}
	}
	// Refused: no route.
	res, err = c.Get("http://nowhere.test/")
	if err != nil {
		t.Fatal(err)
	}
	checkRefusal(t, res, http.StatusForbidden, "policy_denied")
	d.wait(t)

	recs, seenAt := a.all()
	if len(recs) != 4 {
		t.Fatalf("%d audit records, want 4: %+v", len(recs), recs)
	}
	for i, r := range recs[:3] {
		if !r.Allowed || r.Route != "signed" || r.Status != 0 || !validTraceparent(r.Traceparent) {
			t.Errorf("record %d: %+v", i, r)
		}
		// Audited before the tool saw the request: the tool had seen i requests, not i+1.
		if seenAt[i] != int64(i) {
			t.Errorf("record %d audited after the tool had seen %d requests, want %d", i, seenAt[i], i)
		}
	}
	if recs[0].Traceparent != agentTP {
		t.Errorf("record 0 traceparent %q, want %q", recs[0].Traceparent, agentTP)
	}
	if r := recs[3]; r.Allowed || r.Reason != "policy_denied" {
		t.Errorf("refusal record %+v", r)
	}

	// The log fails: nothing more reaches the tool, and the agent gets 503 audit_unavailable.
	a.failing.Store(true)
	before := hits.Load()
	res, err = c.Get("http://tool.test/c")
	if err != nil {
		t.Fatal(err)
	}
	checkRefusal(t, res, http.StatusServiceUnavailable, autherr.ErrAuditUnavailable.Code())
	d.wait(t)
	if hits.Load() != before {
		t.Error("an unaudited request reached the tool")
	}
	// A refusal stands as it is.
	res, err = c.Get("http://nowhere.test/")
	if err != nil {
		t.Fatal(err)
	}
	checkRefusal(t, res, http.StatusForbidden, "policy_denied")
	d.wait(t)
}

func TestIngressAuditsBeforeForwarding(t *testing.T) {
	tool, hits, _ := countingTool(t)
	a := &auditLog{toolHit: hits}
	authz := authzFunc(func(_ context.Context, req *AuthzRequest) (*Decision, error) {
		d := &Decision{Allowed: !strings.HasPrefix(req.Path, "/deny"), PolicyIDs: []string{"p1"},
			MCPMethod: "tools/call", MCPName: "weather", Risk: "LOW"}
		return d, nil
	})
	f := startIngress(t, IngressConfig{
		Options: Options{Auditor: a},
		Routes: mustTable(t, &Route{Name: "in", Match: Match{Host: AnyHost}, Upstream: mustURL(t, tool.URL),
			Modes: wire.ModeWPT, Audience: "http://tool.test"}),
		Steps: testChain(map[wire.Mode]Authenticator{wire.ModeWPT: fakeAuthn{}}, nil, authz),
	})
	c := f.client(nil)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	do := func(path string) *http.Response {
		req, _ := http.NewRequest("POST", "http://"+f.plain+path, strings.NewReader("{}"))
		req.Header.Set(wire.HeaderWIT, "wit-of:"+agentID)
		req.Header.Set(wire.HeaderWPT, "aud=http://tool.test")
		req.Header.Set("X-Test-Txn", "txn-1")
		req.Header.Set(HeaderTraceparent, tp)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := do("/ok")
	res.Body.Close()
	f.done.wait(t)
	checkRefusal(t, do("/deny"), http.StatusForbidden, "policy_denied")
	f.done.wait(t)

	recs, seenAt := a.all()
	if len(recs) != 2 {
		t.Fatalf("%d audit records, want 2: %+v", len(recs), recs)
	}
	for i, r := range recs {
		if r.Subject != agentID || r.TransactionID != "txn-1" || r.Traceparent != tp || r.MCPName != "weather" ||
			r.MCPMethod != "tools/call" || r.Risk != "LOW" || len(r.PolicyIDs) != 1 || r.Allowed != (i == 0) {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if seenAt[0] != 0 {
		t.Errorf("allowed request audited after the tool saw it")
	}

	a.failing.Store(true)
	before := hits.Load()
	checkRefusal(t, do("/ok"), http.StatusServiceUnavailable, autherr.ErrAuditUnavailable.Code())
	f.done.wait(t)
	if hits.Load() != before {
		t.Error("an unaudited request reached the tool")
	}
}
