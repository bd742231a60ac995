package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// adminServer is an admin API on a Unix socket that records every request and answers from a table of canned
// JSON bodies by "METHOD /path"; anything else is a 404.
type adminServer struct {
	socket string
	mu     sync.Mutex
	reqs   []recorded
}

type recorded struct {
	route string
	body  string
}

type answer struct {
	status int
	body   string
}

func newAdminServer(t *testing.T, answers map[string]answer) *adminServer {
	t.Helper()
	s := &adminServer{socket: filepath.Join(t.TempDir(), "admin.sock")}
	l, err := net.Listen("unix", s.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		route := r.Method + " " + r.URL.RequestURI()
		s.mu.Lock()
		s.reqs = append(s.reqs, recorded{route, string(b)})
		s.mu.Unlock()
		a, ok := answers[route]
		if !ok {
			a = answer{http.StatusNotFound, `{"error":"no such thing"}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return s
}

func (s *adminServer) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

// ctl runs agentauthctl against s and returns the exit code, stdout and stderr.
func (s *adminServer) ctl(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := execute(append([]string{"--socket", s.socket}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// commandPaths lists every command of the tree as its words after "agentauthctl", cobra's own (help,
// completion and its shells) included.
func commandPaths() [][]string {
	root := newRootCmd(&app{out: io.Discard, errOut: io.Discard})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(root, nil)
	return paths
}

// TestHelpPerformsNoAction: every command with -h, --help or -help (and with the arguments and flags an action
// would take around it) prints its help, exits 0 and sends nothing to the controller. Before cobra,
// "policy apply -h" opened a file named -h, "unrevoke -h" sent a DELETE for a revocation named -h, and --help
// exited 1.
func TestHelpPerformsNoAction(t *testing.T) {
	s := newAdminServer(t, nil)
	paths := commandPaths()
	if len(paths) < 12 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	for _, path := range paths {
		for _, help := range []string{"-h", "--help", "-help"} {
			for _, extra := range [][]string{nil, {"some-id"}, {"-o", "json"}} {
				args := append(append(append([]string(nil), path...), help), extra...)
				t.Run(strings.Join(args, " "), func(t *testing.T) {
					code, out, errOut := s.ctl(args...)
					if code != exitOK || !strings.Contains(out, "Usage:") {
						t.Errorf("exit %d, want 0 with help on stdout; stdout:\n%s\nstderr:\n%s", code, out, errOut)
					}
				})
			}
		}
		t.Run("help "+strings.Join(path, " "), func(t *testing.T) {
			if code, out, errOut := s.ctl(append([]string{"help"}, path...)...); code != exitOK || !strings.Contains(out, "Usage:") {
				t.Errorf("exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
		})
	}
	if reqs := s.requests(); len(reqs) != 0 {
		t.Errorf("help sent %d requests to the controller: %v", len(reqs), reqs)
	}
}

const (
	revocationJSON = `{"id":"admin-1","subject":{"kind":"spiffe","value":"spiffe://example.org/agent/a"},` +
		`"not_before":"2026-01-02T03:04:05Z","reason":"laptop stolen","cause":{"event_type":"admin"}}`
	permitWeather = `@id("weather") permit (principal, action, resource == Tool::"weather.tools.local");`
)

// TestExitCodes: 0 success, 1 a refusal or an error, 2 a usage error (which sends nothing).
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "weather.cedar"), []byte(permitWeather), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.cedar")
	if err := os.WriteFile(bad, []byte("permit ("), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newAdminServer(t, map[string]answer{
		"GET /v1/revocations":            {200, `{"revocations":[` + revocationJSON + `]}`},
		"DELETE /v1/revocations/nope":    {404, `{"error":"revocation \"nope\": not found"}`},
		"DELETE /v1/revocations/admin-1": {204, ""},
		"PUT /v1/policies":               {400, `{"error":"bad.cedar:1:9: parse error"}`},
	})
	check := []string{"policy", "check", "--dir", dir, "--host", "weather.tools.local"}
	tests := []struct {
		name string
		args []string
		want int
		sent bool // whether the controller is asked anything
	}{
		{"success", []string{"revocations"}, exitOK, true},
		{"unrevoke an existing id", []string{"unrevoke", "admin-1"}, exitOK, true},
		{"the controller refuses", []string{"unrevoke", "nope"}, exitFailure, true},
		{"the controller refuses a policy set", []string{"policy", "apply", bad}, exitFailure, true},
		{"policy check ALLOW", append(check, "--agent", "spiffe://example.org/agent/a"), exitOK, false},
		{"policy check DENY", append(check[:len(check)-1], "other.tools.local", "--agent", "spiffe://example.org/agent/a"), exitFailure, false},
		{"policy check with no policies", []string{"policy", "check", "--dir", t.TempDir(), "--agent", "spiffe://example.org/agent/a"}, exitFailure, false},
		{"a file that does not exist", []string{"policy", "apply", filepath.Join(dir, "missing.cedar")}, exitFailure, false},
		{"no command", nil, exitUsage, false},
		{"unknown command", []string{"bogus"}, exitUsage, false},
		{"unknown subcommand", []string{"policy", "bogus"}, exitUsage, false},
		{"group without subcommand", []string{"policy"}, exitUsage, false},
		{"unknown flag", []string{"revocations", "--bogus"}, exitUsage, false},
		{"unknown shorthand", []string{"revocations", "-x"}, exitUsage, false},
		{"flag without value", []string{"revocations", "--socket"}, exitUsage, false},
		{"bad flag value", []string{"join-token", "--spiffe-id", "spiffe://example.org/a", "--ttl", "soon"}, exitUsage, false},
		{"bad output format", []string{"revocations", "-o", "xml"}, exitUsage, false},
		{"extra argument", []string{"revocations", "extra"}, exitUsage, false},
		{"missing argument", []string{"unrevoke"}, exitUsage, false},
		{"two arguments", []string{"unrevoke", "a", "b"}, exitUsage, false},
		{"no files to apply", []string{"policy", "apply"}, exitUsage, false},
		{"missing required flag", []string{"join-token"}, exitUsage, false},
		{"check without agent", []string{"policy", "check", "--dir", dir}, exitUsage, false},
		{"bad issued-at", append(check, "--agent", "a", "--issued-at", "yesterday"), exitUsage, false},
		{"diff with files and dir", []string{"policy", "diff", "--dir", dir, bad}, exitUsage, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.requests())
			code, out, errOut := s.ctl(tt.args...)
			if code != tt.want {
				t.Errorf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tt.want, out, errOut)
			}
			if sent := len(s.requests()) > before; sent != tt.sent {
				t.Errorf("sent a request: %v, want %v", sent, tt.sent)
			}
			if code == exitUsage && !strings.Contains(errOut, "--help' for usage") {
				t.Errorf("a usage error does not point to --help:\n%s", errOut)
			}
		})
	}
}

// TestLegacyFlags: command lines written for the old CLI (single-dash long flags) still mean the same; a flag's
// value that looks like a flag stays the value; nothing after "--" changes.
func TestLegacyFlags(t *testing.T) {
	s := newAdminServer(t, map[string]answer{"POST /v1/revocations": {201, revocationJSON}})
	tests := []struct {
		name string
		args []string
		want map[string]any
	}{
		{"single dash", []string{"revoke", "-kind", "spiffe", "-value", "spiffe://example.org/agent/a", "-reason", "stolen", "-no-renew"},
			map[string]any{"kind": "spiffe", "value": "spiffe://example.org/agent/a", "reason": "stolen", "no_renew": true}},
		{"single dash with =", []string{"revoke", "-kind=user_email", "-value=a@example.org", "-reason=gone"},
			map[string]any{"kind": "user_email", "value": "a@example.org", "reason": "gone"}},
		{"a value that looks like a flag", []string{"revoke", "--value", "-kind", "--kind", "session", "-reason", "-value"},
			map[string]any{"kind": "session", "value": "-kind", "reason": "-value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.requests())
			var out, errOut bytes.Buffer
			if code := execute(append([]string{"-socket", s.socket}, tt.args...), &out, &errOut); code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			reqs := s.requests()[before:]
			if len(reqs) != 1 || reqs[0].route != "POST /v1/revocations" {
				t.Fatalf("requests: %v", reqs)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(reqs[0].body), &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (body %s)", k, got[k], v, reqs[0].body)
				}
			}
		})
	}
	if got := legacyFlags(newRootCmd(&app{}), []string{"unrevoke", "--", "-reason"}); strings.Join(got, " ") != "unrevoke -- -reason" {
		t.Errorf("after --: %v", got)
	}
}

// TestOutput: a table by default; -o json and -o yaml carry the admin API's answer.
func TestOutput(t *testing.T) {
	s := newAdminServer(t, map[string]answer{"GET /v1/revocations": {200, `{"revocations":[` + revocationJSON + `]}`}})
	_, table, _ := s.ctl("revocations")
	if !strings.HasPrefix(table, "ID ") || !strings.Contains(table, "admin-1") || !strings.Contains(table, "laptop stolen") {
		t.Errorf("table:\n%s", table)
	}
	var fromJSON, fromYAML struct {
		Revocations []struct {
			ID      string `json:"id" yaml:"id"`
			Subject struct {
				Value string `json:"value" yaml:"value"`
			} `json:"subject" yaml:"subject"`
		} `json:"revocations" yaml:"revocations"`
	}
	_, js, _ := s.ctl("revocations", "-o", "json")
	if err := json.Unmarshal([]byte(js), &fromJSON); err != nil {
		t.Fatalf("%v:\n%s", err, js)
	}
	_, ym, _ := s.ctl("revocations", "-o", "yaml")
	if err := yaml.Unmarshal([]byte(ym), &fromYAML); err != nil {
		t.Fatalf("%v:\n%s", err, ym)
	}
	for name, got := range map[string]any{"json": fromJSON, "yaml": fromYAML} {
		if js, _ := json.Marshal(got); !strings.Contains(string(js), `"id":"admin-1"`) || !strings.Contains(string(js), "agent/a") {
			t.Errorf("%s: %s", name, js)
		}
	}
}

// TestCompletion: a completion script for each shell, and completion of flag values and revocation ids.
func TestCompletion(t *testing.T) {
	s := newAdminServer(t, map[string]answer{"GET /v1/revocations": {200, `{"revocations":[` + revocationJSON + `]}`}})
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		if code, out, errOut := s.ctl("completion", shell); code != exitOK || !strings.Contains(out, "agentauthctl") {
			t.Errorf("completion %s: exit %d %s", shell, code, errOut)
		}
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"revoke", "--kind", ""}, "user_email"},
		{[]string{"revocations", "-o", ""}, "yaml"},
		{[]string{"unrevoke", ""}, "admin-1\tspiffe spiffe://example.org/agent/a"},
	}
	for _, tt := range tests {
		if _, out, _ := s.ctl(append([]string{"__complete"}, tt.args...)...); !strings.Contains(out, tt.want) {
			t.Errorf("complete %v: %q lacks %q", tt.args, out, tt.want)
		}
	}
}
