package revocation

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

func TestNormal(t *testing.T) {
	for _, tc := range []struct {
		kind    Kind
		in, out string
	}{
		{KindUserEmail, "Erin@Example.COM", "Erin@example.com"},
		{KindUserEmail, "erin@example.com", "erin@example.com"},
		{KindUserEmail, "no-at-sign", "no-at-sign"},
		{KindUserEmail, "a@b@Example.ORG", "a@b@example.org"},
		{KindUserIssSub, "Erin@Example.COM", "Erin@Example.COM"},
		{KindSPIFFE, "spiffe://example.org/A", "spiffe://example.org/A"},
		{KindX509Serial, "0a:1B:2c", "a1b2c"},
		{KindX509Serial, "a1b2c", "a1b2c"},
		{KindX509Serial, "000A1B2C", "a1b2c"},
		{KindX509Serial, "0A 1B 2C", "a1b2c"},
		{KindX509Serial, "00", "0"},
		{KindX509Serial, "", ""},
	} {
		if got := Normal(tc.kind, tc.in); got != tc.out {
			t.Errorf("Normal(%s, %q) = %q, want %q", tc.kind, tc.in, got, tc.out)
		}
	}
	if got := NormalDelegated("corp:Al@Example.COM"); got != "corp:Al@example.com" {
		t.Errorf("NormalDelegated = %q", got)
	}
}

func TestKinds(t *testing.T) {
	for _, c := range []Class{ClassAgent, ClassUser, ClassTxn} {
		if len(c.Kinds()) == 0 {
			t.Errorf("class %s has no kinds", c)
		}
		for _, k := range c.Kinds() {
			if k.Class() != c {
				t.Errorf("kind %s of class %s has class %q", k, c, k.Class())
			}
		}
	}
	for _, k := range []Kind{KindJTI, KindX509Serial, "user_phone", ""} {
		if c := k.Class(); c != "" {
			t.Errorf("kind %q names a caller of class %s", k, c)
		}
	}
	if Class("other").Kinds() != nil {
		t.Error("an unknown class has kinds")
	}
}

func rev(id string, nb, exp time.Time) *agentauthv1.Revocation {
	r := &agentauthv1.Revocation{Id: id}
	if !nb.IsZero() {
		r.NotBefore = timestamppb.New(nb)
	}
	if !exp.IsZero() {
		r.Expires = timestamppb.New(exp)
	}
	return r
}

func TestRefuses(t *testing.T) {
	t0 := time.Unix(1_760_000_000, 0)
	for _, tc := range []struct {
		name                       string
		r                          *agentauthv1.Revocation
		issued, now                time.Time
		refuses, expired, withheld bool
	}{
		{"withheld", rev("r", time.Time{}, time.Time{}), t0, t0, true, false, true},
		{"withheld, issued later", rev("r", time.Time{}, time.Time{}), t0.Add(time.Hour), t0, true, false, true},
		{"issued before not_before", rev("r", t0, time.Time{}), t0.Add(-time.Second), t0, true, false, false},
		{"issued in not_before's second", rev("r", t0, time.Time{}), t0, t0, true, false, false},
		{"issued after not_before", rev("r", t0, time.Time{}), t0.Add(time.Second), t0, false, false, false},
		{"unknown issue time", rev("r", t0, time.Time{}), time.Time{}, t0, true, false, false},
		{"expired", rev("r", time.Time{}, t0), t0.Add(-time.Hour), t0, false, true, false},
		{"not yet expired", rev("r", time.Time{}, t0), t0.Add(-time.Hour), t0.Add(-time.Second), true, false, true},
	} {
		if got := Refuses(tc.r, tc.issued, tc.now); got != tc.refuses {
			t.Errorf("%s: Refuses = %t, want %t", tc.name, got, tc.refuses)
		}
		if got := Expired(tc.r, tc.now); got != tc.expired {
			t.Errorf("%s: Expired = %t, want %t", tc.name, got, tc.expired)
		}
		if got := Withholds(tc.r, tc.now); got != tc.withheld {
			t.Errorf("%s: Withholds = %t, want %t", tc.name, got, tc.withheld)
		}
	}
}

