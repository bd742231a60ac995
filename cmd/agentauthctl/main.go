// Command agentauthctl administers a running agentauth controller over its admin socket, and answers policy
// dry-run questions locally.
//
//	agentauthctl policy apply policies/*.cedar
//	agentauthctl policy list
//	agentauthctl policy check -dir policies -agent spiffe://example.org/agent/planner -host weather.tools.local -path /forecast
//	agentauthctl revoke -kind spiffe -value spiffe://example.org/agent/planner -reason "laptop stolen" -no-renew
//	agentauthctl unrevoke admin-3f2a...
//	agentauthctl revocations
//	agentauthctl sidecars
//	agentauthctl join-token -spiffe-id spiffe://example.org/agent/planner -ttl 10m
//	agentauthctl backup -o /var/backups/agentauth/state.db
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentauth/agentauth/pkg/controller"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/policy/mcp"
	"github.com/agentauth/agentauth/pkg/store"
)

const usage = `usage: agentauthctl [-socket PATH] COMMAND [flags]

commands:
  policy apply FILE...     replace the controller's policy set with these Cedar files
  policy list              show the policies the controller serves
  policy check [flags]     dry run: would this request be allowed, and by which policy? (local, no controller)
  revoke [flags]           revoke a subject's credentials issued before now (-no-renew: an agent must re-attest)
  unrevoke ID              remove a revocation
  revocations              list revocations
  sidecars                 list connected sidecars and the versions each ACKed or NACKed
  join-token [flags]       create a one-time join token for a workload
  backup -o FILE           write a consistent copy of the controller's state.db to FILE, and check it
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "agentauthctl:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	global := flag.NewFlagSet("agentauthctl", flag.ContinueOnError)
	socket := global.String("socket", envOr("AGENTAUTH_ADMIN_SOCKET", "/run/agentauth/admin.sock"), "controller admin socket")
	global.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	if err := global.Parse(args); err != nil {
		return err
	}
	args = global.Args()
	if len(args) == 0 {
		global.Usage()
		return errors.New("no command")
	}
	c := &client{socket: *socket, out: out}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "policy":
		if len(rest) == 0 {
			return errors.New("policy: want apply, list or check")
		}
		switch rest[0] {
		case "apply":
			return c.policyApply(rest[1:])
		case "list":
			return c.do(http.MethodGet, "/v1/policies", nil)
		case "check":
			return policyCheck(rest[1:], out)
		}
		return fmt.Errorf("policy %s: unknown subcommand", rest[0])
	case "revoke":
		return c.revoke(rest)
	case "unrevoke":
		if len(rest) != 1 {
			return errors.New("unrevoke: want exactly one revocation id")
		}
		return c.do(http.MethodDelete, "/v1/revocations/"+rest[0], nil)
	case "revocations":
		return c.do(http.MethodGet, "/v1/revocations", nil)
	case "sidecars":
		return c.do(http.MethodGet, "/v1/sidecars", nil)
	case "join-token":
		return c.joinToken(rest)
	case "backup":
		return c.backup(rest)
	}
	global.Usage()
	return fmt.Errorf("unknown command %q", args[0])
}

type client struct {
	socket string
	out    io.Writer
}

func (c *client) policyApply(files []string) error {
	if len(files) == 0 {
		return errors.New("policy apply: name at least one .cedar file")
	}
	var req controller.PoliciesRequest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		req.Policies = append(req.Policies, controller.PolicyDoc{Source: filepath.Base(f), Cedar: string(b)})
	}
	return c.do(http.MethodPut, "/v1/policies", req)
}

func (c *client) revoke(args []string) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	kind := fs.String("kind", "spiffe", "subject kind: "+strings.Join(controller.SubjectKinds, ", "))
	value := fs.String("value", "", "subject value (SPIFFE ID, email, sub, ...)")
	iss := fs.String("iss", "", "issuer, for user_iss_sub and jti")
	reason := fs.String("reason", "", "why (shown in every refusal and audit record)")
	noRenew := fs.Bool("no-renew", false, "kind spiffe: the agent's current credentials renew nothing; it needs a new join token (stolen key or machine)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return c.do(http.MethodPost, "/v1/revocations", controller.RevokeRequest{Kind: *kind, Value: *value, Iss: *iss, Reason: *reason, NoRenew: *noRenew})
}

func (c *client) joinToken(args []string) error {
	fs := flag.NewFlagSet("join-token", flag.ContinueOnError)
	id := fs.String("spiffe-id", "", "the workload's SPIFFE ID")
	ttl := fs.Duration("ttl", time.Hour, "how long the token may be used")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return c.do(http.MethodPost, "/v1/join-tokens", controller.JoinTokenRequest{SPIFFEID: *id, TTL: *ttl})
}

func (c *client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", c.socket)
}

// backup fetches a snapshot of the controller's state into a new file beside FILE, checks it as the controller
// would open it, and only then renames it to FILE: FILE is never a partial or damaged copy.
func (c *client) backup(args []string) (err error) {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	out := fs.String("o", "", "file to write the backup to (replaced if it exists)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		return errors.New("backup: want -o FILE")
	}
	resp, err := (&http.Client{Transport: &http.Transport{DialContext: c.dial}}).Get("http://controller/v1/backup")
	if err != nil {
		return fmt.Errorf("controller admin socket %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ae controller.APIError
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ae) == nil && ae.Error != "" {
			return fmt.Errorf("backup: %s", ae.Error)
		}
		return fmt.Errorf("backup: %s", resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, resp.Body) // a body shorter than its Content-Length is an error here
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := store.Verify(tmp.Name()); err != nil {
		return fmt.Errorf("backup: the copy does not check: %w", err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.out, "backup of %d bytes written to %s and checked\n", n, *out)
	return err
}

// do sends one admin request and prints the JSON answer; a non-2xx answer is an error carrying the message.
func (c *client) do(method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: c.dial}}
	req, err := http.NewRequest(method, "http://controller"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("controller admin socket %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var ae controller.APIError
		if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			return errors.New(ae.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if len(b) == 0 {
		fmt.Fprintln(c.out, "ok")
		return nil
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, b, "", "  ") == nil {
		b = pretty.Bytes()
	}
	_, err = fmt.Fprintln(c.out, strings.TrimSpace(string(b)))
	return err
}

// policyCheck is the dry run: compile the policy directory and explain the decision for one request.
func policyCheck(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	dir := fs.String("dir", ".", "directory of .cedar policy files")
	agent := fs.String("agent", "", "the agent's SPIFFE ID")
	method := fs.String("method", "GET", "HTTP method")
	host := fs.String("host", "", "tool host")
	path := fs.String("path", "/", "request path")
	authMethod := fs.String("auth", "wit-wpt", "auth method: mtls, wit-wpt or wit-httpsig")
	user := fs.String("user", "", "delegated subject (Txn-Token sub)")
	risk := fs.String("risk", "", "risk level: LOW, MEDIUM or HIGH")
	mcpBody := fs.String("mcp", "", "file with an MCP JSON-RPC body (the request is then an MCP POST)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	set, err := policy.LoadDir(*dir)
	if err != nil {
		return err
	}
	req := policy.Request{AgentID: *agent, AuthMethod: policy.AuthMethod(*authMethod), DelegatedSubject: *user,
		Host: *host, Method: *method, Path: *path, RiskLevel: policy.RiskLevel(*risk)}
	if *mcpBody != "" {
		b, err := os.ReadFile(*mcpBody)
		if err != nil {
			return err
		}
		msg, err := mcp.Parse("application/json", b, 0)
		if err != nil {
			return fmt.Errorf("MCP body: %w", err)
		}
		req.Method, req.MCP = http.MethodPost, msg.Calls
	}
	_, err = fmt.Fprintln(out, policy.Explain(set, req).String())
	return err
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
