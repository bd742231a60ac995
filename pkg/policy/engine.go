package policy

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/policy/mcp"
	"github.com/agentauth/agentauth/pkg/revocation"
)

// Subject kinds a Revocations implementation is asked about.
const (
	SubjectAgent = string(revocation.ClassAgent) // Request.AgentID, issued at AgentIssuedAt
	SubjectUser  = string(revocation.ClassUser)  // Request.DelegatedSubject, issued at DelegatedIssuedAt
	SubjectTxn   = string(revocation.ClassTxn)   // Request.TransactionID, issued at DelegatedIssuedAt
)

// Revocations is the revocation state the controller pushes to the sidecar (from SSF/CAEP/RISC events),
// kept apart from policy. Revoked reports whether the subject is revoked for a credential issued at issuedAt
// (the zero time when unknown) and the id of the revocation, which Decide reports as the reason. It is called
// on every decision, so it must answer from memory; if it cannot answer it must report revoked (fail closed).
type Revocations interface {
	Revoked(ctx context.Context, kind, value string, issuedAt time.Time) (id string, revoked bool)
}

// RevocationsFunc adapts a function to Revocations.
type RevocationsFunc func(ctx context.Context, kind, value string, issuedAt time.Time) (string, bool)

// Revoked calls f.
func (f RevocationsFunc) Revoked(ctx context.Context, kind, value string, issuedAt time.Time) (string, bool) {
	return f(ctx, kind, value, issuedAt)
}

// Decision is the answer for one Request.
type Decision struct {
	// Allowed is true only when every evaluation (the HTTP request, or every MCP call) was allowed.
	Allowed bool
	// PolicyIDs are the determining policies: the permits that allowed, or the forbids that denied. A deny
	// with no ids means no policy permitted (default deny) or a revocation denied.
	PolicyIDs []string
	// Reason is empty when allowed, else an autherr code: "policy_denied", "revoked", "credential_missing"
	// or "malformed".
	Reason string
	// RevocationID is the revocation that denied, when Reason is "revoked".
	RevocationID string
	// Errors are policy evaluation errors (policy id, position, message). An erroring permit does not permit;
	// an erroring forbid denies.
	Errors []string
	// PerCall is each MCP call's decision, in body order, when the request carried MCP calls. A caller
	// forwards the allowed calls and answers each denied one with its JSONRPCError().
	PerCall []CallDecision
	// Candidates is how many policies were evaluated after indexing (summed over calls).
	Candidates int

	why why // for a request without MCP calls, or a deny outside policy
}

// CallDecision is the answer for one MCP call of a body.
type CallDecision struct {
	Call      mcp.Call
	Allowed   bool
	PolicyIDs []string
	Reason    string
	Errors    []string
	why       why
}

// why holds what a decision message is made of; the message is only built when someone asks (String, Err,
// Explain).
type why struct {
	text               string // a fixed message (revocation, bad request, no set); the rest is unused then
	agent, action      string
	resource           types.EntityUID
	ids                []string
	forbidden, allowed bool
}

// String is the message. It is built by hand, not with fmt, because the sidecar asks for it on every request
// (for its reason and decision log), and fmt with cedar-go's EntityUID.String cost some thirty allocations.
func (w why) String() string {
	if w.text != "" {
		return w.text
	}
	var b strings.Builder
	b.Grow(w.size())
	w.writeTo(&b)
	return b.String()
}

func (w why) size() int {
	n := len(w.text) + len(w.agent) + len(w.action) + len(w.resource.Type) + len(w.resource.ID) + 32
	for _, id := range w.ids {
		n += len(id) + 1
	}
	return n
}

func (w why) writeTo(b *strings.Builder) {
	if w.text != "" {
		b.WriteString(w.text)
		return
	}
	if w.allowed || w.forbidden {
		b.WriteByte('[')
		for i, id := range w.ids {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(id)
		}
		b.WriteString("] ")
		if w.allowed {
			b.WriteString("permits ")
		} else {
			b.WriteString("forbids ")
		}
	} else {
		b.WriteString("no policy permits ")
	}
	b.WriteString(w.agent)
	b.WriteString(" to ")
	b.WriteString(w.action)
	b.WriteString(" on ")
	writeUID(b, w.resource)
}

