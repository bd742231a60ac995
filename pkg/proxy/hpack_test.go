package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/net/http2"

	"github.com/agentauth/agentauth/pkg/wire"
)

// TestHTTP2HeaderTableSize: Limits.HTTP2HeaderTableSize is what a TLS listener advertises in its SETTINGS and what
// an upstream transport asks of its server; unset, both keep Go's 4096.
func TestHTTP2HeaderTableSize(t *testing.T) {
	for _, size := range []uint32{0, 65536} {
		want := size
		if want == 0 {
			want = 4096
		}
		lim := Limits{HTTP2HeaderTableSize: size}
		pki := newPKI(t)

		ln := listen(t)
		serve(t, lim, Listener{Name: "ingress", Listener: ln, Handler: http.NotFoundHandler(), TLSConfig: pki.serverTLS(t, toolID)})
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{NextProtos: []string{"h2"}, InsecureSkipVerify: true,
			Certificates: []tls.Certificate{pki.issue(t, agentID)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(conn, conn)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		if got := settingsTableSize(t, fr); got != want {
			t.Errorf("size %d: the listener advertises a header table of %d, want %d", size, got, want)
		}
		conn.Close()

		up := tls.NewListener(listen(t), func() *tls.Config {
			c := pki.serverTLS(t, toolID)
			c.NextProtos = []string{"h2"}
			return c
		}())
		t.Cleanup(func() { up.Close() })
		egress, err := NewEgressHandler(EgressConfig{
			Options: Options{Self: agentID, Sink: &sink{}, Limits: lim, TLSConfig: pki.tlsFunc(t, agentID, nil)},
			Routes: mustTable(t, &Route{Name: "tool", Match: Match{Host: "tool.test"}, Upstream: mustURL(t, "https://"+up.Addr().String()),
				Modes: wire.ModeMTLS, UpstreamID: toolID}),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(egress.Close)
		done := make(chan struct{})
		go func() {
			defer close(done)
			egress.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://tool.test/", nil))
		}()
		c, err := up.Accept()
		if err != nil {
			t.Fatal(err)
		}
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
			t.Fatalf("preface %q, %v", preface, err)
		}
		if got := settingsTableSize(t, http2.NewFramer(c, c)); got != want {
			t.Errorf("size %d: the upstream transport asks for a header table of %d, want %d", size, got, want)
		}
		c.Close() // the request fails; only its SETTINGS mattered
		<-done
	}
}

// settingsTableSize reads frames up to the peer's first SETTINGS and returns its header table size (4096, the
// protocol's initial value, when it does not say).
func settingsTableSize(t *testing.T, fr *http2.Framer) uint32 {
	t.Helper()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if v, ok := sf.Value(http2.SettingHeaderTableSize); ok {
				return v
			}
			return 4096
		}
	}
}
