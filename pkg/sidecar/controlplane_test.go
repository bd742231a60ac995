package sidecar

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/controller/state"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/xds/xdsclient"
	"github.com/agentauth/agentauth/pkg/xds/xdstest"
)

// startControlPlane runs a real xDS server (store, publisher, mTLS) on 127.0.0.1 and a sidecar's control plane
// synced to it; revocations upserted on the returned state service reach the control plane as in a deployment.
func startControlPlane(t *testing.T) (*state.Service, *controlPlane) {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td)
	pub, addr := xdstest.Start(t, ca.CreateX509SVID(wire.ControllerID(td)), ca.X509Bundle())

	cl, err := xdsclient.NewClient(xdsclient.ClientConfig{Target: addr, TLSConfig: tlsconfig.MTLSClientConfig(
		ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/tool/weather")), ca.X509Bundle(),
		tlsconfig.AuthorizeID(wire.ControllerID(td)))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = cl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, "the client to sync", func() bool { return cl.Status().Synced })
	return pub, &controlPlane{client: cl, log: zap.NewNop()}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestCheckRevokedCaller: the caller's identity and its WIT are refused by revocations however they name them,
// and only those it names.
func TestCheckRevokedCaller(t *testing.T) {
	pub, cp := startControlPlane(t)
	issued := time.Now().Add(-time.Minute)
	peer := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org")).CreateX509SVID(
		spiffeid.RequireFromString("spiffe://example.org/agent/e")).Certificates[0]
	withPeer := func(id *proxy.Identity, c *x509.Certificate) *proxy.Identity { id.PeerCert = c; return id }
	delegated := func(id *proxy.Identity, kind, sub, txn string) *proxy.Identity {
		id.SubjectKind, id.DelegatedSubject, id.TransactionID = kind, sub, txn
		id.DelegatedIssuedAt = issued
		return id
	}
	caller := func(subject, jti string) *proxy.Identity {
		return &proxy.Identity{Subject: subject, WITID: jti, IssuedAt: issued}
	}
	for _, tc := range []struct {
		name    string
		revoke  *agentauthv1.Subject
		refused *proxy.Identity
	}{
		{"agent by SPIFFE ID", &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/agent/a"},
			caller("spiffe://example.org/agent/a", "jti-a")},
		// A WIMSE identifier that is not a SPIFFE ID: security events name it a uri.
		{"agent by another WIMSE URI", &agentauthv1.Subject{Kind: "uri", Value: "wimse://example.org/agent/b"},
			caller("wimse://example.org/agent/b", "jti-b")},
		// agentauthctl revoke -kind jti without -iss; the WIT itself names its issuer.
		{"WIT by jti, no issuer", &agentauthv1.Subject{Kind: "jti", Value: "jti-c"},
			caller("spiffe://example.org/agent/c", "jti-c")},
		{"WIT by jti and issuer", &agentauthv1.Subject{Kind: "jti", Iss: "https://issuer.example.org", Value: "jti-d"},
			caller("spiffe://example.org/agent/d", "jti-d")},
		// CAEP credential-change of an x509 credential: the serial as a transmitter writes it, with colons.
		{"client certificate by serial", &agentauthv1.Subject{Kind: "x509_serial", Iss: "CN=agentauth CA,O=example.org",
			Value: revocation.Normal(revocation.KindX509Serial, colonHex(peer.SerialNumber.Bytes()))}, withPeer(caller("spiffe://example.org/agent/e", "jti-e"), peer)},
		// What the Txn-Token step found: one revocation step checks them too, before policy.
		{"the delegated user", &agentauthv1.Subject{Kind: "user_opaque", Value: "corp:u-f"},
			delegated(caller("spiffe://example.org/agent/f", "jti-f"), "user", "corp:u-f", "txn-f")},
		{"the system that began the transaction, as an agent", &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/batch"},
			delegated(caller("spiffe://example.org/agent/g", "jti-g"), "system", "spiffe://example.org/batch", "txn-g")},
		{"the transaction", &agentauthv1.Subject{Kind: "session", Value: "txn-h"},
			delegated(caller("spiffe://example.org/agent/h", "jti-h"), "self", "", "txn-h")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bystander := caller("spiffe://example.org/agent/bystander", "jti-bystander")
			if err := cp.Check(context.Background(), tc.refused); err != nil {
				t.Fatalf("refused before the revocation: %v", err)
			}
			if err := pub.UpsertRevocation(&agentauthv1.Revocation{Id: "r-" + tc.refused.WITID,
				Subject: tc.revoke, Reason: "test", DelegatedSubjects: revocation.DelegatedSubjects(tc.revoke, nil)}); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the revocation to refuse", func() bool { return cp.Check(context.Background(), tc.refused) != nil })
			if err := cp.Check(context.Background(), bystander); err != nil {
				t.Fatalf("a caller the revocation does not name is refused: %v", err)
			}
		})
	}
}

