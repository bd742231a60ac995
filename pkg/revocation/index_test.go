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
	if got := len(x.About(KindUserIssSub, "", "u1")); got != 1 {
		t.Errorf("About = %d revocations", got)
	}
}

// TestIndexWith: With replaces what the caller says it replaces, removes by id, and leaves the index it came from
// as it was.
func TestIndexWith(t *testing.T) {
	now := time.Now()
	const a, b = "spiffe://example.org/a", "spiffe://example.org/b"
	r1, r2 := subjectRev("r1", KindSPIFFE, "", a), subjectRev("r2", KindSPIFFE, "iss", a)
	r1b := subjectRev("r1", KindSPIFFE, "", b)
	x1 := NewIndex(r1, r2)
	x2 := x1.With([]*agentauthv1.Revocation{r1b}, []*agentauthv1.Revocation{r1})
	// r2 as the caller holds it may be another copy: it is removed by id.
	x3 := x2.With(nil, []*agentauthv1.Revocation{subjectRev("r2", KindSPIFFE, "iss", a), subjectRev("missing", KindSPIFFE, "", b)})
	for _, tc := range []struct {
		name string
		x    *Index
		a, b string
		r2   int
	}{
		{"x1", x1, "r1", "", 1},
		{"x2: r1 moved to b", x2, "r2", "r1", 1},
		{"x3: r2 removed", x3, "", "r1", 0},
	} {
		if got := tc.x.RefusingClass(ClassAgent, a, now, now).GetId(); got != tc.a {
			t.Errorf("%s: a refused by %q, want %q", tc.name, got, tc.a)
		}
		if got := tc.x.RefusingClass(ClassAgent, b, now, now).GetId(); got != tc.b {
			t.Errorf("%s: b refused by %q, want %q", tc.name, got, tc.b)
		}
		if got := len(tc.x.About(KindSPIFFE, "iss", a)); got != tc.r2 {
			t.Errorf("%s: %d revocations under a's issuer, want %d", tc.name, got, tc.r2)
		}
		if got := len(tc.x.About(KindSPIFFE, "", b)); got > 1 {
			t.Errorf("%s: %d revocations of b", tc.name, got)
		}
	}
}

// TestNewIndexReplacesByID: of two revocations with one id, NewIndex keeps the later, whatever its subject.
func TestNewIndexReplacesByID(t *testing.T) {
	now := time.Now()
	const a, b = "spiffe://example.org/a", "spiffe://example.org/b"
	x := NewIndex(subjectRev("r1", KindSPIFFE, "", a), subjectRev("r2", KindSPIFFE, "", b), subjectRev("r1", KindSPIFFE, "", b))
	if got := x.RefusingClass(ClassAgent, a, now, now).GetId(); got != "" {
		t.Errorf("a refused by %q, the earlier r1", got)
	}
	if got := len(x.About(KindSPIFFE, "", b)); got != 2 {
		t.Errorf("%d revocations of b, want r2 and the later r1", got)
	}
}
