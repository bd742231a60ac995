package proxy

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// TestKeepHost: with KeepHost the upstream sees the Host the agent asked for, not the upstream's address.
func TestKeepHost(t *testing.T) {
	tool := echoTool(t)
	for _, keep := range []bool{false, true} {
		u := mustURL(t, tool.URL)
		h, err := NewEgressHandler(EgressConfig{Routes: mustTable(t,
			&Route{Name: "r", Match: Match{Host: "tool.test"}, Upstream: u, Modes: wire.ModePassthrough, KeepHost: keep})})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		res, err := proxyClient(strings.TrimPrefix(srv.URL, "http://")).Get("http://tool.test/x")
		if err != nil {
			t.Fatal(err)
		}
		s := decodeSeen(t, res)
		srv.Close()
		want := u.Host
		if keep {
			want = "tool.test"
		}
		if s.Host != want {
			t.Errorf("KeepHost=%v: tool saw Host %q, want %q", keep, s.Host, want)
		}
	}
}

// TestBodyError: a refusal can carry its own body (e.g. JSON-RPC) while keeping the status and reason.
func TestBodyError(t *testing.T) {
	st := &reqState{opts: &Options{Logger: Options{}.withDefaults().Logger}}
	rec := httptest.NewRecorder()
	st.w = &respWriter{ResponseWriter: rec}
	body := []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"forbidden"}}`)
	st.refuse(&BodyError{Err: fmt.Errorf("%w: tools/call delete", autherr.ErrDenied), ContentType: "application/json", Body: body})
	if rec.Code != 403 || rec.Body.String() != string(body) || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	if st.rec.Reason != "policy_denied" || st.rec.Allowed {
		t.Fatalf("record %+v", st.rec)
	}
}
