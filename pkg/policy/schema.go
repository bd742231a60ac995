package policy

import (
	_ "embed"
	"fmt"
	"slices"
	"sync"

	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

//go:embed schema.cedarschema
var schemaText string

// Schema returns the Cedar schema (human-readable format) every policy is validated against.
func Schema() string { return schemaText }

// Entity type names of the model; see schema.cedarschema.
const (
	typeAgent       types.EntityType = "Agent"
	typeTrustDomain types.EntityType = "TrustDomain"
	typeUser        types.EntityType = "User"
	typeTool        types.EntityType = "Tool"
	typeMcpTool     types.EntityType = "McpTool"
	typeMcpResource types.EntityType = "McpResource"
	typeMcpPrompt   types.EntityType = "McpPrompt"
	typeAuthMethod  types.EntityType = "AuthMethod"
	typeRiskLevel   types.EntityType = "RiskLevel"
	typeSubjectKind types.EntityType = "SubjectKind"
	typeAction      types.EntityType = "Action"
)

// Actions a request maps to when its HTTP or JSON-RPC method is not one the schema lists.
const (
	actionHTTPOther   = "http_other"
	actionMCPOther    = "mcp_other"
	actionMCPResponse = "mcp_response"
	groupHTTP         = "http"
	groupMCP          = "mcp"
)

// model is the schema compiled for use: the validator for policies, the action entities (with their groups as
// parents) that every request's entity store includes, the enum values (which cedar-go's validator does not
// check inside conditions, so Compile does), and the cache of entities built for requests.
type model struct {
	validator   *validate.Validator
	actions     map[types.EntityUID]types.Entity
	httpActions map[string]bool // HTTP methods with their own action
	mcpActions  map[string]bool // JSON-RPC methods with their own action
	enums       map[types.EntityType][]types.EntityUID
	actionBits  map[types.EntityUID]uint64 // one bit per action a request can be (see actionScope)
	cache       *entityCache
	pool        *sync.Pool // of *prepared

	// Context values boxed once (a types.Value made from a string or an entity id allocates): the auth methods,
	// the risk levels by rank, the subject kinds, and every action name, which is what a known HTTP or JSON-RPC method reads as.
	authMethods  map[wire.AuthMethod]types.Value
	riskLevels   [4]types.Value
	subjectKinds map[SubjectKind]types.Value
	names        map[string]types.Value
}

// name is method as a context value.
func (m *model) name(method string) types.Value {
	if v, ok := m.names[method]; ok {
		return v
	}
	return types.String(method)
}

func loadModel() (*model, error) {
	var s schema.Schema
	s.SetFilename("schema.cedarschema")
	if err := s.UnmarshalCedar([]byte(schemaText)); err != nil {
		return nil, fmt.Errorf("policy: built-in schema does not parse: %w", err)
	}
	rs, err := s.Resolve()
	if err != nil {
		return nil, fmt.Errorf("policy: built-in schema does not resolve: %w", err)
	}
	m := &model{
		validator:   validate.New(rs, validate.WithStrict()),
		actions:     make(map[types.EntityUID]types.Entity, len(rs.Actions)),
		httpActions: map[string]bool{},
		mcpActions:  map[string]bool{},
		enums:       map[types.EntityType][]types.EntityUID{},
		actionBits:  map[types.EntityUID]uint64{},
		cache:       &entityCache{},
		pool:        &sync.Pool{New: func() any { return new(prepared) }},
		authMethods: map[wire.AuthMethod]types.Value{},
		names:       map[string]types.Value{},
	}
	for _, a := range []wire.AuthMethod{wire.AuthMTLS, wire.AuthWITWPT, wire.AuthWITHTTPSig} {
		m.authMethods[a] = types.NewEntityUID(typeAuthMethod, types.String(a))
	}
	m.subjectKinds = map[SubjectKind]types.Value{SubjectKindNone: types.NewEntityUID(typeSubjectKind, "none")}
	for _, k := range []SubjectKind{SubjectKindUser, SubjectKindSelf, SubjectKindSystem} {
		m.subjectKinds[k] = types.NewEntityUID(typeSubjectKind, types.String(k))
	}
	for _, r := range []RiskLevel{RiskUnknown, RiskLow, RiskMedium, RiskHigh} {
		level, rank := r.rank()
		m.riskLevels[rank] = types.NewEntityUID(typeRiskLevel, types.String(level))
	}
	for uid, a := range rs.Actions {
		m.actions[uid] = a.Entity
	}
	// Give every action all its groups as parents, not only the direct ones: the validator expects the action
	// hierarchy closed this way (as Cedar does), and `action in Action::"mcp"` then needs no graph walk.
	closed := make(map[types.EntityUID]types.Entity, len(m.actions))
	for uid, a := range m.actions {
		a.Parents = types.NewEntityUIDSet(m.ancestors(uid)...)
		closed[uid] = a
		m.names[string(uid.ID)] = uid.ID
	}
	m.actions = closed
	for uid, a := range rs.Actions {
		if a.AppliesTo == nil {
			continue // a group, not something a request can be
		}
		switch {
		case m.inGroup(uid, groupHTTP):
			m.httpActions[string(uid.ID)] = true
		case m.inGroup(uid, groupMCP):
			m.mcpActions[string(uid.ID)] = true
		}
		if len(m.actionBits) == 64 {
			return nil, fmt.Errorf("policy: built-in schema has more than 64 request actions")
		}
		m.actionBits[uid] = 1 << len(m.actionBits)
	}
	for et, e := range rs.Enums {
		m.enums[et] = slices.Clone(e.Values)
	}
	if !m.httpActions[actionHTTPOther] || !m.mcpActions[actionMCPOther] || !m.mcpActions[actionMCPResponse] {
		return nil, fmt.Errorf("policy: built-in schema lacks the fallback actions %s, %s or %s", actionHTTPOther, actionMCPOther, actionMCPResponse)
	}
	return m, nil
}

// inGroup reports whether action uid is (transitively) a member of the action group named group.
func (m *model) inGroup(uid types.EntityUID, group types.String) bool {
	return slices.Contains(m.ancestors(uid), types.NewEntityUID(typeAction, group))
}

// ancestors lists every action group uid is transitively in.
func (m *model) ancestors(uid types.EntityUID) []types.EntityUID {
	var out []types.EntityUID
	queue := []types.EntityUID{uid}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for p := range m.actions[cur].Parents.All() {
			if p != uid && !slices.Contains(out, p) {
				out = append(out, p)
				queue = append(queue, p)
			}
		}
	}
	return out
}
