//go:build bench

package bench

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/internal/testproc"
)

// buildBinaries builds the processes under test into a temporary directory, before this process is pinned, so the
// build may use every CPU.
func buildBinaries(t *testing.T) string {
	t.Helper()
	root, err := testproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, cleanup, err := testproc.Build(root, "./cmd/sidecar", "./examples/sampletool", "./test/bench/cmd/bareproxy", "./test/bench/cmd/speedprobe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return dir
}

// pinning decides where things run: the load generator (this process) and the sample tool on one CPU, the proxies
// under test on another. With fewer than two CPUs, or without taskset, nothing is pinned and note says so.
type pinning struct {
	load, sut int // -1: not pinned
	note      string
}

func pinSelf(t *testing.T) pinning {
	t.Helper()
	cpus, err := AllowedCPUs()
	switch {
	case err != nil:
		return pinning{-1, -1, fmt.Sprintf("NOT PINNED: cannot read the allowed CPUs (%v); the load generator and the proxies share CPUs", err)}
	case len(cpus) < 2:
		return pinning{-1, -1, fmt.Sprintf("NOT PINNED: only 1 CPU (%v) is available; the load generator, the tool and the proxies share it, so throughput and latency are pessimistic", cpus)}
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return pinning{-1, -1, "NOT PINNED: taskset (util-linux) is not installed; the load generator and the proxies share CPUs"}
	}
	p := pinning{load: cpus[0], sut: cpus[1]}
	// -a: every thread of this process; threads created later inherit the mask.
	if out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(p.load), strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
		t.Fatalf("taskset: %v\n%s", err, out)
	}
	p.note = fmt.Sprintf("pinned with taskset: load generator and sample tool on CPU %d, proxies under test on CPU %d (%d CPUs allowed)",
		p.load, p.sut, len(cpus))
	return p
}

// proc is a started binary; its output is kept and shown if the test fails.
type proc struct {
	*testproc.Proc
	name string
	// metrics is the sidecar's Prometheus endpoint, where its Go runtime counters are read; "" for the others.
	metrics string
	// admin is the sidecar's admin base URL, where -profile.dir fetches /debug/pprof/profile; "" for the others.
	admin string
}

// start runs binary name from bin on cpu (-1: unpinned). It is stopped with SIGTERM (killed after 10s) when the
// (sub)test ends.
func start(t *testing.T, bin string, cpu int, name string, args ...string) *proc {
	t.Helper()
	opts := []testproc.Option{testproc.Args(args...)}
	if name == "sidecar" && *profileMemRate > 0 {
		opts = append(opts, testproc.Env(fmt.Sprintf("GODEBUG=memprofilerate=%d", *profileMemRate)))
	}
	if cpu >= 0 {
		// taskset execs the binary in place, so the PID is the binary's.
		opts = append(opts, testproc.Prefix("taskset", "-c", strconv.Itoa(cpu)))
	}
	return &proc{Proc: testproc.Start(t, filepath.Join(bin, name), opts...), name: name}
}

func (p *proc) pid() int { return p.Pid() }

// waitReady polls ready until it is true, p dies, or 30s pass.
func waitReady(t *testing.T, p *proc, what string, ready func() bool) {
	t.Helper()
	testproc.WaitFor(t, p.Proc, what, 20*time.Millisecond, func() (bool, string) { return ready(), "" })
}

func listening(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

func answers200(url string) func() bool {
	return func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	return testproc.FreeAddr(t)
}

// creds are one workload's credential files as the sidecar's identity.files section names them.
type creds struct {
	dir, cert, key, bundlePEM, bundleJSON, wit, witKey string
	// reload, when set, is identity.files.reloadInterval (for credentials the benchmark rotates).
	reload time.Duration
}

func issue(t *testing.T, ca *testca.CA, id spiffeid.ID, opts ...testca.SVIDOption) creds {
	t.Helper()
	c := creds{dir: t.TempDir()}
	c.cert, c.key = ca.WriteSVIDFiles(c.dir, ca.CreateX509SVID(id, opts...))
	c.bundlePEM = ca.WriteBundleFile(c.dir)
	c.bundleJSON = ca.WriteJWTBundleFile(c.dir)
	c.wit, c.witKey = ca.WriteWITFiles(c.dir, ca.CreateWITSVID(id, opts...))
	return c
}

// issueEd25519 is issue with the WIT bound to a fresh Ed25519 key (cnf.jwk.alg EdDSA); the X.509-SVID stays P-256.
func issueEd25519(t *testing.T, ca *testca.CA, id spiffeid.ID) creds {
	t.Helper()
	c := issue(t, ca, id)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.wit, c.witKey = ca.WriteWITFiles(c.dir, ca.CreateWITSVID(id, testca.WithKey(key)))
	return c
}

func (c creds) identityYAML(td string) string {
	return fmt.Sprintf(`identity:
  files:
    cert: %s
    key: %s
    bundles:
      %s: [%s, %s]
    wit: %s
    witKey: %s
`, c.cert, c.key, td, c.bundlePEM, c.bundleJSON, c.wit, c.witKey) + reloadYAML(c.reload)
}

func reloadYAML(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf("    reloadInterval: %s\n", d)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
