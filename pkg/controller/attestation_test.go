package controller

import (
	"testing"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// TestAttestationKind: the attestation label of issuer calls, on the TCP listener and the local socket; a
// Kubernetes attestation is its own kind, not a join token.
func TestAttestationKind(t *testing.T) {
	attest, renew := agentauthv1.IssuerService_Attest_FullMethodName, agentauthv1.IssuerService_Renew_FullMethodName
	for _, tc := range []struct {
		name   string
		req    any
		method string
		local  bool
		want   string
		ok     bool
	}{
		{"join token", &agentauthv1.AttestRequest{JoinToken: "t"}, attest, false, attestJoinToken, true},
		{"join token on the local socket", &agentauthv1.AttestRequest{JoinToken: "t"}, attest, true, attestJoinToken, true},
		{"unix peer", &agentauthv1.AttestRequest{}, attest, true, attestUnixPeer, true},
		{"kubernetes", &agentauthv1.AttestRequest{KubernetesToken: "k"}, attest, false, attestK8s, true},
		{"renew", &agentauthv1.RenewRequest{}, renew, false, attestRenew, true},
		{"another method", struct{}{}, "/agentauth.v1.IssuerService/Other", false, attestRenew, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := attestation(tc.req, tc.method, tc.local)
			if got != tc.want || ok != tc.ok {
				t.Errorf("attestation = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
