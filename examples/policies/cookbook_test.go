// Package policies_test checks the Cedar cookbook in this directory the way a policy author would: each file on
// its own, with the real agentauthctl's policy check, asserting its exit code (0 ALLOW, 1 DENY).
package policies_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/internal/testproc"
)

// binDir holds the agentauthctl TestMain builds once.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testproc.Main(m, &binDir, "./cmd/agentauthctl"))
}

const (
	allow = 0
	deny  = 1
)

type check struct {
	name string
	args []string
	mcp  string // a JSON-RPC body for --mcp
	want int
}

// cookbook is every file of the directory with its checks: at least one ALLOW and one DENY each.
var cookbook = map[string][]check{
	"per-agent-allow.cedar": {
		{"planner POSTs to weather", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "weather.tools.local", "--method", "POST", "--path", "/forecast"}, "", allow},
		{"planner on reports", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "reports.tools.local", "--path", "/reports/q3"}, "", deny},
		{"reporter reads a report", []string{"--agent", "spiffe://example.org/agent/reporter", "--host", "reports.tools.local", "--path", "/reports/q3"}, "", allow},
		{"reporter deletes a report", []string{"--agent", "spiffe://example.org/agent/reporter", "--host", "reports.tools.local", "--method", "DELETE", "--path", "/reports/q3"}, "", deny},
		{"reporter outside /reports/", []string{"--agent", "spiffe://example.org/agent/reporter", "--host", "reports.tools.local", "--path", "/admin"}, "", deny},
		{"any agent reads weather health", []string{"--agent", "spiffe://example.org/agent/reporter", "--host", "weather.tools.local", "--path", "/health"}, "", allow},
		{"another trust domain's health check", []string{"--agent", "spiffe://partner.example/agent/x", "--host", "weather.tools.local", "--path", "/health"}, "", deny},
	},
	"mcp-tools.cedar": {
		{"initialize", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "docs.tools.local", "--path", "/mcp"},
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"a","version":"1"}}}`, allow},
		{"tools/list", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "docs.tools.local", "--path", "/mcp"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, allow},
		{"search", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "docs.tools.local", "--path", "/mcp"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"rain"}}}`, allow},
		{"a tool not listed", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "docs.tools.local", "--path", "/mcp"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_shell","arguments":{"cmd":"ls"}}}`, deny},
		{"delete_ tool", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "docs.tools.local", "--path", "/mcp"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_index"}}`, deny},
		{"fetch_page https", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "docs.tools.local", "--path", "/mcp"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_page","arguments":{"url":"https://example.com/"}}}`, allow},
		{"fetch_page http", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "docs.tools.local", "--path", "/mcp"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_page","arguments":{"url":"http://169.254.169.254/"}}}`, deny},
		{"batch with one refused call", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "docs.tools.local", "--path", "/mcp"},
			`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_index"}}]`, deny},
		{"another agent", []string{"--agent", "spiffe://example.org/agent/reporter", "--host", "docs.tools.local", "--path", "/mcp"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}`, deny},
	},
	"delegated-user-only.cedar": {
		{"for a user with calendar.read", []string{"--agent", "spiffe://example.org/agent/assistant", "--host", "calendar.tools.local", "--path", "/events", "--user", "alice@example.com", "--claim", "scope=calendar.read openid"}, "", allow},
		{"for a user without the scope", []string{"--agent", "spiffe://example.org/agent/assistant", "--host", "calendar.tools.local", "--path", "/events", "--user", "alice@example.com", "--claim", "scope=openid"}, "", deny},
		{"for itself", []string{"--agent", "spiffe://example.org/agent/assistant", "--host", "calendar.tools.local", "--path", "/events", "--subject-kind", "self"}, "", deny},
		{"for a system", []string{"--agent", "spiffe://example.org/agent/assistant", "--host", "calendar.tools.local", "--path", "/events", "--subject-kind", "system", "--user", "spiffe://example.org/agent/scheduler"}, "", deny},
		{"without a Txn-Token", []string{"--agent", "spiffe://example.org/agent/assistant", "--host", "calendar.tools.local", "--path", "/events"}, "", deny},
		{"write with calendar.write", []string{"--agent", "spiffe://example.org/agent/assistant", "--host", "calendar.tools.local", "--method", "PUT", "--path", "/events/1", "--user", "alice@example.com", "--claim", "scope=calendar.read calendar.write"}, "", allow},
		{"write with calendar.read only", []string{"--agent", "spiffe://example.org/agent/assistant", "--host", "calendar.tools.local", "--method", "PUT", "--path", "/events/1", "--user", "alice@example.com", "--claim", "scope=calendar.read"}, "", deny},
		{"delete a shared calendar", []string{"--agent", "spiffe://example.org/agent/assistant", "--host", "calendar.tools.local", "--method", "DELETE", "--path", "/shared/team", "--user", "alice@example.com", "--claim", "scope=calendar.write"}, "", deny},
	},
	"risk-based-deny.cedar": {
		{"write at LOW", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "crm.tools.local", "--method", "POST", "--path", "/contacts", "--risk", "LOW"}, "", allow},
		{"write with no signal", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "crm.tools.local", "--method", "POST", "--path", "/contacts"}, "", allow},
		{"write at MEDIUM", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "crm.tools.local", "--method", "POST", "--path", "/contacts", "--risk", "MEDIUM"}, "", deny},
		{"read at MEDIUM", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "crm.tools.local", "--path", "/contacts", "--risk", "MEDIUM"}, "", allow},
		{"read at HIGH", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "crm.tools.local", "--path", "/contacts", "--risk", "HIGH"}, "", deny},
		{"a level CAEP does not define", []string{"--agent", "spiffe://example.org/agent/planner", "--host", "crm.tools.local", "--path", "/contacts", "--risk", "SEVERE"}, "", deny},
	},
	"time-window.cedar": {
		{"export at 02:30 UTC", []string{"--agent", "spiffe://example.org/agent/nightly-batch", "--host", "warehouse.tools.local", "--method", "POST", "--path", "/export", "--time", "2026-03-02T02:30:00Z"}, "", allow},
		{"export at 02:30 in UTC+2 (00:30 UTC)", []string{"--agent", "spiffe://example.org/agent/nightly-batch", "--host", "warehouse.tools.local", "--method", "POST", "--path", "/export", "--time", "2026-03-02T02:30:00+02:00"}, "", deny},
		{"export at 05:00 UTC", []string{"--agent", "spiffe://example.org/agent/nightly-batch", "--host", "warehouse.tools.local", "--method", "POST", "--path", "/export", "--time", "2026-03-02T05:00:00Z"}, "", deny},
		{"export at 14:00 UTC", []string{"--agent", "spiffe://example.org/agent/nightly-batch", "--host", "warehouse.tools.local", "--method", "POST", "--path", "/export", "--time", "2026-03-02T14:00:00Z"}, "", deny},
		{"contractor before July", []string{"--agent", "spiffe://partner.example/agent/contractor", "--host", "warehouse.tools.local", "--path", "/stock", "--time", "2026-06-30T23:59:59Z"}, "", allow},
		{"contractor in July", []string{"--agent", "spiffe://partner.example/agent/contractor", "--host", "warehouse.tools.local", "--path", "/stock", "--time", "2026-07-01T00:00:00Z"}, "", deny},
	},
}

// TestCookbook runs each file's checks against a directory holding only that file, so every file is complete
// on its own (its permits and forbids), as a reader would copy it.
func TestCookbook(t *testing.T) {
	files, err := filepath.Glob("*.cedar")
	if err != nil {
		t.Fatal(err)
	}
	for name := range cookbook {
		if !slices.Contains(files, name) {
			t.Errorf("checks for %s, which is not in the directory", name)
		}
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			checks, ok := cookbook[file]
			if !ok {
				t.Fatalf("%s has no checks: add them to cookbook", file)
			}
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(src), "// ") {
				t.Errorf("%s does not begin with a header comment saying what it does", file)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, file), src, 0o600); err != nil {
				t.Fatal(err)
			}
			var sawAllow, sawDeny bool
			for _, c := range checks {
				sawAllow, sawDeny = sawAllow || c.want == allow, sawDeny || c.want == deny
				args := append([]string{"policy", "check", "--dir", dir}, c.args...)
				if c.mcp != "" {
					body := filepath.Join(t.TempDir(), "call.json")
					if err := os.WriteFile(body, []byte(c.mcp), 0o600); err != nil {
						t.Fatal(err)
					}
					args = append(args, "--mcp", body)
				}
				// Exit 1 is also any error, so the answer itself must say DENY (or ALLOW).
				code, out := ctl(t, args...)
				if word := map[int]string{allow: "ALLOW", deny: "DENY"}[c.want]; code != c.want || !strings.HasPrefix(out, word) {
					t.Errorf("%s: agentauthctl %s: exit %d, want %d (%s)\n%s", c.name, strings.Join(args, " "), code, c.want, word, out)
				}
			}
			if !sawAllow || !sawDeny {
				t.Errorf("%s needs at least one ALLOW and one DENY check", file)
			}
		})
	}
}

// TestCookbookTogether: the files also load as one set (ids unique across them), as `policy apply
// examples/policies/*.cedar` would take them.
func TestCookbookTogether(t *testing.T) {
	code, out := ctl(t, "policy", "check", "--dir", ".", "--agent", "spiffe://example.org/agent/planner",
		"--host", "weather.tools.local", "--path", "/forecast")
	if code != allow {
		t.Fatalf("exit %d, want 0 (the planner may call weather)\n%s", code, out)
	}
}

// ctl runs agentauthctl and returns its exit code and output.
func ctl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "agentauthctl"), args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	default:
		t.Fatal(fmt.Errorf("agentauthctl: %w", err))
		return 0, ""
	}
}
