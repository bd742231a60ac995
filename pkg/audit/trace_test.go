package audit

import (
	"testing"
	"time"
)

func TestTraceID(t *testing.T) {
	for in, want := range map[string]string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "4bf92f3577b34da6a3ce929d0e0e4736",
		"4bf92f3577b34da6a3ce929d0e0e4736":                        "4bf92f3577b34da6a3ce929d0e0e4736",
		"4BF92F3577B34DA6A3CE929D0E0E4736":                        "",
		"txn-1":                                                   "",
		"":                                                        "",
	} {
		if got := TraceID(in); got != want {
			t.Errorf("TraceID(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTrace: three hops in three logs, the middle tool starting a new trace for its own call but keeping the
// transaction; a refusal by a revocation whose remediation is in another log; noise from another task and a
// remediation about someone else. Given any one of the ids, the chain is the same, in time order.
func TestTrace(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const (
		tp1   = "00-11111111111111111111111111111111-1111111111111111-00"
		tp2   = "00-22222222222222222222222222222222-2222222222222222-00"
		other = "00-99999999999999999999999999999999-9999999999999999-00"
	)
	dec := func(s int, dir, agent, tool, txn, tp, decision string) *Record {
		return &Record{Time: at(s), Kind: KindDecision, Direction: dir, Agent: agent, Tool: tool, Subject: "alice",
			Txn: txn, Traceparent: tp, Decision: decision, PolicyIDs: []string{"p-" + decision}}
	}
	planner := TraceLog{Name: "planner", Records: []*Record{
		dec(1, "egress", "planner", "", "txn-1", tp1, Allow),
		dec(2, "egress", "planner", "", "txn-other", other, Allow),
		dec(9, "egress", "planner", "", "txn-1", tp1, Deny),
	}}
	relay := TraceLog{Name: "relay", Records: []*Record{
		dec(3, "ingress", "planner", "relay", "txn-1", tp1, Allow),
		dec(4, "egress", "relay", "", "txn-1", tp2, Allow),
		{Time: at(5), Kind: KindRemediation, Action: "revoke", Subject: "alice", RevocationID: "rev-1", Cause: "session-revoked", SETJti: "jti-1"},
		{Time: at(6), Kind: KindRemediation, Action: "revoke", Subject: "bob", RevocationID: "rev-2"},
		dec(7, "egress", "relay", "", "txn-1", tp2, Deny),
	}}
	relay.Records[4].RevocationID, relay.Records[4].Reason = "rev-1", "revoked"
	weather := TraceLog{Name: "weather", Records: []*Record{
		dec(4, "ingress", "relay", "weather", "txn-1", tp2, Allow),
		dec(2, "ingress", "planner", "weather", "txn-other", other, Allow),
	}}
	want := []string{"planner@1", "relay@3", "relay@4", "weather@4", "relay@5", "relay@7", "planner@9"}
	for _, id := range []string{"txn-1", tp1, tp2, "22222222222222222222222222222222"} {
		c := Trace(id, []TraceLog{planner, relay, weather})
		var got []string
		for _, s := range c.Steps {
			got = append(got, s.Log+"@"+s.Record.Time.Format("5"))
		}
		if len(got) != len(want) {
			t.Fatalf("Trace(%s): %v, want %v", id, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("Trace(%s): %v, want %v", id, got, want)
			}
		}
		if c.Agent != "planner" || len(c.Subjects) != 1 || c.Subjects[0] != "alice" || len(c.Txns) != 1 || len(c.TraceIDs) != 2 {
			t.Fatalf("Trace(%s): agent %q subjects %v txns %v traces %v", id, c.Agent, c.Subjects, c.Txns, c.TraceIDs)
		}
	}
	if c := Trace("txn-none", []TraceLog{planner, relay, weather}); len(c.Steps) != 0 {
		t.Fatalf("an unknown txn has a chain: %+v", c.Steps)
	}
}
