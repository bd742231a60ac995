package xds_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/sidecarload"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/xds/xdstest"
)

// The propagation benchmark runs the controller in a child process (this test binary, re-executed), so its
// memory per connected sidecar is measured apart from the sidecars', which run in other child processes
// (internal/sidecarload), each sidecar with its own mTLS connection. All share this machine's cores, as a
// controller and its sidecars would not.
const benchControllerEnv = "AGENTAUTH_XDS_BENCH_CONTROLLER_DIR"

var (
	td           = spiffeid.RequireTrustDomainFromString("example.org")
	controllerID = wire.ControllerID(td)
)

// preloaded revocations: every wildcard watch compares against all of them on each update, so an empty cache
// would flatter the figures.
const benchBaseRevocations = 100

// BenchmarkRevocationPropagation measures, per sidecar, the time from a revocation being accepted by the
// controller (UpsertRevocation called; it returns after the fsync) to the sidecar enforcing it (its state,
// just updated, refuses the subject). Reported: p50/p99/max over all sidecars and iterations, the commit time,
// the controller's heap+stack per connected sidecar, and CPU per revocation.
func BenchmarkRevocationPropagation(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("sidecars=%d", n), func(b *testing.B) { benchPropagation(b, n) })
	}
}

func benchPropagation(b *testing.B, n int) {
	testproc.RaiseFileLimit(b)
	ca := testca.New(b, td)
	dir := b.TempDir()
	ca.WriteSVIDFiles(dir, ca.CreateX509SVID(controllerID))
	bundle := ca.WriteBundleFile(dir)
	svids := filepath.Join(dir, "svids")
	if err := os.Mkdir(svids, 0o700); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := sidecarload.WriteSVID(svids, i, ca.CreateX509SVID(spiffeid.RequireFromPathf(td, "/agent/bench-%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	ctl := startBenchController(b, dir)

	memBefore := ctl.mem()
	fleet := sidecarload.Start(b, "TestBenchSidecarsProcess", sidecarload.Config{Target: ctl.addr,
		Controller: controllerID, Bundle: bundle, SVIDs: svids, N: n})
	memAfter := ctl.mem()

	lat := make([]time.Duration, 0, n*b.N)
	var commit time.Duration
	iter := 0
	ctlCPU0, cliCPU0 := ctl.cpu(), fleet.CPU()
	wall0 := time.Now()
	for b.Loop() {
		id := fmt.Sprintf("bench-%d", iter)
		iter++
		fleet.Expect(victim(id))
		accepted, committed := ctl.revoke(id)
		commit += committed.Sub(accepted)
		for _, at := range fleet.Enforced() {
			lat = append(lat, at.Sub(accepted))
		}
	}
	b.StopTimer()
	wall := time.Since(wall0)
	ctlCPU, cliCPU := ctl.cpu()-ctlCPU0, fleet.CPU()-cliCPU0
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(commit.Microseconds())/1000/float64(iter), "commit-ms")
	b.ReportMetric(float64(memAfter-memBefore)/float64(n), "ctl-B/sidecar")
	// CPU spent per revocation, whatever else runs on the machine: the controller's, and all sidecars' together.
	b.ReportMetric(float64(ctlCPU.Microseconds())/1000/float64(iter), "ctl-cpu-ms/op")
	b.ReportMetric(float64(cliCPU.Microseconds())/1000/float64(iter), "sidecars-cpu-ms/op")
	// Wall time per revocation until the last sidecar applied it (the waits included): set beside the two CPU
	// figures, it shows whether the run was CPU-bound (their sum near twice this on 2 cores) or waiting.
	b.ReportMetric(float64(wall.Microseconds())/1000/float64(iter), "wall-ms/op")
	b.ReportMetric(0, "ns/op") // wall time per op mixes in the waits; the percentiles are the result
}

func revocation(id, subject string) *agentauthv1.Revocation {
	return &agentauthv1.Revocation{Id: id, Subject: &agentauthv1.Subject{Kind: "spiffe", Value: subject},
		Reason: "credential compromised"}
}

// victim is the SPIFFE ID the benchmark's revocation id revokes.
func victim(id string) string { return "spiffe://example.org/agent/victim-" + id }

// TestBenchSidecarsProcess is a group of sidecars of BenchmarkRevocationPropagation; it only runs as one of the
// benchmark's child processes.
func TestBenchSidecarsProcess(t *testing.T) { sidecarload.Serve(t) }

// benchController drives the child process.
type benchController struct {
	*testproc.Child
	addr string
}

func startBenchController(b testing.TB, dir string) *benchController {
	c := &benchController{Child: testproc.StartChild(b, "TestBenchControllerProcess", benchControllerEnv, dir, 60*time.Second)}
	c.addr = c.Read("addr")[0]
	return c
}

func (c *benchController) mem() uint64 {
	c.Send("mem")
	v, _ := strconv.ParseUint(c.Read("mem")[0], 10, 64)
	return v
}

func (c *benchController) cpu() time.Duration {
	c.Send("cpu")
	v, _ := strconv.ParseInt(c.Read("cpu")[0], 10, 64)
	return time.Duration(v)
}

func (c *benchController) revoke(id string) (accepted, committed time.Time) {
	c.Send("revoke", id)
	f := c.Read("accepted")
	a, _ := strconv.ParseInt(f[0], 10, 64)
	m, _ := strconv.ParseInt(f[1], 10, 64)
	return time.Unix(0, a), time.Unix(0, m)
}

// TestBenchControllerProcess is the controller side of BenchmarkRevocationPropagation; it only runs as the
// benchmark's child process. It reads commands on stdin and answers on stdout.
func TestBenchControllerProcess(t *testing.T) {
	dir := os.Getenv(benchControllerEnv)
	if dir == "" {
		t.Skip("runs only as the child process of BenchmarkRevocationPropagation")
	}
	testproc.RaiseFileLimit(t)
	svid, err := x509svid.Load(filepath.Join(dir, testca.SVIDCertFile), filepath.Join(dir, testca.SVIDKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := x509bundle.Load(td, filepath.Join(dir, testca.BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, addr := xdstest.Start(t, svid, bundle)
	if err := pub.SetPolicies([]*agentauthv1.Policy{{Id: "p1", Cedar: "permit (principal, action, resource);", Source: "p1.cedar"}}); err != nil {
		t.Fatal(err)
	}
	for i := range benchBaseRevocations {
		if err := pub.UpsertRevocation(revocation(fmt.Sprintf("base-%d", i), fmt.Sprintf("spiffe://example.org/old/%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("bench: addr %s\n", addr)

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 1 && f[0] == "mem":
			// Twice: sync.Pool buffers (gRPC keeps marshal buffers there) survive one collection.
			runtime.GC()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("bench: mem %d\n", ms.HeapInuse+ms.StackInuse)

		case len(f) == 1 && f[0] == "cpu":
			fmt.Printf("bench: cpu %d\n", testproc.CPUTime(t))
		case len(f) == 2 && f[0] == "revoke":
			r := revocation(f[1], victim(f[1]))
			accepted := time.Now()
			if err := pub.UpsertRevocation(r); err != nil {
				t.Fatal(err)
			}
			fmt.Printf("bench: accepted %d %d\n", accepted.UnixNano(), time.Now().UnixNano())
		default:
			t.Fatalf("unknown command %q", in.Text())
		}
	}
}
