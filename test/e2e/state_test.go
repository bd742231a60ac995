package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runControllerToExit runs the controller binary on c's config and returns its output and exit code; a
// controller that starts serving instead of exiting is killed after 30s and fails the test.
func runControllerToExit(t *testing.T, c *controllerEnv, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "controller"), append([]string{"-config", c.configPath}, args...)...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the controller started instead of refusing:\n%s", out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("controller: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "goroutine ") || strings.Contains(string(out), "panic:") {
		t.Fatalf("the controller panicked:\n%s", out)
	}
	return string(out), ee.ExitCode()
}

// Before, a missing or 0-byte state.db beside existing CA keys started the controller with empty state, and
// revocations and policies were silently gone; a damaged one panicked. Now both refuse to start with their own
// exit code, a backup taken through the admin socket restores everything, and -init-state starts empty on purpose.
func TestStateMissingCorruptBackupRestore(t *testing.T) {
	dir := t.TempDir()
	c := startController(t, dir)
	policyFile := writeFile(t, dir, "weather.cedar", weatherPolicy)
	c.ctl(t, false, "policy", "apply", policyFile)
	c.ctl(t, false, "revoke", "-kind", "spiffe", "-value", "spiffe://example.org/agent/stolen", "-reason", "laptop stolen", "-no-renew")
	backup := filepath.Join(dir, "backup.db")
	mustContain(t, c.ctl(t, false, "backup", backup), "checked")
	c.ctl(t, false, "revoke", "-kind", "spiffe", "-value", "spiffe://example.org/agent/after-backup", "-reason", "later")
	c.proc.stop(t)

	state := filepath.Join(dir, "data", "state.db")
	good, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		damage   func() error
		code     int
		mentions string
	}{
		{"missing", func() error { return nil }, 4, "-init-state"},
		{"empty", func() error { return os.WriteFile(state, nil, 0o600) }, 4, "-init-state"},
		{"truncated", func() error { return os.WriteFile(state, good[:len(good)/2], 0o600) }, 3, "corrupt"},
		{"meta pages zeroed", func() error {
			b := append([]byte(nil), good...)
			clear(b[:8192])
			return os.WriteFile(state, b, 0o600)
		}, 3, "corrupt"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_ = os.Remove(state)
			if err := tt.damage(); err != nil {
				t.Fatal(err)
			}
			out, code := runControllerToExit(t, c)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d:\n%s", code, tt.code, out)
			}
			mustContain(t, out, tt.mentions)
			mustContain(t, out, "backup")
		})
	}

	// Restore: the backup put in place as state.db, with the controller stopped.
	if err := os.WriteFile(state, good, 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(t)
	revs := c.ctl(t, false, "revocations", "-o", "json")
	mustContain(t, revs, "spiffe://example.org/agent/stolen")
	if strings.Contains(revs, "after-backup") {
		t.Fatalf("restored state has a revocation made after the backup:\n%s", revs)
	}
	mustContain(t, c.ctl(t, false, "policy", "list", "-o", "json"), "planner-may-call-weather")
	c.proc.stop(t)

	// Starting empty on purpose.
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	c.proc = start(t, "controller", nil, "-config", c.configPath, "-init-state")
	waitHTTP(t, c.proc, "http://"+c.opsAddr+"/readyz", 200)
	if revs := c.ctl(t, false, "revocations", "-o", "json"); strings.Contains(revs, "stolen") {
		t.Fatalf("-init-state kept revocations:\n%s", revs)
	}
	mustContain(t, c.proc.out.String(), "-init-state")
}
