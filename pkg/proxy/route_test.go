package proxy

import (
	"crypto/tls"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

func TestRouteTableLookup(t *testing.T) {
	up := mustURL(t, "http://127.0.0.1:9")
	tab := mustTable(t,
		&Route{Name: "host", Match: Match{Host: "tool.example"}, Upstream: up, Modes: wire.ModeWPT},
		&Route{Name: "hostport", Match: Match{Host: "Tool.Example:8080"}, Upstream: up, Modes: wire.ModeWPT},
		&Route{Name: "api", Match: Match{Host: "tool.example", PathPrefix: "/api"}, Upstream: up, Modes: wire.ModeWPT},
		&Route{Name: "api-v2", Match: Match{Host: "tool.example", PathPrefix: "/api/v2/"}, Upstream: up, Modes: wire.ModeWPT},
		&Route{Name: "v6", Match: Match{Host: "[::1]:443"}, Upstream: up, Modes: wire.ModeWPT},
		&Route{Name: "v6any", Match: Match{Host: "::2"}, Upstream: up, Modes: wire.ModePassthrough},
		&Route{Name: "default", Match: Match{Host: AnyHost}, Modes: wire.ModePassthrough},
	)
	tests := []struct {
		host, path, want string
	}{
		{"tool.example", "/", "host"},
		{"TOOL.example.", "/x", "host"},
		{"tool.example:9999", "/x", "host"},
		{"tool.example:8080", "/x", "hostport"},
		{"tool.example:8080", "/api", "hostport"}, // host:port beats host, whatever the path
		{"tool.example", "/api", "api"},
		{"tool.example", "/api/x", "api"},
		{"tool.example", "/apix", "host"},
		{"tool.example", "/api/v2/x", "api-v2"},
		{"tool.example", "/api/v2", "api"}, // "/api/v2/" needs the slash
		{"[::1]:443", "/", "v6"},
		{"[::2]:80", "/", "v6any"},
		{"::2", "/", "v6any"},
		{"other.example", "/", "default"},
		{"", "/", "default"},
		{"bad host", "/", "default"},
	}
	for _, tt := range tests {
		rt, ok := tab.Lookup(tt.host, tt.path)
		if !ok || rt.Name != tt.want {
			t.Errorf("Lookup(%q, %q) = %v, %v; want %q", tt.host, tt.path, rt, ok, tt.want)
		}
	}
	noDefault := mustTable(t, &Route{Name: "a", Match: Match{Host: "a.example"}, Modes: wire.ModePassthrough})
	if rt, ok := noDefault.Lookup("b.example", "/"); ok {
		t.Errorf("Lookup without catch-all = %v", rt.Name)
	}
	var nilTable *RouteTable
	if _, ok := nilTable.Lookup("a", "/"); ok {
		t.Error("nil table matched")
	}
}

func TestRouteTableCopiesInput(t *testing.T) {
	r := &Route{Name: "a", Match: Match{Host: "a.example"}, Upstream: mustURL(t, "http://127.0.0.1:1"), Modes: wire.ModeWPT}
	tab := mustTable(t, r)
	r.Name, r.Upstream.Host = "changed", "evil:1"
	got, _ := tab.Lookup("a.example", "/")
	if got.Name != "a" || got.Upstream.Host != "127.0.0.1:1" {
		t.Fatalf("table shares caller's route: %+v %v", got, got.Upstream)
	}
}

func TestRouteValidation(t *testing.T) {
	up := mustURL(t, "https://127.0.0.1:9")
	tests := []struct {
		name  string
		route Route
		want  string
	}{
		{"no name", Route{Match: Match{Host: "a"}, Modes: wire.ModeWPT}, "without a name"},
		{"no host", Route{Name: "r", Modes: wire.ModeWPT}, "match.host is empty"},
		{"bad host", Route{Name: "r", Match: Match{Host: "a b"}, Modes: wire.ModeWPT}, "match.host"},
		{"bad port", Route{Name: "r", Match: Match{Host: "a:99999"}, Modes: wire.ModeWPT}, "bad port"},
		{"bad prefix", Route{Name: "r", Match: Match{Host: "a", PathPrefix: "api"}, Modes: wire.ModeWPT}, "path_prefix"},
		{"dotdot prefix", Route{Name: "r", Match: Match{Host: "a", PathPrefix: "/a/../b"}, Modes: wire.ModeWPT}, "not canonical"},
		{"no modes", Route{Name: "r", Match: Match{Host: "a"}}, "no modes"},
		{"passthrough mixed", Route{Name: "r", Match: Match{Host: "a"}, Modes: wire.ModePassthrough | wire.ModeWPT}, "cannot be combined"},
		{"ftp", Route{Name: "r", Match: Match{Host: "a"}, Upstream: mustURL(t, "ftp://x"), Modes: wire.ModeWPT}, "not http"},
		{"query", Route{Name: "r", Match: Match{Host: "a"}, Upstream: mustURL(t, "http://x/?a=b"), Modes: wire.ModeWPT}, "scheme://host"},
		{"h2c tls", Route{Name: "r", Match: Match{Host: "a"}, Upstream: up, H2C: true, Modes: wire.ModeWPT}, "h2c needs"},
		{"h2c dynamic", Route{Name: "r", Match: Match{Host: "a"}, H2C: true, Modes: wire.ModeWPT}, "explicit upstream"},
		{"lifetime", Route{Name: "r", Match: Match{Host: "a"}, Modes: wire.ModeWPT, ProofLifetime: -1}, "negative"},
		{"external URL with path", Route{Name: "r", Match: Match{Host: "a"}, Modes: wire.ModeWPT, ExternalURL: mustURL(t, "https://a/x")}, "external URL"},
		{"signed responses without httpsig", Route{Name: "r", Match: Match{Host: "a"}, Modes: wire.ModeWPT, SignedResponses: true}, "need mode httpsig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRouteTable(&tt.route)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	dup := &Route{Name: "r", Match: Match{Host: "a"}, Modes: wire.ModeWPT}
	if _, err := NewRouteTable(dup, dup); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate name: %v", err)
	}
	other := &Route{Name: "s", Match: Match{Host: "A."}, Modes: wire.ModeWPT}
	if _, err := NewRouteTable(dup, other); err == nil || !strings.Contains(err.Error(), "same match") {
		t.Errorf("duplicate match: %v", err)
	}
}

func TestAudiences(t *testing.T) {
	rt := &Route{Name: "r", Match: Match{Host: "tool.example"}}
	out := httptest.NewRequest("GET", "https://Tool.Example:443/a/b%2Fc?q=1#f", nil)
	out.Host = ""
	if got, want := rt.TargetAudience(out), "https://tool.example/a/b%2Fc"; got != want {
		t.Errorf("TargetAudience = %q, want %q", got, want)
	}
	out = httptest.NewRequest("GET", "http://127.0.0.1:8080", nil)
	if got, want := rt.TargetAudience(out), "http://127.0.0.1:8080/"; got != want {
		t.Errorf("TargetAudience = %q, want %q", got, want)
	}

	in := httptest.NewRequest("GET", "/x?y", nil)
	in.Host = "tool.example:8443"
	in.TLS = &tls.ConnectionState{}
	if got, want := rt.ExpectedAudience(in), "https://tool.example:8443/x"; got != want {
		t.Errorf("ExpectedAudience = %q, want %q", got, want)
	}
	in.Host = "evil.example:8443" // not this route's host: the request's port is not taken either
	if got, want := rt.ExpectedAudience(in), "https://tool.example/x"; got != want {
		t.Errorf("ExpectedAudience = %q, want %q", got, want)
	}
	if got := (&Route{Match: Match{Host: AnyHost}}).ExpectedAudience(in); got != "" {
		t.Errorf("catch-all ExpectedAudience = %q", got)
	}
	// Behind a TLS terminator: the listener is plain HTTP, the audience is the external URL's.
	ext := &Route{Match: Match{Host: "tool.example"}, ExternalURL: mustURL(t, "https://Tool.Example:443")}
	in.TLS = nil
	if got, want := ext.ExpectedAudience(in), "https://tool.example/x"; got != want {
		t.Errorf("ExternalURL ExpectedAudience = %q, want %q", got, want)
	}
	fixed := &Route{Audience: "spiffe://test.example/tool"}
	if fixed.TargetAudience(out) != fixed.Audience || fixed.ExpectedAudience(in) != fixed.Audience {
		t.Error("explicit Audience not used verbatim")
	}
}

func TestCheckPath(t *testing.T) {
	ok := []string{"/", "/a", "/a/", "/a/b.c", "/a/..b", "/a/.well-known", "*", "/a;v=1/b", "/orders/x;jsessionid=1"}
	// A servlet container drops ";params" before resolving a segment: "/orders/..;/admin" is "/admin" to it.
	bad := []string{"", "a", "//", "/a//b", "/a/./b", "/a/../b", "/..", "/.", "/a/..", `/a\b`,
		"/orders/..;/admin", "/a/.;x/b", "/..;", "/a/;x/b"}
	for _, p := range ok {
		if err := checkPath(p); err != nil {
			t.Errorf("checkPath(%q) = %v", p, err)
		}
	}
	for _, p := range bad {
		if err := checkPath(p); !errors.Is(err, autherr.ErrMalformed) {
			t.Errorf("checkPath(%q) = %v, want malformed", p, err)
		}
	}
}

// A route's Upstream path is prefixed to the request path.
func TestUpstreamPathJoin(t *testing.T) {
	tool := echoTool(t)
	u := mustURL(t, tool.URL+"/base")
	h, err := NewEgressHandler(EgressConfig{Routes: mustTable(t,
		&Route{Name: "r", Match: Match{Host: "tool.test"}, Upstream: u, Modes: wire.ModePassthrough})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := proxyClient(strings.TrimPrefix(srv.URL, "http://")).Get("http://tool.test/x?q=1")
	if err != nil {
		t.Fatal(err)
	}
	s := decodeSeen(t, res)
	if s.Path != "/base/x" || s.Query != "q=1" || s.Host != u.Host {
		t.Fatalf("tool saw %+v", s)
	}
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{
		"Tool.Example": "tool.example", "tool.example.:8443": "tool.example", "[::1]:443": "::1", "::1": "::1",
		"a b": "", "": "", "tool.example:0": "",
	} {
		if got := HostName(in); got != want {
			t.Errorf("HostName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestChallenge(t *testing.T) {
	tests := []struct {
		rt   *Route
		want string
	}{
		{nil, "WIMSE-mTLS, WIMSE-WPT, WIMSE-HTTPSig"},
		{&Route{Name: "weather", Modes: wire.ModeMTLS | wire.ModeWPT}, `WIMSE-mTLS realm="weather", WIMSE-WPT realm="weather"`},
		{&Route{Name: `we"ird`, Modes: wire.ModeHTTPSig}, `WIMSE-HTTPSig realm="we\"ird"`},
		{&Route{Name: "p", Modes: wire.ModePassthrough}, `WIMSE-mTLS realm="p", WIMSE-WPT realm="p", WIMSE-HTTPSig realm="p"`},
	}
	for _, tt := range tests {
		if got := challenge(tt.rt); got != tt.want {
			t.Errorf("challenge(%+v) = %q, want %q", tt.rt, got, tt.want)
		}
	}
}
