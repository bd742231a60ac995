package xdsclient

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

func TestRevokedSemantics(t *testing.T) {
	t0 := time.Unix(1_760_000_000, 0)
	mk := func(id string, nb, exp time.Time) resourceUpdate {
		r := spiffeRevocation(id, "spiffe://example.org/a")
		if !nb.IsZero() {
			r.NotBefore = timestamppb.New(nb)
		}
		if !exp.IsZero() {
			r.Expires = timestamppb.New(exp)
		}
		return resourceUpdate{name: id, version: "v", msg: r}
	}
	tests := []struct {
		name     string
		rev      resourceUpdate
		issuedAt time.Time
		now      time.Time
		want     bool
	}{
		{"no not_before revokes everything", mk("r", time.Time{}, time.Time{}), t0, t0, true},
		{"issued before not_before", mk("r", t0, time.Time{}), t0.Add(-time.Second), t0, true},
		// Whole-second token times: a credential stamped in the event's second is not shown to be newer.
		{"issued at not_before", mk("r", t0, time.Time{}), t0, t0, true},
		{"issued after not_before", mk("r", t0, time.Time{}), t0.Add(time.Minute), t0.Add(time.Hour), false},
		{"unknown issue time", mk("r", t0, time.Time{}), time.Time{}, t0, true},
		{"expired revocation", mk("r", time.Time{}, t0), t0.Add(-time.Hour), t0, false},
		{"not yet expired", mk("r", time.Time{}, t0), t0.Add(-time.Hour), t0.Add(-time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := emptyState().with(agentauthv1.RevocationType, []resourceUpdate{tt.rev}, nil)
			got := st.Revoked("spiffe", "", "spiffe://example.org/a", tt.issuedAt, tt.now) != nil
			if got != tt.want {
				t.Fatalf("Revoked = %t, want %t", got, tt.want)
			}
			if st.Revoked("spiffe", "", "spiffe://example.org/b", tt.issuedAt, tt.now) != nil {
				t.Fatal("another subject is revoked")
			}
		})
	}
}

func TestStateIsCopyOnWrite(t *testing.T) {
	up := func(id, subject string) resourceUpdate {
		return resourceUpdate{name: id, version: "v-" + id, msg: spiffeRevocation(id, subject)}
	}
	s1 := emptyState().with(agentauthv1.RevocationType, []resourceUpdate{up("r1", "spiffe://example.org/a"), up("r2", "spiffe://example.org/a")}, nil)
	s2 := s1.with(agentauthv1.RevocationType, []resourceUpdate{up("r3", "spiffe://example.org/b")}, []string{"r1"})
	// Moving r2 to another subject must drop it from the old subject's index.
	s3 := s2.with(agentauthv1.RevocationType, []resourceUpdate{up("r2", "spiffe://example.org/c")}, nil)
	now := time.Now()
	if len(s1.Revocations()) != 2 || s1.Revoked("spiffe", "", "spiffe://example.org/b", now, now) != nil {
		t.Error("older snapshot changed")
	}
	if r := s2.Revoked("spiffe", "", "spiffe://example.org/a", now, now); r.GetId() != "r2" {
		t.Errorf("s2 subject a: %v", r)
	}
	if r := s3.Revoked("spiffe", "", "spiffe://example.org/a", now, now); r != nil {
		t.Errorf("s3 subject a still revoked by %v", r)
	}
	if r := s3.Revoked("spiffe", "", "spiffe://example.org/c", now, now); r.GetId() != "r2" {
		t.Errorf("s3 subject c: %v", r)
	}
	if v := s3.ResourceVersions(agentauthv1.RevocationType); len(v) != 2 || v["r2"] != "v-r2" || v["r3"] != "v-r3" {
		t.Errorf("versions: %v", v)
	}
	if s1.Len(agentauthv1.RevocationType) != 2 {
		t.Errorf("s1 versions changed: %v", s1.ResourceVersions(agentauthv1.RevocationType))
	}

	risk := func(level string) resourceUpdate {
		r := &agentauthv1.RiskState{Subject: &agentauthv1.Subject{Kind: "user_email", Value: "a@example.org"}, RiskLevel: level}
		return resourceUpdate{name: r.GetSubject().Key(), version: level, msg: r}
	}
	r1 := s3.with(agentauthv1.RiskStateType, []resourceUpdate{risk("LOW")}, nil)
	r2 := r1.with(agentauthv1.RiskStateType, []resourceUpdate{risk("HIGH")}, nil)
	r3 := r2.with(agentauthv1.RiskStateType, nil, []string{risk("").name})
	if got := r1.Risks("user_email", "", "a@example.org"); len(got) != 1 || got[0].GetRiskLevel() != "LOW" {
		t.Errorf("r1 risk %v", got)
	}
	if got := r2.Risks("user_email", "", "a@example.org"); len(got) != 1 || got[0].GetRiskLevel() != "HIGH" {
		t.Errorf("r2 risk %v", got)
	}
	if got := r3.Risks("user_email", "", "a@example.org"); len(got) != 0 {
		t.Errorf("r3 risk not removed: %v", got)
	}
	// A subject with an issuer is found with it and with none, and the two issuers' states are apart.
	issRisk := func(iss, level string) resourceUpdate {
		r := &agentauthv1.RiskState{Subject: &agentauthv1.Subject{Kind: "user_iss_sub", Iss: iss, Value: "u"}, RiskLevel: level}
		return resourceUpdate{name: r.GetSubject().Key(), version: level, msg: r}
	}
	r4 := r3.with(agentauthv1.RiskStateType, []resourceUpdate{issRisk("https://a", "LOW"), issRisk("https://b", "HIGH")}, nil)
	if got := r4.Risks("user_iss_sub", "", "u"); len(got) != 2 {
		t.Errorf("risk under any issuer: %v", got)
	}
	if got := r4.Risks("user_iss_sub", "https://b", "u"); len(got) != 1 || got[0].GetRiskLevel() != "HIGH" {
		t.Errorf("risk under issuer b: %v", got)
	}
	r5 := r4.with(agentauthv1.RiskStateType, nil, []string{issRisk("https://b", "").name})
	if got := r5.Risks("user_iss_sub", "", "u"); len(got) != 1 || got[0].GetRiskLevel() != "LOW" {
		t.Errorf("after removing b's: %v", got)
	}
	if len(r3.Revocations()) != 2 {
		t.Error("a risk update changed revocations")
	}
}

