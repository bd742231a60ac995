package netns

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testproc"
)

// binDir holds the binaries TestMain builds once.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testproc.Main(m, &binDir, "./cmd/sidecar", "./examples/sampletool"))
}

// skipOrFail skips the test when the machine cannot run it, but fails it under CI, which installs the tools and
// runs as root: a silently skipped suite there would hide a broken interception path.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: the transparent-interception suite must run)", msg)
	}
	t.Skipf("%s; skipping the transparent-interception suite", msg)
}

// requireTools skips (or fails, under CI) unless every named command is on PATH.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			skipOrFail(t, "%s not found on PATH", n)
		}
	}
}

// sh runs a setup or teardown command and fails the test if it fails.
func sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startIn runs one of the built binaries inside network namespace ns. ip netns exec replaces itself with the
// binary, so the signal Stop sends reaches it directly. The process is stopped when the test ends (killed 10s after
// SIGTERM, and killed at once if the test binary dies first), and its output is logged if the test failed.
func startIn(t *testing.T, ns, name string, args ...string) *testproc.Proc {
	t.Helper()
	return testproc.Start(t, filepath.Join(binDir, name), testproc.Args(args...), testproc.Name(name+"@"+ns),
		testproc.Prefix("ip", "netns", "exec", ns), testproc.SysProcAttr(&syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}))
}

// curlResult is what curl reported: the HTTP status (0 when no response arrived), the body and curl's exit code.
type curlResult struct {
	status int
	body   string
	exit   int
	stderr string
}

func (r curlResult) String() string {
	return fmt.Sprintf("curl exit %d, status %d, body %q, stderr %q", r.exit, r.status, r.body, r.stderr)
}

// curlIn runs curl in namespace ns as uid (0 stays root; any other uid is set with setpriv), with an environment
// holding only PATH — no proxy variables — and -q so no .curlrc applies: an unmodified client that knows
// nothing of the sidecar.
func curlIn(t testing.TB, ns string, uid int, args ...string) curlResult {
	t.Helper()
	argv := []string{"netns", "exec", ns}
	if uid != 0 {
		id := strconv.Itoa(uid)
		argv = append(argv, "setpriv", "--reuid="+id, "--regid="+id, "--clear-groups")
	}
	argv = append(argv, "curl", "-q", "-sS", "--max-time", "10", "-w", "\n%{http_code}")
	cmd := exec.Command("ip", append(argv, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := curlResult{stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running curl: %v", err)
	}
	out := stdout.String()
	i := strings.LastIndexByte(out, '\n')
	if i < 0 {
		t.Fatalf("curl output without the status line: %q (%s)", out, stderr.String())
	}
	res.body = out[:i]
	res.status, _ = strconv.Atoi(strings.TrimSpace(out[i+1:]))
	return res
}

// waitReady polls url from inside ns until it answers 200, failing early if p exits (30s at most).
func waitReady(t *testing.T, p *testproc.Proc, ns, url string) {
	t.Helper()
	testproc.WaitFor(t, p, url, 100*time.Millisecond, func() (bool, string) {
		res := curlIn(t, ns, 0, "--max-time", "2", url)
		return res.status == 200, res.String()
	})
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
