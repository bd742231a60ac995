package steps

import (
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/wire"
)

// IngressChain names the steps of an ingress; nil ones are left out, except Authorizer (the handler refuses
// anything no step allowed).
type IngressChain struct {
	Authenticators map[wire.Mode]proxy.Authenticator
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

// EgressChain names the steps of an egress; Credentials may be nil.
type EgressChain struct {
	Credentials *Credentials
	// Signers add the proofs of one mode each (wire.ModeWPT, wire.ModeHTTPSig).
	Signers map[wire.Mode]proxy.ProofSigner
}

// Egress is the egress chain, run on each request as it will be sent:
//
//	traceparent → Txn-Token and access token from the token service → proofs (WPT or HTTP signature)
//
// The tokens come before the proofs, which bind them.
func Egress(c EgressChain) []proxy.EgressStep {
	steps := []proxy.EgressStep{proxy.TraceparentStep{}}
	if c.Credentials != nil {
		steps = append(steps, c.Credentials)
	}
	return append(steps, &proxy.SignStep{Signers: c.Signers})
}