// writeUID writes uid as EntityUID.String does, minus its rune-by-rune escaping when the id needs none.
func writeUID(b *strings.Builder, uid types.EntityUID) {
	for i := range len(uid.ID) {
		if c := uid.ID[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\'' || c == '\\' {
			b.WriteString(uid.String())
			return
		}
	}
	b.WriteString(string(uid.Type))
	b.WriteString(`::"`)
	b.WriteString(string(uid.ID))
	b.WriteByte('"')
}

// String explains the decision in one line: its determining policies, or for an MCP body those of every call
// (every denied call, when it was denied). It is what Err carries and what an audit record can quote.
func (d Decision) String() string {
	if len(d.PerCall) == 0 || d.why.text != "" {
		return d.why.String()
	}
	n := 0
	for _, c := range d.PerCall {
		n += c.why.size() + 12
	}
	var b strings.Builder
	b.Grow(n)
	for i, c := range d.PerCall {
		if d.Allowed || !c.Allowed {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString("call ")
			b.WriteString(strconv.Itoa(i))
			b.WriteString(": ")
			c.why.writeTo(&b)
		}
	}
	return b.String()
}

// Err is nil when the decision allows, else an error wrapping the autherr reason with a precise message.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return fmt.Errorf("policy: %w: %s", reasonErr(d.Reason), d)
}

// reasonErr is the sentinel for one of the reason codes a Decision carries.
func reasonErr(code string) error {
	switch code {
	case autherr.ErrRevoked.Code():
		return autherr.ErrRevoked
	case autherr.ErrMissing.Code():
		return autherr.ErrMissing
	case autherr.ErrMalformed.Code():
		return autherr.ErrMalformed
	}
	return autherr.ErrDenied
}

// Err is nil when the call is allowed, else an error wrapping the autherr reason.
func (c CallDecision) Err() error {
	if c.Allowed {
		return nil
	}
	return fmt.Errorf("policy: %w: %s", reasonErr(c.Reason), c.why)
}

// JSONRPCError is the JSON-RPC error object answering a denied call.
func (c CallDecision) JSONRPCError() []byte {
	return mcp.JSONRPCError(c.Call.ID, mcp.CodeDenied, "forbidden: "+c.Reason)
}

// Engine decides requests against the current policy Set. The Set sits behind an atomic pointer: Swap installs
// a new one (when the controller pushes policies) without locking readers; in-flight decisions finish on the
// Set they started with. An Engine with no Set denies everything.
type Engine struct {
	set  atomic.Pointer[Set]
	revs Revocations
}

// Option configures an Engine.
type Option func(*Engine)

// WithRevocations makes every decision consult r before policy: a revoked agent, delegated subject or
// transaction is denied whatever the policies say.
func WithRevocations(r Revocations) Option { return func(e *Engine) { e.revs = r } }

// NewEngine returns an Engine deciding with set (which may be nil: deny all until Swap).
func NewEngine(set *Set, opts ...Option) *Engine {
	e := &Engine{}
	for _, o := range opts {
		o(e)
	}
	e.set.Store(set)
	return e
}

// Swap installs set and returns the previous one. Compile is where bad policies are caught; Swap never fails.
func (e *Engine) Swap(set *Set) *Set { return e.set.Swap(set) }

// Set returns the Set in use (nil if none).
func (e *Engine) Set() *Set { return e.set.Load() }

// Decide answers req: revocation first, then policy, default deny.
func (e *Engine) Decide(ctx context.Context, req Request) Decision {
	if e.revs != nil {
		if d, revoked := e.checkRevoked(ctx, req); revoked {
			return d
		}
	}
	set := e.set.Load()
	if set == nil {
		return denyAll(req, autherr.ErrDenied.Code(), "no policy set loaded")
	}
	return set.decide(req)
}

// checkRevoked is an explicit pre-check rather than a generated forbid policy: revocation state changes on its
// own schedule (one SSF event at a time), must deny regardless of policy, and has its own reason and id that
// belong in the audit record.
func (e *Engine) checkRevoked(ctx context.Context, req Request) (Decision, bool) {
	call := revocation.Call{Agent: req.AgentID, AgentIssuedAt: req.AgentIssuedAt,
		Delegated: req.DelegatedSubject, DelegatedIssuedAt: req.DelegatedIssuedAt, Txn: req.TransactionID,
		// The workload that began a transaction for itself (a system subject) is revoked as an agent.
		DelegatedIsAgent: req.SubjectKind.of(&req) == SubjectKindSystem}
	for _, c := range call.Checks() {
		if id, revoked := e.revs.Revoked(ctx, string(c.Class), c.Value, c.IssuedAt); revoked {
			d := denyAll(req, autherr.ErrRevoked.Code(), fmt.Sprintf("%s %q is revoked (%s)", c.Class, c.Value, id))
			d.RevocationID = id
			return d, true
		}
	}
	return Decision{}, false
}