// TestDelegatedSubjects: a user revocation names the user as the token service does: an iss_sub by its issuer's
// prefix only, an email or opaque id by every issuer's, and no one when no trusted issuer could have named them.
func TestDelegatedSubjects(t *testing.T) {
	two := []UserIssuer{{Issuer: "https://a.example", SubjectPrefix: "a:"}, {Issuer: "https://b.example", SubjectPrefix: "b:"}}
	one := []UserIssuer{{Issuer: "https://a.example"}}
	type subject = agentauthv1.Subject
	for _, tc := range []struct {
		name    string
		subject *subject
		issuers []UserIssuer
		want    []string
	}{
		{"email, every prefix", &subject{Kind: "user_email", Value: "Al@Example.COM"}, two, []string{"a:Al@example.com", "b:Al@example.com"}},
		{"opaque, every prefix", &subject{Kind: "user_opaque", Iss: "https://siem.example", Value: "00u1"}, two, []string{"a:00u1", "b:00u1"}},
		{"iss_sub, its issuer's prefix", &subject{Kind: "user_iss_sub", Iss: "https://b.example", Value: "u1"}, two, []string{"b:u1"}},
		{"iss_sub without iss, every prefix", &subject{Kind: "user_iss_sub", Value: "u1"}, two, []string{"a:u1", "b:u1"}},
		{"iss_sub of an untrusted issuer", &subject{Kind: "user_iss_sub", Iss: "https://c.example", Value: "u1"}, two, nil},
		{"one issuer without prefix", &subject{Kind: "user_iss_sub", Iss: "https://a.example", Value: "u1"}, one, []string{"u1"}},
		{"no token service: as given", &subject{Kind: "user_opaque", Value: "u1"}, nil, []string{"u1"}},
		{"not a user", &subject{Kind: "spiffe", Value: "spiffe://example.org/a"}, two, nil},
	} {
		got := DelegatedSubjects(tc.subject, tc.issuers)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		x := NewIndex(&agentauthv1.Revocation{Id: "r", Subject: tc.subject, DelegatedSubjects: got})
		for _, name := range tc.want {
			if x.RefusingClass(ClassUser, name, time.Time{}, time.Now()) == nil {
				t.Errorf("%s: %q is not refused", tc.name, name)
			}
		}
		if x.RefusingClass(ClassUser, tc.subject.GetValue(), time.Time{}, time.Now()) != nil &&
			!slices.Contains(tc.want, NormalDelegated(tc.subject.GetValue())) {
			t.Errorf("%s: refused by the value as the event gave it, which the token service names no one", tc.name)
		}
	}
}

// TestCallChecks: a call is checked for its agent, its delegated subject and its transaction, in that order; a
// system subject (an agent acting for itself) is checked as an agent, never as a user.
func TestCallChecks(t *testing.T) {
	t1, t2 := time.Unix(1, 0), time.Unix(2, 0)
	for _, tc := range []struct {
		name string
		call Call
		want []Check
	}{
		{"agent only", Call{Agent: "a", AgentIssuedAt: t1}, []Check{{ClassAgent, "a", t1}}},
		{"user and transaction", Call{Agent: "a", AgentIssuedAt: t1, Delegated: "u", DelegatedIssuedAt: t2, Txn: "x"},
			[]Check{{ClassAgent, "a", t1}, {ClassUser, "u", t2}, {ClassTxn, "x", t2}}},
		{"system subject", Call{Agent: "a", Delegated: "a", DelegatedIsAgent: true, DelegatedIssuedAt: t2},
			[]Check{{ClassAgent, "a", time.Time{}}, {ClassAgent, "a", t2}}},
		{"nothing", Call{}, []Check{}},
	} {
		if got := tc.call.Checks(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
