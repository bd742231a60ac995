package policy

import (
	"iter"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// The index. cedar.Authorize evaluates every policy it is given, so with 10,000 policies a request would pay for
// 10,000 evaluations. But a policy whose principal or resource scope names an entity can only match a request
// whose principal (or resource) is that entity or a descendant of it, and Decide builds the entity store itself,
// so it knows every request's principal and resource ancestry exactly. Policies are therefore bucketed by the
// entity their principal scope and resource scope name (or by "any" when the scope names no entity: `principal`,
// `principal is Agent`), and a request evaluates only the buckets its own entities and their ancestors select.
// A policy outside those buckets has a scope that is false for the request, which in Cedar makes the policy
// false without evaluating its conditions, so skipping it changes neither the decision nor the diagnostics.

// The action scope is handled apart. Which request actions a policy's action scope admits is known at Compile
// time (the action hierarchy is the schema's), so Compile records it as a bit set and removes the scope from the
// policy Cedar evaluates; candidates then yields only the policies that admit the request's action. For those the
// scope is true, and in Cedar it can neither error nor bind anything, so the answer is the same, minus the work
// cedar-go does for `action in [...]` on every evaluation (it builds a set).

// actionScope is the set of request actions p's action scope admits, and p without that scope. A scope of a form
// it does not know is left in place, admitting every action.
func (m *model) actionScope(p *cedar.Policy) (uint64, *cedar.Policy) {
	a := (*xast.Policy)(p.AST())
	var in []types.EntityUID // the action is one of these or a descendant of one
	switch s := a.Action.(type) {
	case xast.ScopeTypeEq:
		var bits uint64
		if b, ok := m.actionBits[s.Entity]; ok {
			bits = b
		}
		return bits, m.withoutActionScope(a)
	case xast.ScopeTypeIn:
		in = []types.EntityUID{s.Entity}
	case xast.ScopeTypeInSet:
		in = s.Entities
	default:
		return allActions, p
	}
	var bits uint64
	for act, b := range m.actionBits {
		for _, e := range in {
			if act == e || m.actions[act].Parents.Contains(e) { // parents are closed: all the groups
				bits |= b
			}
		}
	}
	return bits, m.withoutActionScope(a)
}

func (m *model) withoutActionScope(a *xast.Policy) *cedar.Policy {
	cp := *a
	cp.Action = xast.ScopeTypeAll{}
	return cedar.NewPolicyFromAST((*ast.Policy)(&cp))
}

// scopeKey is the bucket of a policy: the entity its principal and its resource scope name; the zero EntityUID
// stands for "any".
type scopeKey struct {
	principal, resource types.EntityUID
}

func keyOf(p *xast.Policy) scopeKey {
	return scopeKey{principal: scopeEntity(p.Principal), resource: scopeEntity(p.Resource)}
}

func scopeEntity(n xast.IsScopeNode) types.EntityUID {
	switch s := n.(type) {
	case xast.ScopeTypeEq:
		return s.Entity
	case xast.ScopeTypeIn:
		return s.Entity
	case xast.ScopeTypeIsIn:
		return s.Entity
	}
	return types.EntityUID{}
}

// maxAncestry is the most keys one side of a request can have: the entity, its parents, and "any".
// Agent → TrustDomain; McpTool/McpResource/McpPrompt → Tool.
const maxAncestry = 3

// candidates is the subset of a Set that can match one request: the policies in the buckets its principal and
// resource select whose action scope admits its action. It implements cedar.PolicyIterator. A pooled prepared
// request holds one, so neither it nor its iterator is allocated per decision.
type candidates struct {
	buckets   [maxAncestry * maxAncestry][]*compiled
	n         int
	action    uint64                                   // the request's action, as a bit of model.actionBits
	evaluated int                                      // how many policies the last iteration yielded
	seq       iter.Seq2[cedar.PolicyID, *cedar.Policy] // c.each, bound once
}

// selectFor fills c with the buckets for a request whose principal and resource have the given ancestries (each
// the entity itself followed by its ancestors, distinct, at most maxAncestry-1 long), and its action.
func (s *Set) selectFor(c *candidates, principals []types.EntityUID, action uint64, resources []types.EntityUID) {
	c.n, c.action, c.evaluated = 0, action, 0
	for i := 0; i <= len(principals); i++ {
		var k scopeKey // zero: "any"
		if i < len(principals) {
			k.principal = principals[i]
		}
		for j := 0; j <= len(resources); j++ {
			k.resource = types.EntityUID{}
			if j < len(resources) {
				k.resource = resources[j]
			}
			if b := s.index[k]; len(b) > 0 {
				c.buckets[c.n] = b
				c.n++
			}
		}
	}
}

func (c *candidates) reset() {
	clear(c.buckets[:c.n])
	c.n = 0
}

// All yields every candidate policy once.
func (c *candidates) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	if c.seq == nil {
		c.seq = c.each // a method value allocates: once per candidates, not per call
	}
	return c.seq
}

func (c *candidates) each(yield func(cedar.PolicyID, *cedar.Policy) bool) {
	c.evaluated = 0
	for _, b := range c.buckets[:c.n] {
		for _, p := range b {
			if p.actions&c.action == 0 {
				continue
			}
			c.evaluated++
			if !yield(p.id, p.policy) {
				return
			}
		}
	}
}
