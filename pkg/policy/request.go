package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/policy/mcp"
	"github.com/agentauth/agentauth/pkg/wire"
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

// SubjectKind is who a transaction's subject (its Txn-Token's sub) is to the calling agent; policies read it as
// context.subject_kind.
type SubjectKind string

const (
	SubjectKindNone   SubjectKind = ""       // no transaction (no Txn-Token): SubjectKind::"none"
	SubjectKindUser   SubjectKind = "user"   // a user the agent acts for: context.subject is that user
	SubjectKindSelf   SubjectKind = "self"   // the agent itself: nobody delegated
	SubjectKindSystem SubjectKind = "system" // another workload, which began the transaction acting for itself
)

// of is the kind of a request: the one it gives, or else a user when it names a delegated subject (as callers
// from before SubjectKind did), or none.
func (k SubjectKind) of(req *Request) SubjectKind {
	if k == SubjectKindNone && req.DelegatedSubject != "" {
		return SubjectKindUser
	}
	return k
}

// HigherRisk is the higher of two risk levels (an undefined word counts as HIGH, as in context.risk_rank).
func HigherRisk(a, b RiskLevel) RiskLevel {
	_, ra := a.rank()
	_, rb := b.rank()
	if rb > ra {
		return b
	}
	return a
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
	AuthMethod wire.AuthMethod

	// SubjectKind says who the Txn-Token's sub is to the agent, when one rode along; empty with a DelegatedSubject
	// means a user.
	SubjectKind SubjectKind
	// DelegatedSubject is the verified Txn-Token sub when someone delegated: the user (SubjectKindUser), or the
	// workload that began the transaction (SubjectKindSystem). Empty when the agent acts for itself. Only a user
	// becomes context.subject.
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

// readSet is what of a request a Set's policies read beyond its principal, action and resource entities, one bit
// each: the attributes of the Cedar context (schema.cedarschema's Context), and the tags of an MCP call's resource.
type readSet uint16

const (
	ctxHost readSet = 1 << iota
	ctxMethod
	ctxPath
	ctxAuthMethod
	ctxSubject
	ctxSubjectKind
	ctxTxn
	ctxRiskLevel
	ctxRiskRank
	ctxAssuranceLevel
	ctxTime
	ctxNow
	ctxHour
	ctxMCPMethod
	ctxAll = 1<<iota - 1 // every context attribute

	callTags readSet = ctxAll + 1 // an MCP tool's or prompt's tags (the call's arguments)
	readsAll         = ctxAll | callTags
)

// ctxAttrNamed is the attribute called name; 0 when the Context has no such attribute.
func ctxAttrNamed(name types.String) readSet {
	switch name {
	case "host":
		return ctxHost
	case "method":
		return ctxMethod
	case "path":
		return ctxPath
	case "auth_method":
		return ctxAuthMethod
	case "subject":
		return ctxSubject
	case "subject_kind":
		return ctxSubjectKind
	case "txn":
		return ctxTxn
	case "risk_level":
		return ctxRiskLevel
	case "risk_rank":
		return ctxRiskRank
	case "assurance_level":
		return ctxAssuranceLevel
	case "time":
		return ctxTime
	case "now":
		return ctxNow
	case "hour":
		return ctxHour
	case "mcp_method":
		return ctxMCPMethod
	}
	return 0
}

// maxScratch bounds the maps a prepared keeps for reuse: clearing a map costs its capacity, and one request with
// many MCP arguments must not make every later one pay for it.
const maxScratch = 32

// prepared is a Request mapped onto the model, shared by all calls of a batch. It comes from model.pool and goes
// back with release; nothing in it may reach a Decision (decisions hold strings and fresh slices only).
type prepared struct {
	ents       entities
	principals [2]types.EntityUID // agent, trust domain
	ctx        []attr             // context attributes common to every call (in ctxArr)
	want       readSet            // what the Set's policies read
	common     types.Record       // the context without mcp_method, once built
	hasCommon  bool
	toolUID    types.EntityUID
	toolName   string
	ctxArr     [13]attr

	reuse reusable // survives release
}

// reusable is what a pooled prepared keeps between requests: the maps records are built in (NewRecord copies
// them) and the candidate set with its iterator. The maps are made without a size hint because a copy has the
// layout of its original: a map of up to 8 entries is one group (two allocations to copy) unless a hint made it a
// table (four).
type reusable struct {
	ctx, args types.RecordMap
	cands     candidates
}

type attr struct {
	name  types.String
	value types.Value
}

// context is the Cedar context of one evaluation: the request's attributes that the Set's policies read, plus
// mcp_method for an MCP call when they read it. Records are immutable, so when mcp_method is not read every call
// of a batch shares one.
func (p *prepared) context(mcpMethod string) types.Record {
	withMethod := mcpMethod != "" && p.want&ctxMCPMethod != 0
	if !withMethod && p.hasCommon {
		return p.common
	}
	if p.reuse.ctx == nil {
		p.reuse.ctx = make(types.RecordMap) // no size hint: see reusable
	}
	m := p.reuse.ctx
	clear(m)
	for _, a := range p.ctx {
		m[a.name] = a.value
	}
	if withMethod {
		m["mcp_method"] = types.String(mcpMethod)
	}
	var rec types.Record // empty: NewRecord would copy an empty map for nothing
	if len(m) > 0 {
		rec = types.NewRecord(m)
	}
	if !withMethod {
		p.common, p.hasCommon = rec, true
	}
	return rec
}

// tags is the tag record of an MCP call's arguments.
func (p *prepared) tags(args map[string]string) types.Record {
	if len(args) == 0 {
		return types.Record{}
	}
	m := p.reuse.args
	if m == nil || len(args) > maxScratch {
		m = make(types.RecordMap)
		if len(args) <= maxScratch {
			p.reuse.args = m
		}
	}
	clear(m)
	for k, v := range args {
		m[types.String(k)] = types.String(v)
	}
	return types.NewRecord(m)
}

// prepare checks the fields Decide cannot do without and builds the principal, tool and subject entities and the
// context attributes in want. The caller hands the result back with release once the evaluations are done.
func (m *model) prepare(req Request, want readSet) (*prepared, error) {
	c, err := m.check(&req)
	if err != nil {
		return nil, err
	}
	p := m.pool.Get().(*prepared)
	p.toolName, p.want = c.tool, want
	p.ents.actions = m.actions
	tdUID := types.NewEntityUID(typeTrustDomain, types.String(c.td))
	p.ents.fixed[0] = types.Entity{UID: tdUID}
	p.ents.fixed[1] = m.cache.agent(req.AgentID, c.td, c.path, req.AgentAttrs)
	p.toolUID = types.NewEntityUID(typeTool, types.String(c.tool))
	p.ents.fixed[2] = types.Entity{UID: p.toolUID}
	p.ents.n = 3
	p.principals = [2]types.EntityUID{p.ents.fixed[1].UID, tdUID}
	p.ctx = m.context(p, &req, &c, want)
	return p, nil
}

// checked is what check resolved from a Request.
type checked struct {
	authMethod, subjectKind types.Value
	kind                    SubjectKind
	td, path, host, tool    string
	now                     time.Time
}

// check refuses a request without the fields Decide cannot do without and resolves the defaults: the trust
// domain from the agent's id, the tool from the host, the subject kind, the time.
func (m *model) check(req *Request) (checked, error) {
	var c checked
	if req.AgentID == "" {
		return c, fmt.Errorf("policy: %w: no authenticated agent", autherr.ErrMissing)
	}
	var ok bool
	if c.authMethod, ok = m.authMethods[req.AuthMethod]; !ok {
		return c, fmt.Errorf("policy: %w: unknown auth method %q", autherr.ErrMalformed, req.AuthMethod)
	}
	authority, path, ok := splitID(req.AgentID)
	if !ok {
		return c, fmt.Errorf("policy: %w: agent id %q is not a URI with an authority", autherr.ErrMalformed, req.AgentID)
	}
	c.path, c.td = path, req.TrustDomain
	if c.td == "" {
		c.td = authority
	}
	c.host = strings.ToLower(req.Host)
	c.tool = req.Tool
	if c.tool == "" {
		c.tool = c.host
	}
	if c.tool == "" || strings.Contains(c.tool, "/") {
		return c, fmt.Errorf("policy: %w: tool %q is empty or contains '/'", autherr.ErrMalformed, c.tool)
	}
	c.kind = req.SubjectKind.of(req)
	if c.subjectKind, ok = m.subjectKinds[c.kind]; !ok {
		return c, fmt.Errorf("policy: %w: unknown subject kind %q", autherr.ErrMalformed, c.kind)
	}
	c.now = req.Time
	if c.now.IsZero() {
		c.now = time.Now()
	}
	return c, nil
}

// context returns the context attributes in want, in p's array, and adds the delegated user's entity to p.
//
// Only the attributes some policy reads go into the context: a value put in a map is boxed, and a record
// costs per attribute (NewRecord sorts, hashes and copies), while one nobody reads cannot change a decision.
// Values from a small fixed set (auth method, risk level, known methods, cached users) are boxed once.
func (m *model) context(p *prepared, req *Request, c *checked, want readSet) []attr {
	_, rank := req.RiskLevel.rank()
	utc := c.now.UTC()
	ctx := p.ctxArr[:0]
	if want&ctxHost != 0 {
		ctx = append(ctx, attr{"host", types.String(c.host)})
	}
	if want&ctxMethod != 0 {
		ctx = append(ctx, attr{"method", m.name(req.Method)})
	}
	if want&ctxPath != 0 {
		ctx = append(ctx, attr{"path", types.String(req.Path)})
	}
	if want&ctxAuthMethod != 0 {
		ctx = append(ctx, attr{"auth_method", c.authMethod})
	}
	if want&ctxRiskLevel != 0 {
		ctx = append(ctx, attr{"risk_level", m.riskLevels[rank]})
	}
	if want&ctxRiskRank != 0 {
		ctx = append(ctx, attr{"risk_rank", types.Long(rank)})
	}
	if want&ctxTime != 0 {
		ctx = append(ctx, attr{"time", types.Long(utc.Unix())})
	}
	if want&ctxNow != 0 {
		ctx = append(ctx, attr{"now", types.NewDatetime(utc)})
	}
	if want&ctxHour != 0 {
		ctx = append(ctx, attr{"hour", types.Long(utc.Hour())})
	}
	if want&ctxSubjectKind != 0 {
		ctx = append(ctx, attr{"subject_kind", c.subjectKind})
	}
	if req.DelegatedSubject != "" && c.kind == SubjectKindUser {
		user := m.cache.user(req.DelegatedSubject, req.DelegatedClaims)
		p.ents.fixed[p.ents.n] = user.entity
		p.ents.n++
		if want&ctxSubject != 0 {
			ctx = append(ctx, attr{"subject", user.uid})
		}
	}
	if req.TransactionID != "" && want&ctxTxn != 0 {
		ctx = append(ctx, attr{"txn", types.String(req.TransactionID)})
	}
	if req.AssuranceLevel != "" && want&ctxAssuranceLevel != 0 {
		ctx = append(ctx, attr{"assurance_level", types.String(req.AssuranceLevel)})
	}
	return ctx
}

// release returns p to the pool, emptied but for its reusable storage.
func (m *model) release(p *prepared) {
	keep := p.reuse
	clear(keep.ctx)
	clear(keep.args)
	keep.cands.reset()
	*p = prepared{reuse: keep}
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
	action   types.EntityUID
	resource types.Entity // the zero Entity when the resource is the Tool itself
	context  types.Record
}

func (m *model) httpTarget(p *prepared, method string) target {
	name := method
	if !m.httpActions[name] {
		name = actionHTTPOther
	}
	return target{action: types.NewEntityUID(typeAction, types.String(name)), context: p.context("")}
}

func (m *model) mcpTarget(p *prepared, c mcp.Call) target {
	method := c.Method
	switch {
	case c.Kind == mcp.KindResponse:
		method = actionMCPResponse
	case !m.mcpActions[method] || method == actionMCPResponse:
		method = actionMCPOther
	}
	t := target{action: types.NewEntityUID(typeAction, types.String(method))}
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
		if et != typeMcpResource && p.want&callTags != 0 {
			t.resource.Tags = p.tags(c.Args)
		}
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
