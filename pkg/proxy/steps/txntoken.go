package steps

import (
	"context"
	"fmt"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/wire"
)

// TxnToken verifies a Txn-Token on ingress, after the caller's identity is established: the token must name the
// caller as its requesting workload. Who its subject is to the caller (a user, the agent itself, or a system),
// the delegated subject when someone delegated, and the transaction id then reach revocation, policy, the audit
// record and the tool. An agent acting for itself gets a Txn-Token naming itself: it is no delegated subject.
type TxnToken struct {
	Verifier *oauth.TxnVerifier
	// Required refuses requests without a Txn-Token.
	Required bool
}

// Handle implements proxy.Step.
func (t *TxnToken) Handle(ctx context.Context, x *proxy.Exchange) error {
	h := x.Request.Header
	if len(h.Values(wire.HeaderTxnToken)) == 0 {
		if t.Required {
			return fmt.Errorf("%w: this tool requires a Txn-Token (the user the agent acts for)", autherr.ErrMissing)
		}
		return nil
	}
	tok, err := oauth.TxnTokenFromHeader(h)
	if err != nil {
		return err
	}
	info, err := t.Verifier.VerifyFrom(ctx, tok, x.Identity.Subject)
	if err != nil {
		return err
	}
	id := x.Identity
	id.SubjectKind, id.TransactionID = info.SubjectKind(id.Subject), info.TransactionID
	if id.SubjectKind != oauth.SubjectSelf {
		id.DelegatedSubject = info.Subject
	}
	id.DelegatedClaims, id.DelegatedIssuedAt = info.ClaimStrings(), info.SubjectIssuedAt()
	return nil
}

// Credentials adds the tokens a route asks for on egress, before the proofs that bind them: a Transaction Token
// (the WPT binds it with tth, an HTTP signature covers the txn-token header), then, for a legacy API, an access
// token from the same token exchange in Authorization: Bearer. Tokens are cached by the exchanger until shortly
// before they expire and never logged.
type Credentials struct {
	Exchanger *oauth.Exchanger
	Scopes    map[string]string                     // route name → Txn-Token scope
	Access    map[string]*oauth.SecondaryCredential // route name → access token for a legacy API
	// Audited names the transaction on the egress decision record (only the audit log needs it on egress); Self
	// is our workload identifier, to tell an agent acting for itself from one acting for a user.
	Audited bool
	Self    string
}

// Handle implements proxy.EgressStep.
func (c *Credentials) Handle(ctx context.Context, x *proxy.Outbound) error {
	r, rt := x.Request, x.Route
	if scope, ok := c.Scopes[rt.Name]; ok {
		if err := c.Exchanger.Apply(ctx, r, scope); err != nil {
			return tokenError(rt, "a Txn-Token", err)
		}
		if c.Audited {
			noteTransaction(x, c.Self)
		}
	}
	if sc := c.Access[rt.Name]; sc != nil {
		if err := sc.Apply(ctx, r); err != nil {
			return tokenError(rt, "an access token", err)
		}
	}
	return nil
}

func tokenError(rt *proxy.Route, what string, err error) error {
	if autherr.Of(err) == nil {
		return fmt.Errorf("egress: credentials for route %q: obtaining %s: %v", rt.Name, what, err)
	}
	return err
}

// txnAlgs are the algorithms a Txn-Token from our token service may carry; it is read, not verified, here.
var txnAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// noteTransaction names, for the egress decision record, the transaction and subject of the Txn-Token the token
// service just gave us (over mTLS; ingress verifies it). A token that does not parse leaves the record without.
func noteTransaction(x *proxy.Outbound, self string) {
	vals := x.Request.Header.Values(wire.HeaderTxnToken)
	if len(vals) != 1 {
		return
	}
	tok, err := jwt.ParseSigned(vals[0], txnAlgs)
	if err != nil {
		return
	}
	var c struct {
		Txn string `json:"txn"`
		Sub string `json:"sub"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return
	}
	info := oauth.TxnInfo{Subject: c.Sub}
	kind, delegated := info.SubjectKind(self), c.Sub
	if kind == oauth.SubjectSelf {
		delegated = ""
	}
	x.TransactionID, x.SubjectKind, x.DelegatedSubject = c.Txn, kind, delegated
}

var (
	_ proxy.Step       = (*TxnToken)(nil)
	_ proxy.EgressStep = (*Credentials)(nil)
)
