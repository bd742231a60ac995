package state

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/xds"
)

const permitAll = `@id("all") permit (principal, action, resource);`

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newService(t *testing.T, st *store.Store) *Service {
	t.Helper()
	s, err := New(st, Config{Validators: map[string]xds.Validator{agentauthv1.PolicyType: policy.ValidateResource}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func agentRevocation(id, agent string) *agentauthv1.Revocation {
	return &agentauthv1.Revocation{Id: id, Reason: "test", Subject: &agentauthv1.Subject{Kind: "spiffe", Value: agent}}
}

func trustBundle(ca *testca.CA, seq int64) *agentauthv1.TrustBundle {
	b := &agentauthv1.TrustBundle{TrustDomain: ca.TrustDomain().Name(), Sequence: seq}
	for _, c := range ca.X509Bundle().X509Authorities() {
		b.X509Authorities = append(b.X509Authorities, c.Raw)
	}
	return b
}

// TestIndexFollowsStore: the index holds what the store held at start, and every committed change after it,
// whoever writes it, before the write returns: the token service and the issuer refuse from the next request.
func TestIndexFollowsStore(t *testing.T) {
	st := openStore(t)
	now := time.Now()
	if _, err := st.Revocations().Put(agentRevocation("before", "spiffe://example.org/a")); err != nil {
		t.Fatal(err)
	}
	s := newService(t, st)
	refused := func(agent string) string {
		return s.Revocations().RefusingClass(revocation.ClassAgent, agent, now, now).GetId()
	}
	if got := refused("spiffe://example.org/a"); got != "before" {
		t.Fatalf("stored before start: refused by %q", got)
	}
	if err := s.UpsertRevocation(agentRevocation("admin", "spiffe://example.org/b")); err != nil {
		t.Fatal(err)
	}
	if got := refused("spiffe://example.org/b"); got != "admin" {
		t.Fatalf("written through the service: refused by %q", got)
	}
	if _, err := st.Revocations().Put(agentRevocation("direct", "spiffe://example.org/c")); err != nil {
		t.Fatal(err)
	}
	if got := refused("spiffe://example.org/c"); got != "direct" {
		t.Fatalf("written to the store directly: refused by %q", got)
	}
	if err := s.DeleteRevocation("before"); err != nil {
		t.Fatal(err)
	}
	if got := refused("spiffe://example.org/a"); got != "" {
		t.Fatalf("deleted, still refused by %q", got)
	}
	old := agentRevocation("old", "spiffe://example.org/d")
	old.Expires = timestamppb.New(now.Add(-time.Minute))
	if err := s.UpsertRevocation(old); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneRevocations(now); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	if _, ok := s.Revocations().Get("old"); ok || s.Revocations().Len() != 2 {
		t.Fatalf("after pruning the index holds %d revocations, old among them: %t", s.Revocations().Len(), ok)
	}
	stamped, _ := s.Revocations().Get("admin")
	if stamped.GetCreated() == nil {
		t.Error("created was not stamped")
	}
}

// TestServiceRefusesBadInput: a change that fails a check is refused with ErrMalformed (or ErrNotFound), and
// the store does not change.
func TestServiceRefusesBadInput(t *testing.T) {
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"))
	st := openStore(t)
	s := newService(t, st)
	policyOf := func(id, cedar string) *agentauthv1.Policy { return &agentauthv1.Policy{Id: id, Cedar: cedar} }
	if err := s.SetPolicies([]*agentauthv1.Policy{policyOf("good", permitAll)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTrustBundle(trustBundle(ca, 5)); err != nil {
		t.Fatal(err)
	}
	version, _ := st.Version()
	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"policy without text", func() error {
			return s.SetPolicies([]*agentauthv1.Policy{policyOf("good", permitAll), policyOf("empty", "")})
		}, autherr.ErrMalformed},
		{"policy that does not compile", func() error {
			return s.SetPolicies([]*agentauthv1.Policy{policyOf("bad", "permit (principal,")})
		}, autherr.ErrMalformed},
		{"duplicate policy ids", func() error {
			return s.SetPolicies([]*agentauthv1.Policy{policyOf("a", permitAll), policyOf("a", permitAll)})
		}, autherr.ErrMalformed},
		{"revocation without subject", func() error {
			return s.UpsertRevocation(&agentauthv1.Revocation{Id: "r"})
		}, autherr.ErrMalformed},
		{"revocation without id", func() error {
			return s.UpsertRevocation(agentRevocation("", "spiffe://example.org/a"))
		}, autherr.ErrMalformed},
		{"subject kind with odd characters", func() error {
			r := agentRevocation("r", "spiffe://example.org/a")
			r.Subject.Kind = "Spiffe ID"
			return s.UpsertRevocation(r)
		}, autherr.ErrMalformed},
		{"invalid timestamp", func() error {
			r := agentRevocation("r", "spiffe://example.org/a")
			r.NotBefore = &timestamppb.Timestamp{Seconds: 1, Nanos: -5}
			return s.UpsertRevocation(r)
		}, autherr.ErrMalformed},
		{"risk state without subject", func() error {
			return s.SetRisk(&agentauthv1.RiskState{RiskLevel: "HIGH"})
		}, autherr.ErrMalformed},
		{"bundle with garbage DER", func() error {
			return s.SetTrustBundle(&agentauthv1.TrustBundle{TrustDomain: "example.org", X509Authorities: [][]byte{{0x30, 0x03, 1, 2, 3}}, Sequence: 9})
		}, autherr.ErrMalformed},
		{"bundle with bad JWKS", func() error {
			return s.SetTrustBundle(&agentauthv1.TrustBundle{TrustDomain: "example.org", JwtAuthoritiesJwks: []byte(`{"keys":[{"kty":"EC"}]}`), Sequence: 9})
		}, autherr.ErrMalformed},
		{"bundle for a bad trust domain", func() error {
			b := trustBundle(ca, 9)
			b.TrustDomain = "Example.ORG/x"
			return s.SetTrustBundle(b)
		}, autherr.ErrMalformed},
		{"older bundle", func() error { return s.SetTrustBundle(trustBundle(ca, 4)) }, autherr.ErrMalformed},
		{"deleting an unknown revocation", func() error { return s.DeleteRevocation("nope") }, ErrNotFound},
		{"deleting an unknown risk state", func() error {
			return s.DeleteRisk(&agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/a"})
		}, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if v, _ := st.Version(); v != version {
				t.Fatalf("store changed (version %d → %d)", version, v)
			}
		})
	}
	if _, err := New(st, Config{Validators: map[string]xds.Validator{"type.googleapis.com/other": policy.ValidateResource}}); err == nil {
		t.Error("a validator for a type that is not served was accepted")
	}
}
