package policy

import (
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go/types"
)

// maxCached bounds each entity cache. Agents and subjects come from verified credentials and MCP names from
// authenticated agents, but none of them is trusted to be few.
const maxCached = 4096

// entityCache keeps the Cedar entities a Set builds for requests, because building one is most of the cost of a
// decision: cedar-go's NewRecord sorts and hashes every attribute. The same agents, users and MCP tools come back
// request after request. Entries are immutable and checked against the request before use, so a hit is exactly
// the entity prepare would have built; lookups do not lock.
type entityCache struct {
	agents  sync.Map // agent ID → *agentEntry
	users   sync.Map // subject → *userEntry
	targets sync.Map // targetKey → *types.Entity (without tags)
	n       atomic.Int64
}

type agentEntry struct {
	trustDomain string
	attrs       map[string]string
	entity      types.Entity
}

type userEntry struct {
	claims map[string]string
	entity types.Entity
	uid    types.Value // entity.UID, boxed once for the context's subject
}

type targetKey struct {
	typ        types.EntityType
	tool, name string
}

func (c *entityCache) store(m *sync.Map, k, v any) {
	if c.n.Load() < maxCached*3 {
		if _, loaded := m.LoadOrStore(k, v); !loaded {
			c.n.Add(1)
		}
	}
}

func (c *entityCache) agent(id, td, path string, attrs map[string]string) types.Entity {
	if v, ok := c.agents.Load(id); ok {
		if e := v.(*agentEntry); e.trustDomain == td && maps.Equal(e.attrs, attrs) {
			return e.entity
		}
	}
	tdUID := types.NewEntityUID(typeTrustDomain, types.String(td))
	ent := types.Entity{
		UID:     types.NewEntityUID(typeAgent, types.String(id)),
		Parents: types.NewEntityUIDSet(tdUID),
		Attributes: types.NewRecord(types.RecordMap{
			"trust_domain": types.String(td),
			"path":         types.String(path),
		}),
		Tags: stringRecord(attrs),
	}
	c.store(&c.agents, id, &agentEntry{trustDomain: td, attrs: maps.Clone(attrs), entity: ent})
	return ent
}

func (c *entityCache) user(subject string, claims map[string]string) *userEntry {
	if v, ok := c.users.Load(subject); ok {
		if e := v.(*userEntry); maps.Equal(e.claims, claims) {
			return e
		}
	}
	scopes := strings.Fields(claims["scope"])
	set := make([]types.Value, len(scopes))
	for i, s := range scopes {
		set[i] = types.String(s)
	}
	ent := types.Entity{
		UID:        types.NewEntityUID(typeUser, types.String(subject)),
		Attributes: types.NewRecord(types.RecordMap{"scopes": types.NewSet(set...)}),
		Tags:       stringRecord(claims),
	}
	e := &userEntry{claims: maps.Clone(claims), entity: ent, uid: ent.UID}
	c.store(&c.users, subject, e)
	return e
}

// target is the MCP tool, prompt or resource name inside tool, without tags (they are the call's arguments).
func (c *entityCache) target(typ types.EntityType, tool types.EntityUID, name string) types.Entity {
	k := targetKey{typ, string(tool.ID), name}
	if v, ok := c.targets.Load(k); ok {
		return *v.(*types.Entity)
	}
	attr := types.String("name")
	if typ == typeMcpResource {
		attr = "uri"
	}
	ent := types.Entity{
		UID:        types.NewEntityUID(typ, types.String(k.tool+"/"+name)),
		Parents:    types.NewEntityUIDSet(tool),
		Attributes: types.NewRecord(types.RecordMap{attr: types.String(name)}),
	}
	c.store(&c.targets, k, &ent)
	return ent
}
