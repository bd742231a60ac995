package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testproc"
)

// binDir holds the binaries TestMain builds once for every test.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testproc.Main(m, &binDir, buildTargets...))
}

var buildTargets = []string{"./cmd/sidecar", "./cmd/controller", "./cmd/agentauthctl", "./cmd/ssf-transmit", "./examples/sampletool", "./examples/sampleagent", "./examples/demo", "./examples/usertoken"}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	return testproc.FreeAddr(t)
}

// proc is a started binary; the tests read its output so far as p.out.String().
type proc struct {
	*testproc.Proc
	out output
}

// output is a process's output so far, as a fmt.Stringer.
type output struct{ p *testproc.Proc }

func (o output) String() string { return o.p.Output() }

// start runs binary name with args and env added to the test's environment; it is stopped with SIGTERM (killed
// after 20s) when the test ends, and its output is logged if the test failed.
func start(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	p := testproc.Start(t, filepath.Join(binDir, name), testproc.Env(env...), testproc.Args(args...),
		testproc.Grace(20*time.Second))
	return &proc{Proc: p, out: output{p}}
}

// stop sends SIGTERM and waits (up to 20s) for a graceful exit.
func (p *proc) stop(t testing.TB) { p.Stop(t) }

// waitHTTP polls url until it answers want (or the process dies, or 30s pass).
func waitHTTP(t testing.TB, p *proc, url string, want int) {
	t.Helper()
	var tp *testproc.Proc
	if p != nil {
		tp = p.Proc
	}
	testproc.WaitHTTP(t, tp, url, want)
}

// writeFile writes content under dir and returns its path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ctxT returns a context bounded by the test's deadline minus a margin, or 60s.
func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustContain(t testing.TB, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("expected %q in:\n%s", sub, s)
	}
}
