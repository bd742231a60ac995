package proxy

import (
	"net/http"
	"path"
	"testing"

	"github.com/agentauth/agentauth/internal/urlpath"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Host and path come straight from untrusted requests.
func FuzzLookup(f *testing.F) {
	for _, s := range [][2]string{
		{"tool.example", "/api/x"}, {"TOOL.example.:8080", "/"}, {"[::1]:443", "/a"}, {"::1", ""}, {"[", "/"},
		{"a:0", "/"}, {"a:65536", "/"}, {"[::1]x", "/"}, {"a b", "/"}, {"%", "*"}, {"a:", "/"},
	} {
		f.Add(s[0], s[1])
	}
	tab, err := NewRouteTable(
		&Route{Name: "a", Match: Match{Host: "tool.example"}, Modes: wire.ModePassthrough},
		&Route{Name: "b", Match: Match{Host: "tool.example:8080", PathPrefix: "/api"}, Modes: wire.ModePassthrough},
		&Route{Name: "c", Match: Match{Host: "[::1]", PathPrefix: "/a/"}, Modes: wire.ModePassthrough},
	)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host, p string) {
		if rt, ok := tab.Lookup(host, p); ok && !hasPathPrefix(p, rt.Match.PathPrefix) {
			t.Fatalf("Lookup(%q, %q) = %q whose prefix %q does not match", host, p, rt.Name, rt.Match.PathPrefix)
		}
		h, port, err := splitHost(host)
		if err != nil {
			return
		}
		h2, port2, err := splitHost(hostKey(h, port))
		if err != nil || h2 != h || port2 != port {
			t.Fatalf("splitHost(%q) = %q %q, but its key %q splits to %q %q (%v)", host, h, port, hostKey(h, port), h2, port2, err)
		}
	})
}

func FuzzCheckPath(f *testing.F) {
	for _, p := range []string{"/", "/a/b/", "/a/../b", "//", "/a/./", `/a\b`, "*", "", "/..", "/a/..b", "/a/..;/b", "/a;x/b"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkPath(p) != nil || p == "*" {
			return
		}
		// Judged as a servlet container reads it too: each segment without its ";params".
		for _, q := range []string{p, urlpath.WithoutParams(p)} {
			if c := path.Clean(q); c != q && c+"/" != q {
				t.Fatalf("checkPath accepted %q, which cleans to %q", p, c)
			}
		}
	})
}

func FuzzStripHeaders(f *testing.F) {
	for _, n := range []string{"X-Agentauth-Workload-Id", "x_agentauth_auth_method", "X-FORWARDED-CLIENT-CERT", "Signature", "Host"} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, name string) {
		h := http.Header{name: {"v"}, http.CanonicalHeaderKey(name): {"v"}}
		stripHeaders(h, identityHeaders)
		stripHeaders(h, proofHeaders)
		for k := range h {
			for _, n := range append(identityHeaders[:len(identityHeaders):len(identityHeaders)], proofHeaders...) {
				if headerIs(k, n) {
					t.Fatalf("%q survived stripping", k)
				}
			}
		}
	})
}

// The kernel is trusted, but the decoders must still not panic on any length.
func FuzzDecodeSockaddr(f *testing.F) {
	f.Add([]byte{2, 0, 0x1f, 0x90, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(make([]byte, 28))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ap, err := decodeSockaddrInet4(b); err == nil {
			if got := sockaddr4(afInet, ap); string(got[2:8]) != string(b[2:8]) {
				t.Fatalf("inet4 %x decoded to %v, which encodes to %x", b, ap, got)
			}
		}
		_, _ = decodeSockaddrInet6(b)
	})
}
