package revocation

import (
	"time"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// Expired reports whether r has stopped applying at now: it has an expires, and now is not before it.
func Expired(r *agentauthv1.Revocation, now time.Time) bool {
	exp := r.GetExpires()
	return exp != nil && !now.Before(exp.AsTime())
}

// Refuses reports whether r refuses, at now, a credential issued at issuedAt: it has not expired, and the
// credential was issued no later than its not_before (or it has none: it is withheld). Token times have
// whole-second precision, so a credential stamped in the same second as the event cannot be shown to be newer,
// and an unknown issuedAt (zero) counts as issued before any not_before: when in doubt, refuse.
//
// The two kinds of revocation differ only here: one with a not_before ends sessions (CAEP session-revoked), and
// credentials issued after it pass; one without is withheld (RISC account-disabled), and refuses every
// credential, old and new, until it is removed (Withholds).
func Refuses(r *agentauthv1.Revocation, issuedAt, now time.Time) bool {
	if Expired(r, now) {
		return false
	}
	nb := r.GetNotBefore()
	return nb == nil || issuedAt.IsZero() || !issuedAt.After(nb.AsTime())
}

// Withholds reports whether r refuses, at now, every credential of its subject however new: it has no
// not_before and has not expired. The issuer gives such a subject no new credentials.
func Withholds(r *agentauthv1.Revocation, now time.Time) bool {
	return r.GetNotBefore() == nil && !Expired(r, now)
}

// Call names the subjects of one request or token request: the agent making it, the subject its Txn-Token
// delegates (a user, or the agent itself), and the transaction.
type Call struct {
	Agent         string
	AgentIssuedAt time.Time
	// Delegated is the Txn-Token's subject, issued at DelegatedIssuedAt; empty when there is none to check.
	Delegated         string
	DelegatedIssuedAt time.Time
	// DelegatedIsAgent says Delegated is a workload that began a transaction for itself (a Txn-Token's system
	// subject), not a user: it is checked as an agent.
	DelegatedIsAgent bool
	// Txn is the transaction id, checked with DelegatedIssuedAt (the time of the Txn-Token that carries it).
	Txn string
}

// Check is one subject of a Call, as it is asked about (Index.RefusingClass).
type Check struct {
	Class    Class
	Value    string
	IssuedAt time.Time
}

// Checks lists the subjects of c in the order they are checked (agent, delegated subject, transaction),
// leaving out those c does not name.
func (c Call) Checks() []Check {
	delegator := ClassUser
	if c.DelegatedIsAgent {
		delegator = ClassAgent
	}
	all := [...]Check{
		{ClassAgent, c.Agent, c.AgentIssuedAt},
		{delegator, c.Delegated, c.DelegatedIssuedAt},
		{ClassTxn, c.Txn, c.DelegatedIssuedAt},
	}
	out := make([]Check, 0, len(all))
	for _, ch := range all {
		if ch.Value != "" {
			out = append(out, ch)
		}
	}
	return out
}
