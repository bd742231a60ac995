package xds

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/store"
)

// The propagation benchmark runs the controller in a child process (this test binary, re-executed), so its
// memory per connected sidecar is measured apart from the sidecars'. The sidecars run in other child processes,
// at most sidecarsPerProcess each, each sidecar with its own mTLS connection. All share this machine's cores, as
// a controller and its sidecars would not.
const (
	benchControllerEnv = "AGENTAUTH_XDS_BENCH_CONTROLLER_DIR"
	benchSidecarsEnv   = "AGENTAUTH_XDS_BENCH_SIDECARS"
	// A real sidecar is a process of its own, with a heap of its own that its own collector marks. A thousand
	// in one process share one heap of a few hundred megabytes, and each of its collections holds up all of
	// them at once for a quarter of a second: a pause no deployment has, which would set the p99. Groups of
	// 250 keep the harness's heaps (and pauses) four times smaller, and a pause holds up a quarter of the
	// sidecars, not all.
	sidecarsPerProcess = 250
)

// preloaded revocations: every wildcard watch compares against all of them on each update, so an empty cache
// would flatter the figures.
const benchBaseRevocations = 100

// BenchmarkRevocationPropagation measures, per sidecar, the time from a revocation being accepted by the
// controller (UpsertRevocation called; it returns after the fsync) to the sidecar having applied it (OnUpdate,
// which runs after the new state is in place). Reported: p50/p99/max over all sidecars and iterations, the
// commit time, the controller's heap+stack per connected sidecar, and CPU per revocation.
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
	ca.WriteBundleFile(dir)
	for i := range n {
		sub := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(sub, 0o700); err != nil {
			b.Fatal(err)
		}
		ca.WriteSVIDFiles(sub, ca.CreateX509SVID(benchSidecarID(i)))
	}
	ctl := startBenchController(b, dir)

	memBefore := ctl.mem()
	var hosts []*testproc.Child
	for first := 0; first < n; first += sidecarsPerProcess {
		count := min(sidecarsPerProcess, n-first)
		hosts = append(hosts, testproc.StartChild(b, "TestBenchSidecarsProcess", benchSidecarsEnv,
			strings.Join([]string{dir, ctl.addr, strconv.Itoa(first), strconv.Itoa(count)}, " "), 60*time.Second))
	}
	for _, h := range hosts {
		h.Read("synced")
	}
	memAfter := ctl.mem()

	lat := make([]time.Duration, 0, n*b.N)
	var commit time.Duration
	iter := 0
	cpu := func() (total time.Duration) {
		for _, h := range hosts {
			h.Send("cpu")
			v, _ := strconv.ParseInt(h.Read("cpu")[0], 10, 64)
			total += time.Duration(v)
		}
		return total
	}
	ctlCPU0, cliCPU0 := ctl.cpu(), cpu()
	wall0 := time.Now()
	for b.Loop() {
		id := fmt.Sprintf("bench-%d", iter)
		iter++
		for _, h := range hosts {
			h.Send("want", id)
		}
		for _, h := range hosts {
			h.Read("ready")
		}
		accepted, committed := ctl.revoke(id)
		commit += committed.Sub(accepted)
		for _, h := range hosts {
			h.Send("applied")
			for _, f := range h.Read("applied") {
				at, _ := strconv.ParseInt(f, 10, 64)
				lat = append(lat, time.Duration(at-accepted.UnixNano()))
			}
		}
	}
	b.StopTimer()
	wall := time.Since(wall0)
	ctlCPU, cliCPU := ctl.cpu()-ctlCPU0, cpu()-cliCPU0
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

func benchSidecarID(i int) spiffeid.ID {
	return spiffeid.RequireFromPath(td, fmt.Sprintf("/agent/bench-%d", i))
}

// TestBenchSidecarsProcess is a group of sidecars of BenchmarkRevocationPropagation: xDS clients, each with its
// own SVID and connection. It only runs as the benchmark's child process. Commands on stdin: "want ID" arms the
// clients to note when each applies revocation ID; "applied" answers, once all have, with when each did (unix
// nanoseconds); "cpu" with this process's CPU time.
func TestBenchSidecarsProcess(t *testing.T) {
	env := strings.Fields(os.Getenv(benchSidecarsEnv))
	if len(env) != 4 {
		t.Skip("runs only as a child process of BenchmarkRevocationPropagation")
	}
	dir, addr := env[0], env[1]
	first, _ := strconv.Atoi(env[2])
	count, _ := strconv.Atoi(env[3])
	testproc.RaiseFileLimit(t)
	bundle, err := x509bundle.Load(td, filepath.Join(dir, testca.BundleFile))
	if err != nil {
		t.Fatal(err)
	}

	var (
		want    atomic.Pointer[string] // the revocation being measured
		applied = make([]atomic.Int64, count)
		left    atomic.Int64 // clients yet to apply it
		done    = make(chan struct{}, 1)
	)
	want.Store(new(string))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	clients := make([]*Client, count)
	for i := range clients {
		sub := filepath.Join(dir, strconv.Itoa(first+i))
		svid, err := x509svid.Load(filepath.Join(sub, testca.SVIDCertFile), filepath.Join(sub, testca.SVIDKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		cl, err := NewClient(ClientConfig{Target: addr, NodeID: svid.ID.String(),
			TLSConfig: tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(controllerID)),
			OnUpdate: func(u Update) {
				if u.TypeURL == agentauthv1.RevocationType && slices.Contains(u.Updated, *want.Load()) &&
					applied[i].CompareAndSwap(0, time.Now().UnixNano()) && left.Add(-1) == 0 {
					done <- struct{}{}
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
		wg.Go(func() { _ = cl.Run(ctx) })
	}
	for _, cl := range clients {
		waitFor(t, "sidecars to sync", func() bool { return cl.Status().Synced })
	}
	fmt.Println("bench: synced")

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 2 && f[0] == "want":
			for i := range applied {
				applied[i].Store(0)
			}
			left.Store(int64(count))
			want.Store(&f[1])
			fmt.Println("bench: ready")
		case len(f) == 1 && f[0] == "applied":
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("revocation %s: %d of %d sidecars did not apply it within 30s", *want.Load(), left.Load(), count)
			}
			var line strings.Builder
			line.WriteString("bench: applied")
			for i := range applied {
				fmt.Fprintf(&line, " %d", applied[i].Load())
			}
			fmt.Println(line.String())
		case len(f) == 1 && f[0] == "cpu":
			fmt.Printf("bench: cpu %d\n", testproc.CPUTime(t))
		default:
			t.Fatalf("unknown command %q", in.Text())
		}
	}
}

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
	st, err := store.Open(filepath.Join(dir, "controller.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub, err := NewPublisher(st, PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll)}); err != nil {
		t.Fatal(err)
	}
	for i := range benchBaseRevocations {
		if err := pub.UpsertRevocation(spiffeRevocation(fmt.Sprintf("base-%d", i), fmt.Sprintf("spiffe://example.org/old/%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := NewServer(pub, ServerConfig{TLSConfig: tlsconfig.MTLSServerConfig(svid, bundle, tlsconfig.AuthorizeMemberOf(td))})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	fmt.Printf("bench: addr %s\n", l.Addr())

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
			r := spiffeRevocation(f[1], "spiffe://example.org/agent/"+f[1])
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
