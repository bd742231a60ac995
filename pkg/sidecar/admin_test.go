package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAdminEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "agentauth_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()

	a := NewAdmin(reg)
	a.AddCheck("credentials", func(context.Context) (string, error) { return "", errors.New("no X.509-SVID yet") })
	a.AddCheck("controller", func(context.Context) (string, error) { return "fail-static: last contact 3s ago", nil })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	base := "http://" + ln.Addr().String()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	code, body := get("/readyz")
	var rep readyReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || rep.Ready || !strings.Contains(rep.Checks["credentials"], "no X.509-SVID") ||
		rep.Checks["controller"] != "fail-static: last contact 3s ago" {
		t.Fatalf("/readyz not ready = %d %+v", code, rep)
	}
	a.AddCheck("credentials", func(context.Context) (string, error) { return "", nil })
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("/readyz ready = %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "agentauth_test_total 1") {
		t.Fatalf("/metrics = %d %s", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Fatalf("/nope = %d", code)
	}
}

func TestAdminPprofOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []AdminOption
		want int
	}{
		{"default", nil, http.StatusNotFound},
		{"pprof", []AdminOption{WithPprof()}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAdmin(prometheus.NewRegistry(), tc.opts...)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go a.Serve(ln)
			t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
			resp, err := http.Get("http://" + ln.Addr().String() + "/debug/pprof/heap?debug=1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("/debug/pprof/heap = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestAdminListenerConnectionFlood: the admin listener closes one client's connections past
// admin.limits.maxConnectionsPerIP at once, and still serves another client.
func TestAdminListenerConnectionFlood(t *testing.T) {
	cfg, err := Parse([]byte(`identity: {files: {cert: c, key: k, bundles: {example.org: [b]}}}
ingress: {listen: 127.0.0.1:0, backend: http://127.0.0.1:1, require: [mtls], mtls: {trustDomains: [example.org]}}
admin: {listen: 127.0.0.1:0, limits: {maxConnections: 10, maxConnectionsPerIP: 2}}
`))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAdmin(prometheus.NewRegistry())
	a.SetLimits(cfg.Admin.Limits)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Serve(ln) }()
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	dial := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial("127.0.0.3")
	dial("127.0.0.3")
	third := dial("127.0.0.3")
	_ = third.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a third idle connection from one client: %v, want it closed by the server", err)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("another client during the flood: %v", err)
	}
	resp.Body.Close()
}
