package agentauthv1

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestSubjectKeyIsUnambiguous(t *testing.T) {
	subjects := []*Subject{
		{Kind: "user_iss_sub", Iss: "https://a|b", Value: "c"},
		{Kind: "user_iss_sub", Iss: "https://a", Value: "b|c"},
		{Kind: "user_iss_sub", Iss: "https://a%7Cb", Value: "c"},
		{Kind: "spiffe", Value: "spiffe://example.org/a"},
		{Kind: "spiffe", Iss: "x", Value: "spiffe://example.org/a"},
		{Kind: "jti", Iss: "", Value: "|"},
	}
	seen := map[string]*Subject{}
	for _, s := range subjects {
		k := s.Key()
		if prev, dup := seen[k]; dup {
			t.Fatalf("%v and %v share key %q", prev, s, k)
		}
		seen[k] = s
	}
	for _, s := range []*Subject{nil, {}, {Kind: "spiffe"}, {Value: "x"}} {
		if k := s.Key(); k != "" {
			t.Errorf("incomplete subject %v has key %q", s, k)
		}
	}
}

func TestNormalValue(t *testing.T) {
	for _, tc := range []struct{ kind, in, want string }{
		{"user_email", "Erin@Example.COM", "Erin@example.com"},
		{"user_email", "erin@example.com", "erin@example.com"},
		{"user_email", "no-at-sign", "no-at-sign"},
		{"user_email", "a@b@Example.ORG", "a@b@example.org"},
		{"user_iss_sub", "Erin@Example.COM", "Erin@Example.COM"},
		{"spiffe", "spiffe://example.org/A", "spiffe://example.org/A"},
	} {
		if got := NormalValue(tc.kind, tc.in); got != tc.want {
			t.Errorf("NormalValue(%s, %q) = %q, want %q", tc.kind, tc.in, got, tc.want)
		}
	}
}

func TestNormalSerial(t *testing.T) {
	for _, in := range []string{"0a:1B:2c", "a1b2c", "000A1B2C", "0A 1B 2C"} {
		if got := NormalValue("x509_serial", in); got != "a1b2c" {
			t.Errorf("NormalValue(x509_serial, %q) = %q, want a1b2c", in, got)
		}
	}
	if got := NormalValue("x509_serial", "00"); got != "0" {
		t.Errorf("serial 00 = %q, want 0", got)
	}
}

func TestRevocationRefuses(t *testing.T) {
	t0 := time.Unix(1_760_000_000, 0)
	rev := func(nb, exp time.Time) *Revocation {
		r := &Revocation{}
		if !nb.IsZero() {
			r.NotBefore = timestamppb.New(nb)
		}
		if !exp.IsZero() {
			r.Expires = timestamppb.New(exp)
		}
		return r
	}
	for _, tc := range []struct {
		name          string
		r             *Revocation
		issued, now   time.Time
		refuses, gone bool
	}{
		{"withheld", rev(time.Time{}, time.Time{}), t0, t0, true, false},
		{"issued before not_before", rev(t0, time.Time{}), t0.Add(-time.Second), t0, true, false},
		{"issued in not_before's second", rev(t0, time.Time{}), t0, t0, true, false},
		{"issued after not_before", rev(t0, time.Time{}), t0.Add(time.Second), t0, false, false},
		{"unknown issue time", rev(t0, time.Time{}), time.Time{}, t0, true, false},
		{"expired", rev(time.Time{}, t0), t0.Add(-time.Hour), t0, false, true},
		{"not yet expired", rev(time.Time{}, t0), t0.Add(-time.Hour), t0.Add(-time.Second), true, false},
	} {
		if got := tc.r.Refuses(tc.issued, tc.now); got != tc.refuses {
			t.Errorf("%s: Refuses = %t, want %t", tc.name, got, tc.refuses)
		}
		if got := tc.r.Expired(tc.now); got != tc.gone {
			t.Errorf("%s: Expired = %t, want %t", tc.name, got, tc.gone)
		}
	}
}

// TestDelegatedSubjects: a user revocation names the user as the token service does: an iss_sub by its issuer's
// prefix only, an email or opaque id by every issuer's, and no one when no trusted issuer could have named them.
func TestDelegatedSubjects(t *testing.T) {
	two := []UserIssuer{{Issuer: "https://a.example", SubjectPrefix: "a:"}, {Issuer: "https://b.example", SubjectPrefix: "b:"}}
	one := []UserIssuer{{Issuer: "https://a.example"}}
	for _, tc := range []struct {
		name    string
		subject *Subject
		issuers []UserIssuer
		want    []string
	}{
		{"email, every prefix", &Subject{Kind: "user_email", Value: "Al@Example.COM"}, two, []string{"a:Al@example.com", "b:Al@example.com"}},
		{"opaque, every prefix", &Subject{Kind: "user_opaque", Iss: "https://siem.example", Value: "00u1"}, two, []string{"a:00u1", "b:00u1"}},
		{"iss_sub, its issuer's prefix", &Subject{Kind: "user_iss_sub", Iss: "https://b.example", Value: "u1"}, two, []string{"b:u1"}},
		{"iss_sub without iss, every prefix", &Subject{Kind: "user_iss_sub", Value: "u1"}, two, []string{"a:u1", "b:u1"}},
		{"iss_sub of an untrusted issuer", &Subject{Kind: "user_iss_sub", Iss: "https://c.example", Value: "u1"}, two, nil},
		{"one issuer without prefix", &Subject{Kind: "user_iss_sub", Iss: "https://a.example", Value: "u1"}, one, []string{"u1"}},
		{"no token service: as given", &Subject{Kind: "user_opaque", Value: "u1"}, nil, []string{"u1"}},
		{"not a user", &Subject{Kind: "spiffe", Value: "spiffe://example.org/a"}, two, nil},
	} {
		got := DelegatedSubjects(tc.subject, tc.issuers)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		r := &Revocation{Subject: tc.subject, DelegatedSubjects: got}
		for _, name := range tc.want {
			if !r.About("user", name) {
				t.Errorf("%s: not about %q", tc.name, name)
			}
		}
		if r.About("user", tc.subject.GetValue()) && !slices.Contains(tc.want, NormalDelegated(tc.subject.GetValue())) {
			t.Errorf("%s: about the value as the event gave it, which the token service names no one", tc.name)
		}
	}
}
