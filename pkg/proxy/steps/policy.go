package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentauth/agentauth/internal/urlpath"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/policy/mcp"
	"github.com/agentauth/agentauth/pkg/proxy"
)

// Policy is the ingress Authorizer over a Cedar engine. MCP bodies (POSTs to the configured MCP paths) are parsed
// and every JSON-RPC call is decided on its own; the request passes only if all of them are allowed.
type Policy struct {
	engine *policy.Engine
	// Risk, when set, is the risk and assurance level of an agent (and the user it acts for) policy decides with.
	Risk func(agent, user string) (policy.RiskLevel, string)
	// tool is the Tool entity policies are written for, from ingress.host: never from the caller's Host header,
	// which the caller chooses.
	tool     string
	mcpPaths []string // as mcpPathKey makes them
	maxBody  int
}

// NewPolicy decides with engine for the tool toolHost (ingress.host); POSTs to mcpPaths are MCP requests, whose
// bodies (up to maxBody bytes) are decided call by call.
func NewPolicy(engine *policy.Engine, toolHost string, mcpPaths []string, maxBody int) (*Policy, error) {
	a := &Policy{engine: engine, tool: proxy.HostName(toolHost), maxBody: maxBody}
	if a.tool == "" {
		return nil, errors.New("ingress.host: required with policy: it names the tool the policies are written for")
	}
	for _, p := range mcpPaths {
		a.mcpPaths = append(a.mcpPaths, mcpPathKey(p))
	}
	return a, nil
}

// Authorize implements proxy.Authorizer.
func (a *Policy) Authorize(ctx context.Context, req *proxy.AuthzRequest) (*proxy.Decision, error) {
	id := req.Identity
	preq := policy.Request{
		AgentID:          id.Subject,
		AgentIssuedAt:    id.IssuedAt,
		AuthMethod:       id.Method,
		SubjectKind:      policy.SubjectKind(id.SubjectKind),
		DelegatedSubject: id.DelegatedSubject,
		TransactionID:    id.TransactionID,
		Tool:             a.tool,
		Host:             proxy.HostName(req.Host),
		Method:           req.Method,
		Path:             req.Path,
		Time:             time.Now(),
	}
	if a.Risk != nil {
		user := ""
		if preq.SubjectKind == policy.SubjectKindUser {
			user = id.DelegatedSubject
		}
		preq.RiskLevel, preq.AssuranceLevel = a.Risk(id.Subject, user)
	}
	preq.DelegatedClaims, preq.DelegatedIssuedAt = id.DelegatedClaims, id.DelegatedIssuedAt
	if req.Method == "POST" && a.isMCP(req.Path) {
		body, err := req.Body()
		if err != nil {
			return nil, err
		}
		msg, err := mcp.Parse(req.Header.Get("Content-Type"), body, a.maxBody)
		if err != nil {
			// The client speaks JSON-RPC: answer in it (parse error, invalid request), never pass.
			refusal := fmt.Errorf("%w: MCP request: %v", autherr.ErrMalformed, err)
			if me, ok := errors.AsType[*mcp.Error](err); ok {
				return nil, &proxy.BodyError{Err: refusal, ContentType: "application/json", Body: me.Response()}
			}
			return nil, refusal
		}
		preq.MCP = msg.Calls
		d := a.engine.Decide(ctx, preq)
		out := &proxy.Decision{Allowed: d.Allowed, PolicyIDs: d.PolicyIDs, Reason: d.String(), Risk: string(preq.RiskLevel)}
		out.MCPMethod, out.MCPName = mcpFacts(msg.Calls)
		if d.Allowed {
			return out, nil
		}
		var refusal error = fmt.Errorf("%w: %s", autherr.ErrDenied, d.String())
		if d.Reason == autherr.ErrRevoked.Code() {
			refusal = proxy.Revoked(d.RevocationID, d.String())
		}
		// The decision comes with the refusal, so the record names the call and the policies that denied it.
		return out, &proxy.BodyError{Err: refusal, ContentType: "application/json", Body: mcpRefusal(d, msg.Batch)}
	}
	d := a.engine.Decide(ctx, preq)
	out := &proxy.Decision{Allowed: d.Allowed, PolicyIDs: d.PolicyIDs, Reason: d.String(), Risk: string(preq.RiskLevel)}
	if d.Reason == autherr.ErrRevoked.Code() {
		out.Allowed = false
		return out, proxy.Revoked(d.RevocationID, d.String())
	}
	return out, nil
}

// mcpFacts are the JSON-RPC methods and the tool or prompt names (resource URIs) of an MCP body's calls, for the
// decision record; comma-separated for a batch.
func mcpFacts(calls []mcp.Call) (method, name string) {
	methods, names := make([]string, 0, len(calls)), make([]string, 0, len(calls))
	for _, c := range calls {
		methods = append(methods, c.Method)
		names = append(names, c.Name)
	}
	if strings.Join(names, "") == "" {
		names = nil
	}
	return strings.Join(methods, ","), strings.Join(names, ",")
}

// mcpRefusal is the JSON-RPC answer to a refused MCP request: an error object per call (a batch gets an array).
// A batch is all or nothing, so a call that policy allowed says it was not executed because another one was
// denied. Notifications get no answer, as JSON-RPC requires.
func mcpRefusal(d policy.Decision, batch bool) []byte {
	var out [][]byte
	for _, c := range d.PerCall {
		if c.Call.ID == nil {
			continue
		}
		if c.Allowed {
			out = append(out, mcp.JSONRPCError(c.Call.ID, mcp.CodeDenied, "not executed: another call of this batch was refused"))
			continue
		}
		out = append(out, mcp.JSONRPCError(c.Call.ID, mcp.CodeDenied, c.Err().Error()))
	}
	if !batch && len(out) == 1 {
		return out[0]
	}
	return append(append([]byte("["), bytes.Join(out, []byte(","))...), ']')
}

func (a *Policy) isMCP(path string) bool {
	return slices.Contains(a.mcpPaths, mcpPathKey(path))
}

// mcpPathKey is a path as common MCP servers route it: Express ignores letter case and a trailing slash, servlet
// containers drop ";params". "/MCP/" and "/mcp;x" reach the same MCP handler as "/mcp", so they must be decided
// as MCP calls too, not as plain POSTs.
func mcpPathKey(p string) string {
	p = urlpath.WithoutParams(p)
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return strings.ToLower(p)
}

// AllowAuthenticated is the Authorizer of an ingress with no policy: every caller the TLS and proof checks
// admitted is allowed.
type AllowAuthenticated struct{}

// Authorize implements proxy.Authorizer.
func (AllowAuthenticated) Authorize(context.Context, *proxy.AuthzRequest) (*proxy.Decision, error) {
	return &proxy.Decision{Allowed: true, Reason: "no policy configured: authenticated callers are allowed"}, nil
}

var (
	_ proxy.Authorizer = (*Policy)(nil)
	_ proxy.Authorizer = AllowAuthenticated{}
)