// A revocation of a subject with an issuer (an iss_sub user, an opaque id of one transmitter) is found by a
// lookup with that issuer or with none, not with another; replacing or removing it drops both entries.
func TestRevokedIssuer(t *testing.T) {
	now := time.Now()
	userRev := func(id, iss, sub string) resourceUpdate {
		return resourceUpdate{name: id, version: "v", msg: &agentauthv1.Revocation{Id: id,
			Subject: &agentauthv1.Subject{Kind: "user_iss_sub", Iss: iss, Value: sub}}}
	}
	revoked := func(st *State, iss, sub string) bool { return st.Revoked("user_iss_sub", iss, sub, now, now) != nil }
	st := emptyState().with(agentauthv1.RevocationType, []resourceUpdate{userRev("r1", "https://idp.example.com", "alice")}, nil)
	for _, tc := range []struct {
		iss, sub string
		want     bool
	}{
		{"https://idp.example.com", "alice", true},
		{"", "alice", true},
		{"https://other.example.com", "alice", false},
		{"", "bob", false},
	} {
		if got := revoked(st, tc.iss, tc.sub); got != tc.want {
			t.Errorf("Revoked(iss %q, %q) = %t, want %t", tc.iss, tc.sub, got, tc.want)
		}
	}
	moved := st.with(agentauthv1.RevocationType, []resourceUpdate{userRev("r1", "https://idp.example.com", "bob")}, nil)
	if revoked(moved, "", "alice") || revoked(moved, "https://idp.example.com", "alice") || !revoked(moved, "", "bob") {
		t.Error("a revocation moved to another subject is still indexed under the old one, or not under the new")
	}
	gone := moved.with(agentauthv1.RevocationType, nil, []string{"r1"})
	if revoked(gone, "", "bob") || revoked(gone, "https://idp.example.com", "bob") {
		t.Error("a removed revocation still refuses")
	}
}

// TestRevokedDelegated: a user revocation is found by each of its delegated_subjects (an email's domain in any
// case), not by its subject's value, and no longer once it is removed.
func TestRevokedDelegated(t *testing.T) {
	r := &agentauthv1.Revocation{Id: "r1", Reason: "test",
		Subject:           &agentauthv1.Subject{Kind: "user_email", Value: "Al@example.com"},
		DelegatedSubjects: []string{"a:Al@example.com", "b:Al@example.com"}}
	st := emptyState().with(agentauthv1.RevocationType, []resourceUpdate{{name: "r1", version: "1", msg: r}}, nil)
	now := time.Now()
	for _, tc := range []struct {
		sub  string
		want bool
	}{{"a:Al@example.com", true}, {"b:Al@EXAMPLE.com", true}, {"Al@example.com", false}, {"c:Al@example.com", false}} {
		if got := st.RevokedDelegated(tc.sub, time.Time{}, now) != nil; got != tc.want {
			t.Errorf("%q: revoked %t, want %t", tc.sub, got, tc.want)
		}
	}
	st = st.with(agentauthv1.RevocationType, nil, []string{"r1"})
	if st.RevokedDelegated("a:Al@example.com", time.Time{}, now) != nil {
		t.Error("still revoked after the revocation was removed")
	}
}
