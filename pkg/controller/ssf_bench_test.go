package controller

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/sidecarload"
	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/signals/signalstest"
	"github.com/agentauth/agentauth/pkg/wire"
)

// The SET-to-enforcement benchmark runs the controller in a child process (this test binary, re-executed), as
// pkg/xds's BenchmarkRevocationPropagation does, but it is the whole controller: the SSF receiver (verify, de-dup,
// map), the bbolt store and the xDS server. The sidecars are xdsclient.Clients here, each with its own SVID from the
// controller's CA and its own mTLS connection. Both processes share this machine's cores.
const ssfBenchEnv = "AGENTAUTH_SSF_BENCH_DIR"

const (
	ssfBenchIssuer = "https://idp.example.com"
	// revocations already in force, as in the xDS benchmark: every update is compared against them.
	ssfBenchBaseRevocations = 100
)

// BenchmarkSETToEnforced measures, per sidecar, the time from the moment a signed CAEP session-revoked SET is
// POSTed to the controller's push endpoint to the moment that sidecar's xDS client enforces it (its OnUpdate
// finds the subject revoked in the new state). Reported: p50/p99/max over all sidecars and iterations, and the
// time until the controller answered 202 (after the fsync).
func BenchmarkSETToEnforced(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("sidecars=%d", n), func(b *testing.B) { benchSETToEnforced(b, n) })
	}
}

func benchSETToEnforced(b *testing.B, n int) {
	testproc.RaiseFileLimit(b)
	dir, err := os.MkdirTemp("", "ssfbench") // short: it holds the admin socket
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	key := jose.JSONWebKey{Key: priv, KeyID: "bench", Algorithm: string(jose.ES256), Use: "sig"}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o600); err != nil {
		b.Fatal(err)
	}
	ctl := startSSFBenchController(b, dir)
	ctl.issueSVIDs(n)

	td := spiffeid.RequireTrustDomainFromString("example.org")
	fleet := sidecarload.Start(b, "TestSSFBenchSidecarsProcess", sidecarload.Config{Target: ctl.xds,
		Controller: wire.ControllerID(td), Bundle: filepath.Join(dir, "data", "bundle.pem"),
		SVIDs: filepath.Join(dir, "svids"), N: n})

	endpoint := "http://" + ctl.ssf + "/ssf/events"
	var lat []time.Duration
	var accept time.Duration
	iter := 0
	for b.Loop() {
		sub := fmt.Sprintf("spiffe://example.org/agent/victim-%d", iter)
		set, err := signals.Sign(key, signals.SETClaims{Issuer: ssfBenchIssuer, Audience: []string{ssfAudience},
			JTI: fmt.Sprintf("bench-%d", iter), Subject: signals.SubjectID{Format: signals.FormatURI, URI: sub},
			Events: map[string]map[string]any{signals.EventSessionRevoked: nil}})
		if err != nil {
			b.Fatal(err)
		}
		iter++
		fleet.Expect(sub)
		sent := time.Now()
		code, err := signalstest.Push(context.Background(), endpoint, "", set)
		accept += time.Since(sent)
		if err != nil || code != http.StatusAccepted {
			b.Fatalf("push: HTTP %d %v", code, err)
		}
		for _, at := range fleet.Enforced() {
			lat = append(lat, at.Sub(sent))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	pct := func(p float64) float64 { return ms(lat[min(len(lat)-1, int(p*float64(len(lat))))]) }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(ms(accept)/float64(iter), "202-ms")
	b.ReportMetric(0, "ns/op") // wall time per op mixes in the waits; the percentiles are the result
}

// ssfBenchController drives the child process over its stdin and stdout.
type ssfBenchController struct {
	*testproc.Child
	xds, ssf string
}

func startSSFBenchController(b testing.TB, dir string) *ssfBenchController {
	c := &ssfBenchController{Child: testproc.StartChild(b, "TestSSFBenchControllerProcess", ssfBenchEnv, dir, 2*time.Minute)}
	addrs := c.Read("addr")
	c.xds, c.ssf = addrs[0], addrs[1]
	return c
}

// issueSVIDs has the controller's CA issue n sidecar SVIDs into dir/svids, as sidecarload reads them.
func (c *ssfBenchController) issueSVIDs(n int) {
	c.Send("svids", n)
	c.Read("svids")
}

// TestSSFBenchControllerProcess is the controller side of BenchmarkSETToEnforced; it only runs as the
// benchmark's child process. It reads commands on stdin and answers on stdout; stdin closing stops it.
func TestSSFBenchControllerProcess(t *testing.T) {
	dir := os.Getenv(ssfBenchEnv)
	if dir == "" {
		t.Skip("runs only as the child process of BenchmarkSETToEnforced")
	}
	testproc.RaiseFileLimit(t)
	cfg, err := Parse(fmt.Appendf(nil, `trustDomain: example.org
dataDir: %[1]s/data
issuer: {listen: 127.0.0.1:0}
xds: {listen: 127.0.0.1:0}
admin: {socket: %[1]s/admin.sock}
ops: {listen: 127.0.0.1:0}
ssf:
  listen: 127.0.0.1:0
  transmitters: [{issuer: %[2]s, audience: [%[3]s], jwksFile: %[1]s/jwks.json}]
`, dir, ssfBenchIssuer, ssfAudience))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := New(ctx, cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for i := range ssfBenchBaseRevocations {
		if err := c.state.UpsertRevocation(&agentauthv1.Revocation{Id: fmt.Sprintf("base-%d", i), Reason: "bench",
			Subject: &agentauthv1.Subject{Kind: "spiffe", Value: fmt.Sprintf("spiffe://example.org/old/%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	fmt.Printf("bench: addr %s %s\n", c.xdsLn().Addr(), c.ssfLn().Addr())

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 2 || f[0] != "svids" {
			t.Fatalf("unknown command %q", in.Text())
		}
		n, _ := strconv.Atoi(f[1])
		if err := issueBenchSVIDs(ctx, c, filepath.Join(dir, "svids"), n); err != nil {
			t.Fatal(err)
		}
		fmt.Println("bench: svids")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func issueBenchSVIDs(ctx context.Context, c *Controller, dir string, n int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for i := range n {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		id := spiffeid.RequireFromPath(c.td, fmt.Sprintf("/agent/bench-%d", i))
		chain, err := c.ca.IssueX509SVID(ctx, key.Public(), id, time.Hour)
		if err != nil {
			return err
		}
		if err := sidecarload.WriteSVID(dir, i, &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}); err != nil {
			return err
		}
	}
	return nil
}

// TestSSFBenchSidecarsProcess is a group of sidecars of BenchmarkSETToEnforced; it only runs as one of the
// benchmark's child processes.
func TestSSFBenchSidecarsProcess(t *testing.T) { sidecarload.Serve(t) }