// denyAll is a deny of the whole request, each MCP call included, for a reason outside policy.
func denyAll(req Request, reason, msg string) Decision {
	d := Decision{Reason: reason, why: why{text: msg}}
	for _, c := range req.MCP {
		d.PerCall = append(d.PerCall, CallDecision{Call: c, Reason: reason, why: why{text: msg}})
	}
	return d
}

// decide evaluates req against s, without revocations.
func (s *Set) decide(req Request) Decision {
	p, err := s.model.prepare(req, s.reads)
	if err != nil {
		return denyAll(req, autherr.Code(err), err.Error())
	}
	defer s.model.release(p)
	if len(req.MCP) == 0 {
		r := s.eval(p, s.model.httpTarget(p, req.Method))
		return Decision{Allowed: r.why.allowed, PolicyIDs: r.why.ids, Reason: r.reason(), Errors: r.errors,
			Candidates: r.candidates, why: r.why}
	}
	d := Decision{Allowed: true, PerCall: make([]CallDecision, len(req.MCP))}
	for i, c := range req.MCP {
		r := s.eval(p, s.model.mcpTarget(p, c))
		d.PerCall[i] = CallDecision{Call: c, Allowed: r.why.allowed, PolicyIDs: r.why.ids, Reason: r.reason(),
			Errors: r.errors, why: r.why}
		d.Candidates += r.candidates
		d.Errors = append(d.Errors, r.errors...)
		d.Allowed = d.Allowed && r.why.allowed
	}
	if !d.Allowed {
		d.Reason = autherr.ErrDenied.Code()
	}
	d.PolicyIDs = determining(d.PerCall, d.Allowed)
	return d
}

// determining is the determining policies of an MCP request: those of every call when it is allowed, else those
// of its denied calls; sorted, each once.
func determining(calls []CallDecision, allowed bool) []string {
	if len(calls) == 1 {
		// The call's ids are sorted and distinct already (a policy is a reason or an error, never both). Clipped,
		// so an append to one of the two slices cannot write into the other.
		return slices.Clip(calls[0].PolicyIDs)
	}
	var ids []string
	for _, c := range calls {
		if c.Allowed == allowed {
			ids = append(ids, c.PolicyIDs...)
		}
	}
	return sortedUnique(ids)
}

// result is one cedar evaluation.
type result struct {
	why        why
	errors     []string
	candidates int
}

func (r result) reason() string {
	if r.why.allowed {
		return ""
	}
	return autherr.ErrDenied.Code()
}

func (s *Set) eval(p *prepared, t target) result {
	p.ents.extra = t.resource
	resource := p.toolUID
	resources := [2]types.EntityUID{p.toolUID} // the resource and its ancestors
	n := 1
	if t.resource.UID.Type != "" {
		resource = t.resource.UID
		resources, n = [2]types.EntityUID{resource, p.toolUID}, 2
	}
	cands := &p.reuse.cands
	s.selectFor(cands, p.principals[:], s.model.actionBits[t.action], resources[:n])
	dec, diag := cedar.Authorize(cands, &p.ents, cedar.Request{
		Principal: p.principals[0],
		Action:    t.action,
		Resource:  resource,
		Context:   t.context,
	})
	r := result{candidates: cands.evaluated}
	r.why = why{allowed: dec == cedar.Allow, agent: string(p.principals[0].ID), action: string(t.action.ID), resource: resource}
	for _, reason := range diag.Reasons {
		r.why.ids = append(r.why.ids, string(reason.PolicyID))
	}
	// Cedar skips a policy whose evaluation errors. For a forbid that would turn an error into an allow, so
	// here an erroring forbid denies. (Schema validation makes such errors rare: overflow, bad extension input.)
	var failedForbids []string
	for _, e := range diag.Errors {
		c := s.policies[e.PolicyID]
		r.errors = append(r.errors, fmt.Sprintf("policy %s (%s:%d:%d): %s", e.PolicyID, c.info.File, c.info.Line, c.info.Column, e.Message))
		if c.forbid {
			failedForbids = append(failedForbids, string(e.PolicyID))
		}
	}
	switch {
	case len(failedForbids) > 0:
		if r.why.allowed {
			r.why.ids = nil // the permits did not determine a deny
		}
		r.why.allowed, r.why.forbidden = false, true
		r.why.ids = append(r.why.ids, failedForbids...)
	case dec == cedar.Deny && len(r.why.ids) > 0:
		r.why.forbidden = true
	}
	slices.Sort(r.why.ids)
	return r
}

func sortedUnique(ids []string) []string {
	slices.Sort(ids)
	return slices.Compact(ids)
}
