//go:build bench

package bench

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/internal/testproc"
)

var idleWait = flag.Duration("idle.wait", 5*time.Second, "how long the sidecars are left idle before their memory is read")

// maxIdleRSS is issue 19's bound on an idle sidecar's resident memory.
const maxIdleRSS = 20 << 20

// TestSidecarIdleMemory reports the resident memory of idle sidecars (issue 19: under 20 MB), split into the
// binary's and other files' pages and anonymous memory: the pair the demo starts (`make demo`: identity and
// policy from the controller, over xDS), after its calls; and an egress and ingress sidecar with file credentials
// (wpt over TLS) at gcPercent 100, 200 and 400, before any request and idle again after -load.duration of
// closed-loop load. Each figure is read after the process has been idle for -idle.wait.
// With -strict it fails above 20 MB.
func TestSidecarIdleMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	wait := *idleWait
	root, err := testproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, cleanup, err := testproc.Build(root, "./cmd/...", "./examples/sampletool", "./examples/sampleagent", "./examples/demo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	var rows []string
	report := func(what string, pid int) {
		t.Helper()
		m, err := ProcMemory(pid)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		rows = append(rows, fmt.Sprintf("  %-52s RSS %5.1f MiB = file %5.1f + anonymous %4.1f", what,
			float64(m.RSS)/(1<<20), float64(m.File)/(1<<20), float64(m.Anon)/(1<<20)))
		if *strict && m.RSS > maxIdleRSS {
			t.Errorf("%s: RSS %d bytes, over %d", what, m.RSS, maxIdleRSS)
		}
	}

	// The demo's pair, after its calls.
	demo := testproc.Start(t, filepath.Join(bin, "demo"), testproc.Args("-bin", bin, "-keep"), testproc.Grace(time.Minute))
	for end := time.Now().Add(3 * time.Minute); !strings.Contains(demo.Output(), "configs and logs:"); {
		if demo.Exited() || time.Now().After(end) {
			t.Fatalf("the demo did not get to its commands:\n%s", demo.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	sidecars := childrenNamed(t, demo.Pid(), "sidecar")
	if len(sidecars) != 2 {
		t.Fatalf("want the demo's 2 sidecars, found %v", sidecars)
	}
	time.Sleep(wait) // idle is what is measured: no condition to wait for
	for _, pid := range sidecars {
		report("demo, after its calls: "+roleOf(t, pid), pid)
	}

	// A fresh pair at each GC percentage: before any request, and idle again after a few seconds of load.
	ca := testca.New(t, trustDomain)
	e := &env{bin: bin, pin: pinning{load: -1, sut: -1}}
	e.agent, e.tool = issue(t, ca, agentID), issue(t, ca, toolID)
	for _, pct := range []int{100, 200, 400} {
		toolAddr := freeAddr(t)
		tool := start(t, bin, -1, "sampletool", "-listen", toolAddr)
		waitReady(t, tool, toolAddr, listening(toolAddr))
		sut, proxy, target := startSidecarsWith("wpt", true, false, fmt.Sprintf("runtime: {gcPercent: %d}\n", pct))(t, e, toolAddr)
		time.Sleep(wait)
		for _, p := range sut {
			report(fmt.Sprintf("gcPercent %d, no request yet: %s", pct, roleOf(t, p.pid())), p.pid())
		}
		tr := &http.Transport{Proxy: http.ProxyURL(proxy), MaxIdleConnsPerHost: 8}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		res := ClosedLoop(context.Background(), func(ctx context.Context) error {
			_, err := call(ctx, client, target)
			return err
		}, 8, *loadDuration)
		tr.CloseIdleConnections()
		if res.Failed > 0 || res.Done == 0 {
			t.Fatalf("gcPercent %d: %d of %d requests failed: %v", pct, res.Failed, res.Done+res.Failed, res.FirstErr)
		}
		time.Sleep(wait)
		for _, p := range sut {
			report(fmt.Sprintf("gcPercent %d, idle after %s of load: %s", pct, *loadDuration, roleOf(t, p.pid())), p.pid())
		}
	}
	fmt.Printf("\nidle sidecars' resident memory (/proc/PID/status VmRSS, RssFile, RssAnon), %s idle, %s %s/%s:\n%s\n",
		wait, runtime.Version(), runtime.GOOS, runtime.GOARCH, strings.Join(rows, "\n"))
}

// childrenNamed returns the PIDs of parent's children whose command name is name.
func childrenNamed(t *testing.T, parent int, name string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:]) // f[1] is the parent's PID
		if s[open+1:end] == name && len(f) > 1 && f[1] == strconv.Itoa(parent) {
			out = append(out, pid)
		}
	}
	return out
}

// roleOf names a sidecar by its config file's name (egress.yaml, ingress.yaml).
func roleOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return strings.TrimSuffix(filepath.Base(args[len(args)-1]), ".yaml")
}
