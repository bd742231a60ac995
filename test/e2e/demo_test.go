package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testproc"
)

// TestDemoKeep: `make demo DEMOFLAGS=-keep` runs the demo, keeps it running and ends with commands to try on it.
// Each printed command must work against the running demo, in the order printed: the sidecars and revocations
// answer, unrevoke lets the agent back in, and the agent's call and the live policy check are then allowed.
// SIGTERM (as Ctrl-C) stops the demo and everything it started.
func TestDemoKeep(t *testing.T) {
	demo := testproc.Start(t, filepath.Join(binDir, "demo"), testproc.Args("-bin", binDir, "-keep"),
		testproc.Grace(time.Minute))
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(demo.Output(), "configs and logs:") {
		if demo.Exited() || time.Now().After(deadline) {
			t.Fatalf("the demo did not get to its commands:\n%s", demo.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, tryIt, ok := strings.Cut(demo.Output(), "running until Ctrl-C")
	if !ok {
		t.Fatalf("no 'running until Ctrl-C' section:\n%s", demo.Output())
	}
	var cmds []string
	for _, line := range strings.Split(tryIt, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "/") || strings.HasPrefix(line, "HTTP_PROXY=") {
			cmds = append(cmds, line)
		}
	}
	if len(cmds) != 5 {
		t.Fatalf("want 5 commands to try, got %q", cmds)
	}
	for _, c := range cmds {
		var env []string
		if first, rest, ok := strings.Cut(c, " "); ok && strings.Contains(first, "=") {
			env, c = []string{first, "NO_PROXY="}, rest
		}
		argv := strings.Fields(c)
		// After unrevoke the sidecars learn of it over xDS: poll until the command succeeds.
		var out []byte
		var err error
		for end := time.Now().Add(30 * time.Second); ; {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = append(cmd.Environ(), env...)
			out, err = cmd.CombinedOutput()
			if err == nil && !strings.HasPrefix(string(out), "403") || time.Now().After(end) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil || strings.HasPrefix(string(out), "403") {
			t.Fatalf("%s: %v\n%s", c, err, out)
		}
	}

	demo.Stop(t)
	if !strings.Contains(demo.Output(), "stopping") {
		t.Fatalf("the demo did not stop on SIGTERM:\n%s", demo.Output())
	}
}
