package proxy

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestKeepHost: with KeepHost the upstream sees the Host the agent asked for, not the upstream's address.
func TestKeepHost(t *testing.T) {
	tool := echoTool(t)
	for _, keep := range []bool{false, true} {
		u := mustURL(t, tool.URL)
		h, err := NewEgressHandler(EgressConfig{Routes: mustTable(t,
			&Route{Name: "r", Match: Match{Host: "tool.test"}, Upstream: u, Modes: ModePassthrough, KeepHost: keep})})
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
