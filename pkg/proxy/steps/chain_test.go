package steps

import (
	"fmt"
	"testing"

	"github.com/agentauth/agentauth/pkg/proxy"
)

type noRevocations struct{ proxy.RevocationChecker }

// TestIngressOrder: revocation runs once, after the Txn-Token step (so it sees the delegated user and the
// transaction) and before policy; optional steps are left out when not configured.
func TestIngressOrder(t *testing.T) {
	all := IngressChain{TxnToken: &TxnToken{}, Revocations: noRevocations{}, Authorizer: AllowAuthenticated{},
		SignResponses: &SignResponses{}}
	for _, tc := range []struct {
		name  string
		chain IngressChain
		want  string
	}{
		{"everything", all, "[*proxy.AuthenticateStep proxy.BindingStep *steps.TxnToken *proxy.RevocationStep " +
			"*proxy.AuthorizeStep *steps.SignResponses]"},
		{"policy alone", IngressChain{Authorizer: AllowAuthenticated{}},
			"[*proxy.AuthenticateStep proxy.BindingStep *proxy.AuthorizeStep]"},
	} {
		var types []string
		for _, s := range Ingress(tc.chain) {
			types = append(types, fmt.Sprintf("%T", s))
		}
		if got := fmt.Sprint(types); got != tc.want {
			t.Errorf("%s: chain %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestEgressOrder: the tokens come before the proofs that bind them; the traceparent first, so that a refusal's
// record has it too.
func TestEgressOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chain EgressChain
		want  string
	}{
		{"with a token service", EgressChain{Credentials: &Credentials{}},
			"[proxy.TraceparentStep *steps.Credentials *proxy.SignStep]"},
		{"proofs alone", EgressChain{}, "[proxy.TraceparentStep *proxy.SignStep]"},
	} {
		var types []string
		for _, s := range Egress(tc.chain) {
			types = append(types, fmt.Sprintf("%T", s))
		}
		if got := fmt.Sprint(types); got != tc.want {
			t.Errorf("%s: chain %s, want %s", tc.name, got, tc.want)
		}
	}
}
