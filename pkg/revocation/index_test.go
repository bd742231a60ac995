package revocation

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

func subjectRev(id string, kind Kind, iss, value string) *agentauthv1.Revocation {
	return &agentauthv1.Revocation{Id: id, Subject: &agentauthv1.Subject{Kind: string(kind), Iss: iss, Value: value}}
}

// TestIndexLookups: each way a component asks, and what it must and must not find.
func TestIndexLookups(t *testing.T) {
	now := time.Unix(1_760_000_000, 0)
	session := subjectRev("session-ended", KindSPIFFE, "", "spiffe://example.org/agent/s")
	session.NotBefore = timestamppb.New(now.Add(-time.Minute))
	user := subjectRev("user", KindUserEmail, "", "Al@example.com")
	user.DelegatedSubjects = []string{"corp:Al@Example.com"}
	x := NewIndex(
		subjectRev("agent", KindSPIFFE, "", "spiffe://example.org/agent/a"),
		subjectRev("uri", KindURI, "", "wimse://example.org/agent/u"),
		subjectRev("sub", KindUserIssSub, "https://idp.example", "u1"),
		subjectRev("serial", KindX509Serial, "CN=ca", "0A:1B"),
		subjectRev("txn", KindSession, "", "txn-1"),
		session, user,
	)
	for _, tc := range []struct {
		name string
		got  *agentauthv1.Revocation
		want string
	}{
		{"agent by spiffe id", x.RefusingClass(ClassAgent, "spiffe://example.org/agent/a", now, now), "agent"},
		{"agent by uri", x.RefusingClass(ClassAgent, "wimse://example.org/agent/u", now, now), "uri"},
		{"another agent", x.RefusingClass(ClassAgent, "spiffe://example.org/agent/b", now, now), ""},
		{"a user's kind is not an agent's", x.RefusingClass(ClassAgent, "Al@example.com", now, now), ""},
		{"transaction", x.RefusingClass(ClassTxn, "txn-1", now, now), "txn"},
		{"iss_sub under its issuer", x.Refusing(KindUserIssSub, "https://idp.example", "u1", now, now), "sub"},
		{"iss_sub under any issuer", x.Refusing(KindUserIssSub, "", "u1", now, now), "sub"},
		{"iss_sub under another issuer", x.Refusing(KindUserIssSub, "https://other.example", "u1", now, now), ""},
		{"serial in another spelling, any issuer", x.Refusing(KindX509Serial, "", "a1b", now, now), "serial"},
		{"user by delegated name, another case of domain", x.RefusingClass(ClassUser, "corp:Al@EXAMPLE.com", now, now), "user"},
		{"user not by the event's value", x.RefusingClass(ClassUser, "Al@example.com", now, now), ""},
		{"user by kind and value", x.Refusing(KindUserEmail, "", "Al@EXAMPLE.COM", now, now), "user"},
		{"session: old credential", x.RefusingClass(ClassAgent, "spiffe://example.org/agent/s", now.Add(-time.Hour), now), "session-ended"},
		{"session: new credential", x.RefusingClass(ClassAgent, "spiffe://example.org/agent/s", now, now), ""},
	} {
		if got := tc.got.GetId(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if r, ch := x.RefusingCall(Call{Agent: "spiffe://example.org/agent/b", Delegated: "corp:Al@example.com", Txn: "txn-2"}, now); r.GetId() != "user" || ch.Class != ClassUser {
		t.Errorf("call: %q by %v, want the user's", r.GetId(), ch)
	}
	if r, _ := x.RefusingCall(Call{Agent: "spiffe://example.org/agent/b", Delegated: "spiffe://example.org/agent/a", DelegatedIsAgent: true}, now); r.GetId() != "agent" {
		t.Errorf("system subject: %q, want the agent's revocation", r.GetId())
	}
	if got := len(x.About(KindUserIssSub, "", "u1")); got != 1 || x.Len() != 7 {
		t.Errorf("About = %d revocations, Len = %d", got, x.Len())
	}
}

// TestIndexWith: With replaces by id, removes, and leaves the index it came from as it was.
func TestIndexWith(t *testing.T) {
	now := time.Now()
	const a, b = "spiffe://example.org/a", "spiffe://example.org/b"
	x1 := NewIndex(subjectRev("r1", KindSPIFFE, "", a), subjectRev("r2", KindSPIFFE, "iss", a))
	x2 := x1.With([]*agentauthv1.Revocation{subjectRev("r1", KindSPIFFE, "", b)}, nil)
	x3 := x2.With(nil, []string{"r2", "missing"})
	for _, tc := range []struct {
		name    string
		x       *Index
		a, b    string
		n       int
		r2Found bool
	}{
		{"x1", x1, "r1", "", 2, true},
		{"x2: r1 moved to b", x2, "r2", "r1", 2, true},
		{"x3: r2 removed", x3, "", "r1", 1, false},
	} {
		if got := tc.x.RefusingClass(ClassAgent, a, now, now).GetId(); got != tc.a {
			t.Errorf("%s: a refused by %q, want %q", tc.name, got, tc.a)
		}
		if got := tc.x.RefusingClass(ClassAgent, b, now, now).GetId(); got != tc.b {
			t.Errorf("%s: b refused by %q, want %q", tc.name, got, tc.b)
		}
		if _, ok := tc.x.Get("r2"); ok != tc.r2Found || tc.x.Len() != tc.n {
			t.Errorf("%s: r2 found %t, len %d", tc.name, ok, tc.x.Len())
		}
	}
	if got := len(x3.About(KindSPIFFE, "iss", a)); got != 0 {
		t.Errorf("a removed revocation left %d behind under its issuer", got)
	}
}
