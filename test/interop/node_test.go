//go:build interop

package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

// requireNode skips unless node and the pinned node modules are present; under CI=true it fails instead.
func requireNode(t *testing.T, modules ...string) {
	t.Helper()
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node is not on PATH"
	}
	for _, m := range modules {
		if missing != "" {
			break
		}
		if _, err := os.Stat("node_modules/" + m + "/package.json"); err != nil {
			missing = "test/interop/node_modules/" + m + " is missing (run `npm ci` in test/interop, or `make interop`)"
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("interop: %s", missing)
	}
	t.Skipf("interop: %s; skipping", missing)
}

// runNode runs script with in as JSON on stdin and decodes its JSON stdout into out.
func runNode(t *testing.T, script string, in, out any) {
	t.Helper()
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("node %s output %q: %v", script, stdout, err)
	}
}
