// Command agentauthctl administers a running agentauth controller over its admin socket, and answers policy
// dry-run questions locally.
//
//	agentauthctl policy apply policies/*.cedar
//	agentauthctl policy list
//	agentauthctl policy check -dir policies -agent spiffe://example.org/agent/planner -host weather.tools.local -path /forecast
//	agentauthctl revoke -kind spiffe -value spiffe://example.org/agent/planner -reason "laptop stolen" -no-renew
//	agentauthctl revoke -kind user_email -value alice@example.com -reason "left the company" -disable
//	agentauthctl unrevoke admin-3f2a...
//	agentauthctl revocations
//	agentauthctl sidecars
//	agentauthctl join-token -spiffe-id spiffe://example.org/agent/planner -ttl 10m
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
)

const usage = `usage: agentauthctl [-socket PATH] COMMAND [flags]

commands:
  policy apply FILE...     replace the controller's policy set with these Cedar files
  policy list              show the policies the controller serves
  policy check [flags]     dry run: would this request be allowed, and by which policy? (local, no controller)
  revoke [flags]           -sessions (default): refuse a subject's credentials issued before now (-no-renew: an
                           agent must re-attest); -disable: refuse all of them, old and new, until unrevoke
  unrevoke ID              remove a revocation
  revocations              list revocations
  sidecars                 list connected sidecars and the versions each ACKed or NACKed
  join-token [flags]       create a one-time join token for a workload
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
	sessions := fs.Bool("sessions", false, "end sessions (the default, like CAEP session-revoked): refuse what was issued before now; new credentials and tokens pass")
	disable := fs.Bool("disable", false, "disable (like RISC account-disabled): refuse every credential and token, old and new, until unrevoke")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sessions && *disable {
		return errors.New("revoke: -sessions and -disable exclude each other")
	}
	return c.do(http.MethodPost, "/v1/revocations", controller.RevokeRequest{Kind: *kind, Value: *value, Iss: *iss, Reason: *reason, NoRenew: *noRenew, Disable: *disable})
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
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.socket)
		},
	}}
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
	subjectKind := fs.String("subject-kind", "", "who the Txn-Token sub is: user (the default with -user), self or system")
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
		SubjectKind: policy.SubjectKind(*subjectKind), Host: *host, Method: *method, Path: *path, RiskLevel: policy.RiskLevel(*risk)}
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
