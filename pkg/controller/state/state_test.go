package state

import (
	"errors"
	"path/filepath"
	"strings"
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
	if got := refused("spiffe://example.org/d"); got != "" {
		t.Fatalf("pruned, still refused by %q", got)
	}
	stamped := s.Revocations().About(revocation.KindSPIFFE, "", "spiffe://example.org/b")
	if len(stamped) != 1 || stamped[0].GetCreated() == nil {
		t.Fatalf("admin's revocation in the index: %v, want one with created stamped", stamped)
	}
	if err := s.UpsertRevocation(agentRevocation("admin", "spiffe://example.org/e")); err != nil {
		t.Fatal(err)
	}
	if got, moved := refused("spiffe://example.org/b"), refused("spiffe://example.org/e"); got != "" || moved != "admin" {
		t.Fatalf("replaced with another subject: the old one refused by %q, the new by %q", got, moved)
	}
}

func ids(revs []*agentauthv1.Revocation) string {
	out := make([]string, len(revs))
	for i, r := range revs {
		out[i] = r.GetId()
	}
	return strings.Join(out, ",")
}

// TestFollowCommit: one commit's changes, several of one id among them, leave the index as the store is after
// the commit.
func TestFollowCommit(t *testing.T) {
	now := time.Now()
	const a, b, c = "spiffe://example.org/a", "spiffe://example.org/b", "spiffe://example.org/c"
	put := func(r *agentauthv1.Revocation) store.Change {
		return store.Change{Bucket: store.BucketRevocations, Key: r.GetId(), Value: r}
	}
	del := func(id string) store.Change { return store.Change{Bucket: store.BucketRevocations, Key: id} }
	for _, tc := range []struct {
		name    string
		commit  []store.Change
		a, b, c string
	}{
		{"moved", []store.Change{put(agentRevocation("r1", b))}, "", "r1", ""},
		{"deleted", []store.Change{del("r1")}, "", "", ""},
		{"deleted, then written again", []store.Change{del("r1"), put(agentRevocation("r1", c))}, "", "", "r1"},
		{"moved twice", []store.Change{put(agentRevocation("r1", b)), put(agentRevocation("r1", c))}, "", "", "r1"},
		{"written, then deleted", []store.Change{put(agentRevocation("r1", b)), del("r1")}, "", "", ""},
		{"another written and deleted", []store.Change{put(agentRevocation("r2", b)), del("r2")}, "r1", "", ""},
		{"another bucket", []store.Change{{Bucket: store.BucketPolicies, Key: "r1"}}, "r1", "", ""},
	} {
		st := openStore(t)
		if _, err := st.Revocations().Put(agentRevocation("r1", a)); err != nil {
			t.Fatal(err)
		}
		s := newService(t, st)
		s.follow(tc.commit)
		for _, want := range []struct{ agent, id string }{{a, tc.a}, {b, tc.b}, {c, tc.c}} {
			got := s.Revocations().About(revocation.KindSPIFFE, "", want.agent)
			if ids := ids(got); ids != want.id {
				t.Errorf("%s: %s revoked by %q, want %q", tc.name, want.agent, ids, want.id)
			}
			if r := s.Revocations().RefusingClass(revocation.ClassAgent, want.agent, now, now); r.GetId() != want.id {
				t.Errorf("%s: %s refused by %q, want %q", tc.name, want.agent, r.GetId(), want.id)
			}
		}
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
