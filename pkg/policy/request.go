package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/policy/mcp"
)

// AuthMethod is how the agent proved its identity to the ingress sidecar.
type AuthMethod string

const (
	AuthMTLS       AuthMethod = "mtls"        // X.509-SVID over mutual TLS
	AuthWITWPT     AuthMethod = "wit-wpt"     // WIMSE Workload Identity Token + Workload Proof Token
	AuthWITHTTPSig AuthMethod = "wit-httpsig" // WIMSE Workload Identity Token + HTTP Message Signature
)

// RiskLevel is a CAEP risk-level-change current_level.
type RiskLevel string

const (
	RiskUnknown RiskLevel = "" // no signal received
	RiskLow     RiskLevel = "LOW"
	RiskMedium  RiskLevel = "MEDIUM"
	RiskHigh    RiskLevel = "HIGH"
)

// rank orders risk levels for context.risk_rank. A level CAEP does not define counts as HIGH: an unknown word
// from a transmitter must not read as "no risk".
func (r RiskLevel) rank() (RiskLevel, int64) {
	switch l := RiskLevel(strings.ToUpper(string(r))); l {
	case RiskUnknown:
		return "UNKNOWN", 0
	case RiskLow:
		return l, 1
	case RiskMedium:
		return l, 2
	default:
		return RiskHigh, 3
	}
}

// Request is what the ingress sidecar verified about one HTTP request, in plain Go terms. Decide maps it onto the
// Cedar model (see Schema): the agent is the principal, the tool (or the MCP tool, resource or prompt) the
// resource, the HTTP or JSON-RPC method the action, and everything else the context.
type Request struct {
	// AgentID is the verified SPIFFE ID (or other WIMSE identifier URI) of the caller. Required.
	AgentID string
	// TrustDomain of the agent; taken from AgentID's authority when empty.
	TrustDomain string
	// AgentAttrs are string attributes from the agent's WIT and attestation; policies read them as tags.
	AgentAttrs map[string]string
	// AgentIssuedAt is when the agent's credential was issued; revocations older than it do not apply.
	AgentIssuedAt time.Time
	// AuthMethod is how the agent authenticated. Required.
	AuthMethod AuthMethod

	// DelegatedSubject is the verified Txn-Token sub, when one rode along.
	DelegatedSubject string
	// DelegatedClaims are the Txn-Token's claims as strings (policies read them as tags of the User); the
	// space-separated "scope" claim also becomes the User's scopes set.
	DelegatedClaims map[string]string
	// DelegatedIssuedAt is the Txn-Token's iat.
	DelegatedIssuedAt time.Time
	// TransactionID is the Txn-Token's txn.
	TransactionID string

	// Tool is the configured tool name of the route; the lower-cased Host when empty. It must not contain "/",
	// which separates the tool from the name in MCP entity ids.
	Tool string
	// Host, Method and Path are the HTTP request's authority, method and path (without query).
	Host, Method, Path string

	// RiskLevel is the highest current CAEP risk level of the agent and its delegated subject.
	RiskLevel RiskLevel
	// AssuranceLevel is the latest CAEP assurance-level-change current_level, if any.
	AssuranceLevel string
	// Time is when the request arrived; time.Now() when zero.
	Time time.Time

	// MCP holds the parsed JSON-RPC body (mcp.Parse) when the request is an MCP POST. Each call is then decided
	// on its own instead of the HTTP method.
	MCP []mcp.Call
}

// prepared is a Request mapped onto the model, shared by all calls of a batch.
type prepared struct {
	ents       entities
	principals []types.EntityUID // agent, trust domain
	ctx        []attr            // context attributes common to every call
	toolUID    types.EntityUID
	toolName   string

	// Backing storage, reused through model.pool: a prepared request and the map its contexts are built in
	// (NewRecord copies it) are the largest allocations of a decision.
	principalsArr [2]types.EntityUID
	ctxArr        [12]attr
	scratch       types.RecordMap
}

type attr struct {
	name  types.String
	value types.Value
}

// context builds the Cedar context of one evaluation. Records are immutable and NewRecord copies its map, so the
// common attributes are kept as a list and each context is built once, in one map.
func (p *prepared) context(mcpMethod string) types.Record {
	if p.scratch == nil {
		p.scratch = make(types.RecordMap, len(p.ctx)+1)
	}
	m := p.scratch
	clear(m)
	for _, a := range p.ctx {
		m[a.name] = a.value
	}
	if mcpMethod != "" {
		m["mcp_method"] = types.String(mcpMethod)
	}
	return types.NewRecord(m)
}

