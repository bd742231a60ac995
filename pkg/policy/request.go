package policy

import (
	"fmt"
	"net/url"
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

	// Tool is the configured tool name of the route; the lower-cased Host when empty.
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
	ctx        types.RecordMap   // context without mcp_method
	toolUID    types.EntityUID
	toolName   string
	host       string
}

// prepare checks the fields Decide cannot do without and builds the principal, tool and subject entities.
func (m *model) prepare(req Request) (*prepared, error) {
	if req.AgentID == "" {
		return nil, fmt.Errorf("policy: %w: no authenticated agent", autherr.ErrMissing)
	}
	switch req.AuthMethod {
	case AuthMTLS, AuthWITWPT, AuthWITHTTPSig:
	default:
		return nil, fmt.Errorf("policy: %w: unknown auth method %q", autherr.ErrMalformed, req.AuthMethod)
	}
	u, err := url.Parse(req.AgentID)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("policy: %w: agent id %q is not a URI", autherr.ErrMalformed, req.AgentID)
	}
	td := req.TrustDomain
	if td == "" {
		td = u.Host
	}
	if td == "" {
		return nil, fmt.Errorf("policy: %w: agent id %q has no trust domain", autherr.ErrMalformed, req.AgentID)
	}
	host := strings.ToLower(req.Host)
	tool := req.Tool
	if tool == "" {
		tool = host
	}
	if tool == "" {
		return nil, fmt.Errorf("policy: %w: request names no tool or host", autherr.ErrMalformed)
	}
	now := req.Time
	if now.IsZero() {
		now = time.Now()
	}

	p := &prepared{host: host, toolName: tool}
	p.ents.actions = m.actions
	tdUID := types.NewEntityUID(typeTrustDomain, types.String(td))
	p.ents.fixed[0] = types.Entity{UID: tdUID}
	p.ents.fixed[1] = types.Entity{
		UID:     types.NewEntityUID(typeAgent, types.String(req.AgentID)),
		Parents: types.NewEntityUIDSet(tdUID),
		Attributes: types.NewRecord(types.RecordMap{
			"trust_domain": types.String(td),
			"path":         types.String(u.EscapedPath()),
		}),
		Tags: stringRecord(req.AgentAttrs),
	}
	p.toolUID = types.NewEntityUID(typeTool, types.String(tool))
	p.ents.fixed[2] = types.Entity{UID: p.toolUID, Attributes: types.NewRecord(types.RecordMap{"host": types.String(host)})}
	p.ents.n = 3
	p.principals = []types.EntityUID{p.ents.fixed[1].UID, tdUID}

	level, rank := req.RiskLevel.rank()
	utc := now.UTC()
	p.ctx = types.RecordMap{
		"host":        types.String(host),
		"method":      types.String(req.Method),
		"path":        types.String(req.Path),
		"auth_method": types.NewEntityUID(typeAuthMethod, types.String(req.AuthMethod)),
		"risk_level":  types.NewEntityUID(typeRiskLevel, types.String(level)),
		"risk_rank":   types.Long(rank),
		"time":        types.Long(utc.Unix()),
		"now":         types.NewDatetime(utc),
		"hour":        types.Long(utc.Hour()),
	}
	if req.DelegatedSubject != "" {
		scopes := strings.Fields(req.DelegatedClaims["scope"])
		set := make([]types.Value, len(scopes))
		for i, s := range scopes {
			set[i] = types.String(s)
		}
		user := types.Entity{
			UID:        types.NewEntityUID(typeUser, types.String(req.DelegatedSubject)),
			Attributes: types.NewRecord(types.RecordMap{"scopes": types.NewSet(set...)}),
			Tags:       stringRecord(req.DelegatedClaims),
		}
		p.ents.fixed[p.ents.n] = user
		p.ents.n++
		p.ctx["subject"] = user.UID
	}
	if req.TransactionID != "" {
		p.ctx["txn"] = types.String(req.TransactionID)
	}
	if req.AssuranceLevel != "" {
		p.ctx["assurance_level"] = types.String(req.AssuranceLevel)
	}
	return p, nil
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
	if !m.httpActions[name] || name == actionHTTPOther {
		name = actionHTTPOther
	}
	return target{
		action:    types.NewEntityUID(typeAction, types.String(name)),
		resources: []types.EntityUID{p.toolUID},
		context:   types.NewRecord(p.ctx),
	}
}

func (m *model) mcpTarget(p *prepared, c mcp.Call) target {
	method := c.Method
	if c.Kind == mcp.KindResponse {
		method = actionMCPResponse
	} else if !m.mcpActions[method] || method == actionMCPOther || method == actionMCPResponse {
		method = actionMCPOther
	}
	t := target{action: types.NewEntityUID(typeAction, types.String(method)), resources: []types.EntityUID{p.toolUID}}
	var et types.EntityType
	attrs := types.RecordMap{"host": types.String(p.host)}
	switch c.Target {
	case mcp.TargetTool:
		et, attrs["name"] = typeMcpTool, types.String(c.Name)
	case mcp.TargetPrompt:
		et, attrs["name"] = typeMcpPrompt, types.String(c.Name)
	case mcp.TargetResource:
		et, attrs["uri"] = typeMcpResource, types.String(c.Name)
	}
	if et != "" && method != actionMCPOther {
		t.resource = types.Entity{
			UID:        types.NewEntityUID(et, types.String(p.toolName+"/"+c.Name)),
			Parents:    types.NewEntityUIDSet(p.toolUID),
			Attributes: types.NewRecord(attrs),
		}
		if et != typeMcpResource {
			t.resource.Tags = stringRecord(c.Args)
		}
		t.resources = []types.EntityUID{t.resource.UID, p.toolUID}
	}
	ctx := make(types.RecordMap, len(p.ctx)+1)
	for k, v := range p.ctx {
		ctx[k] = v
	}
	ctx["mcp_method"] = types.String(c.Method)
	t.context = types.NewRecord(ctx)
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
