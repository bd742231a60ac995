package steps

import "github.com/agentauth/agentauth/pkg/proxy"

// IngressChain names the steps of an ingress; nil ones are left out, except Authorizer (the handler refuses
// anything no step allowed).
type IngressChain struct {
	Authenticators map[proxy.Mode]proxy.Authenticator
	TxnToken       *TxnToken
	Revocations    proxy.RevocationChecker
	Authorizer     proxy.Authorizer
	SignResponses  *SignResponses
}

// Ingress is the ingress chain, in the one order every request meets it:
//
//	authenticate → mTLS peer is the WIT subject → Txn-Token → revocation → policy → arm response signing
//
// Revocation comes after the Txn-Token step so that it is checked once, for everything the request names: the
// caller, its WIT and certificate, and the user and transaction of its Txn-Token.
func Ingress(c IngressChain) []proxy.Step {
	steps := []proxy.Step{&proxy.AuthenticateStep{Authenticators: c.Authenticators}, proxy.BindingStep{}}
	if c.TxnToken != nil {
		steps = append(steps, c.TxnToken)
	}
	if c.Revocations != nil {
		steps = append(steps, &proxy.RevocationStep{Checker: c.Revocations})
	}
	steps = append(steps, &proxy.AuthorizeStep{Authorizer: c.Authorizer})
	if c.SignResponses != nil {
		steps = append(steps, c.SignResponses)
	}
	return steps
}