// prepare checks the fields Decide cannot do without and builds the principal, tool and subject entities. The
// caller hands the result back with release once the evaluations are done.
func (m *model) prepare(req Request) (*prepared, error) {
	if req.AgentID == "" {
		return nil, fmt.Errorf("policy: %w: no authenticated agent", autherr.ErrMissing)
	}
	switch req.AuthMethod {
	case AuthMTLS, AuthWITWPT, AuthWITHTTPSig:
	default:
		return nil, fmt.Errorf("policy: %w: unknown auth method %q", autherr.ErrMalformed, req.AuthMethod)
	}
	authority, path, ok := splitID(req.AgentID)
	if !ok {
		return nil, fmt.Errorf("policy: %w: agent id %q is not a URI with an authority", autherr.ErrMalformed, req.AgentID)
	}
	td := req.TrustDomain
	if td == "" {
		td = authority
	}
	host := strings.ToLower(req.Host)
	tool := req.Tool
	if tool == "" {
		tool = host
	}
	if tool == "" || strings.Contains(tool, "/") {
		return nil, fmt.Errorf("policy: %w: tool %q is empty or contains '/'", autherr.ErrMalformed, tool)
	}
	now := req.Time
	if now.IsZero() {
		now = time.Now()
	}

	p := m.pool.Get().(*prepared)
	*p = prepared{toolName: tool, scratch: p.scratch}
	p.ents.actions = m.actions
	tdUID := types.NewEntityUID(typeTrustDomain, types.String(td))
	p.ents.fixed[0] = types.Entity{UID: tdUID}
	p.ents.fixed[1] = m.cache.agent(req.AgentID, td, path, req.AgentAttrs)
	p.toolUID = types.NewEntityUID(typeTool, types.String(tool))
	p.ents.fixed[2] = types.Entity{UID: p.toolUID}
	p.ents.n = 3
	p.principalsArr = [2]types.EntityUID{p.ents.fixed[1].UID, tdUID}
	p.principals = p.principalsArr[:]

	level, rank := req.RiskLevel.rank()
	utc := now.UTC()
	p.ctx = append(p.ctxArr[:0],
		attr{"host", types.String(host)},
		attr{"method", types.String(req.Method)},
		attr{"path", types.String(req.Path)},
		attr{"auth_method", types.NewEntityUID(typeAuthMethod, types.String(req.AuthMethod))},
		attr{"risk_level", types.NewEntityUID(typeRiskLevel, types.String(level))},
		attr{"risk_rank", types.Long(rank)},
		attr{"time", types.Long(utc.Unix())},
		attr{"now", types.NewDatetime(utc)},
		attr{"hour", types.Long(utc.Hour())},
	)
	if req.DelegatedSubject != "" {
		user := m.cache.user(req.DelegatedSubject, req.DelegatedClaims)
		p.ents.fixed[p.ents.n] = user
		p.ents.n++
		p.ctx = append(p.ctx, attr{"subject", user.UID})
	}
	if req.TransactionID != "" {
		p.ctx = append(p.ctx, attr{"txn", types.String(req.TransactionID)})
	}
	if req.AssuranceLevel != "" {
		p.ctx = append(p.ctx, attr{"assurance_level", types.String(req.AssuranceLevel)})
	}
	return p, nil
}

// release returns p to the pool. Nothing of p outlives a decision: cedar keeps no reference to its entities or
// context, and decisions copy the strings they report.
func (m *model) release(p *prepared) {
	clear(p.scratch)
	*p = prepared{scratch: p.scratch}
	m.pool.Put(p)
}

// splitID splits a workload identifier URI (spiffe://td/path, or another WIMSE URI) into its authority (the trust
// domain) and path. The id was verified before it got here; this only needs to find the parts.
func splitID(id string) (authority, path string, ok bool) {
	i := strings.Index(id, "://")
	if i <= 0 {
		return "", "", false
	}
	rest := id[i+3:]
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		authority, path = rest[:j], rest[j:]
		if k := strings.IndexAny(path, "?#"); k >= 0 {
			path = path[:k]
		}
	} else {
		authority = rest
	}
	return authority, path, authority != ""
}

// target is the action and resource of one evaluation: the HTTP request itself, or one MCP call.
type target struct {
	action    types.EntityUID
	resource  types.Entity // the zero Entity when the resource is the Tool itself
	resources []types.EntityUID
	context   types.Record
}

func (m *model) httpTarget(p *prepared, method string) target {
	name := method
	if !m.httpActions[name] {
		name = actionHTTPOther
	}
	return target{
		action:    types.NewEntityUID(typeAction, types.String(name)),
		resources: []types.EntityUID{p.toolUID},
		context:   p.context(""),
	}
}

func (m *model) mcpTarget(p *prepared, c mcp.Call) target {
	method := c.Method
	switch {
	case c.Kind == mcp.KindResponse:
		method = actionMCPResponse
	case !m.mcpActions[method] || method == actionMCPResponse:
		method = actionMCPOther
	}
	t := target{action: types.NewEntityUID(typeAction, types.String(method)), resources: []types.EntityUID{p.toolUID}}
	var et types.EntityType
	switch c.Target {
	case mcp.TargetTool:
		et = typeMcpTool
	case mcp.TargetPrompt:
		et = typeMcpPrompt
	case mcp.TargetResource:
		et = typeMcpResource
	}
	if et != "" && method != actionMCPOther {
		t.resource = m.cache.target(et, p.toolUID, c.Name)
		if et != typeMcpResource {
			t.resource.Tags = stringRecord(c.Args)
		}
		t.resources = []types.EntityUID{t.resource.UID, p.toolUID}
	}
	t.context = p.context(c.Method)
	return t
}

// entities is the entity store of one request: a handful of entities built for it plus the schema's actions.
// A switch over four or five UIDs beats building a map per request.
type entities struct {
	fixed   [4]types.Entity // trust domain, agent, tool, user
	n       int
	extra   types.Entity // the MCP tool, resource or prompt of the current call, if any
	actions map[types.EntityUID]types.Entity
}

func (e *entities) Get(uid types.EntityUID) (types.Entity, bool) {
	for i := range e.n {
		if e.fixed[i].UID == uid {
			return e.fixed[i], true
		}
	}
	if e.extra.UID == uid && uid.Type != "" {
		return e.extra, true
	}
	a, ok := e.actions[uid]
	return a, ok
}

func stringRecord(m map[string]string) types.Record {
	if len(m) == 0 {
		return types.Record{}
	}
	rm := make(types.RecordMap, len(m))
	for k, v := range m {
		rm[types.String(k)] = types.String(v)
	}
	return types.NewRecord(rm)
}