// TestRevokedUser: a delegated user (a Txn-Token sub) is matched as the token service names them, against the
// names the controller resolved (delegated_subjects: the user issuer's prefix + sub), never against the subject
// as the event gave it; an email whatever the case of its domain.
func TestRevokedUser(t *testing.T) {
	pub, cp := startControlPlane(t)
	issued := time.Now().Add(-time.Minute)
	issuers := []revocation.UserIssuer{{Issuer: "https://idp.example.com", SubjectPrefix: "corp:"},
		{Issuer: "https://idp-b.example.com", SubjectPrefix: "b:"}}
	for i, sub := range []*agentauthv1.Subject{
		{Kind: "user_email", Value: revocation.Normal(revocation.KindUserEmail, "Erin@Example.COM")},
		{Kind: "user_iss_sub", Iss: "https://idp.example.com", Value: "user-123"},
		{Kind: "user_opaque", Iss: "https://siem.example.com", Value: "00u-9"},
	} {
		r := &agentauthv1.Revocation{Id: fmt.Sprintf("r%d", i), Subject: sub, Reason: "test",
			DelegatedSubjects: revocation.DelegatedSubjects(sub, issuers)}
		if err := pub.UpsertRevocation(r); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the revocations", func() bool { return cp.client.State().Len(agentauthv1.RevocationType) == 3 })
	for _, tc := range []struct {
		user string
		want bool
	}{
		{"corp:Erin@example.com", true},
		{"b:Erin@EXAMPLE.COM", true},
		{"corp:erin@example.com", false}, // the local part is case-sensitive
		{"Erin@example.com", false},      // the token service names no user without a prefix
		{"corp:user-123", true},
		{"b:user-123", false}, // another issuer's user-123
		{"user-123", false},
		{"corp:user-1234", false},
		{"corp:00u-9", true},
		{"b:00u-9", true},
	} {
		if got := cp.client.State().RevocationIndex().RefusingClass(revocation.ClassUser, tc.user, issued, time.Now()) != nil; got != tc.want {
			t.Errorf("user %q revoked = %t, want %t", tc.user, got, tc.want)
		}
	}
}

// colonHex writes b as upper-case hex bytes separated by colons, as certificate tools print serials.
func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

// TestRiskOfAgentAndUser: policy sees the highest risk of the agent and of the user it acts for, the user named
// by an identity provider's issuer and subject included, and the latest assurance level.
func TestRiskOfAgentAndUser(t *testing.T) {
	pub, cp := startControlPlane(t)
	t0 := time.Now().Add(-time.Hour)
	for _, r := range []*agentauthv1.RiskState{
		{Subject: &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/agent/a"}, RiskLevel: "LOW",
			AssuranceLevel: "aal1", Updated: timestamppb.New(t0)},
		{Subject: &agentauthv1.Subject{Kind: "user_iss_sub", Iss: "https://idp.example.com", Value: "user-123"},
			RiskLevel: "HIGH", AssuranceLevel: "aal2", Updated: timestamppb.New(t0.Add(time.Minute))},
	} {
		if err := pub.SetRisk(r); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the risk states", func() bool { return cp.client.State().Len(agentauthv1.RiskStateType) == 2 })
	for _, tc := range []struct {
		agent, user, level, assurance string
	}{
		{"spiffe://example.org/agent/a", "", "LOW", "aal1"},
		{"spiffe://example.org/agent/a", "user-123", "HIGH", "aal2"},
		{"spiffe://example.org/agent/b", "user-123", "HIGH", "aal2"},
		{"spiffe://example.org/agent/b", "someone-else", "", ""},
	} {
		level, assurance := cp.risk(tc.agent, tc.user)
		if string(level) != tc.level || assurance != tc.assurance {
			t.Errorf("risk(%s, %q) = %q, %q; want %q, %q", tc.agent, tc.user, level, assurance, tc.level, tc.assurance)
		}
	}
}
