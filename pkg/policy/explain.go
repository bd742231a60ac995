package policy

import (
	"fmt"
	"strings"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Explanation is a dry-run answer: would a request be allowed by a Set, and by which policies.
type Explanation struct {
	Decision Decision
	// Policies are the determining policies of the decision (all calls), with their source position.
	Policies []PolicyInfo
	// Version is the Set's Version.
	Version string
}

// Explain decides req against set alone — no revocation state — and says why. It is what a CLI's dry run shows
// an author: "would this request be allowed, and by which policy?".
func Explain(set *Set, req Request) Explanation {
	if set == nil {
		return Explanation{Decision: denyAll(req, autherr.ErrDenied.Code(), "no policy set loaded")}
	}
	ex := Explanation{Decision: set.decide(req), Version: set.Version()}
	ids := ex.Decision.PolicyIDs
	for _, c := range ex.Decision.PerCall {
		ids = append(ids, c.PolicyIDs...)
	}
	for _, id := range sortedUnique(ids) {
		if info, ok := set.Policy(id); ok {
			ex.Policies = append(ex.Policies, info)
		}
	}
	return ex
}

// String renders the explanation for a terminal, one line per determining policy and per MCP call.
func (e Explanation) String() string {
	var b strings.Builder
	d := e.Decision
	verdict := "ALLOW"
	if !d.Allowed {
		verdict = "DENY (" + d.Reason + ")"
	}
	if len(d.PerCall) == 0 {
		fmt.Fprintf(&b, "%s: %s\n", verdict, d)
	} else {
		fmt.Fprintf(&b, "%s: %d MCP call(s)\n", verdict, len(d.PerCall))
	}
	for i, c := range d.PerCall {
		v := "allow"
		if !c.Allowed {
			v = "deny"
		}
		fmt.Fprintf(&b, "  call %d (id %s, %s %s): %s: %s\n", i, idText(c.Call.ID), c.Call.Kind, c.Call.Method, v, c.why)
	}
	for _, p := range e.Policies {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	for _, err := range d.Errors {
		fmt.Fprintf(&b, "  error: %s\n", err)
	}
	return b.String()
}

func idText(id []byte) string {
	if id == nil {
		return "none"
	}
	return string(id)
}
