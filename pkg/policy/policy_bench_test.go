//go:build unix

package policy

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"

	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/policy/mcp"
	"github.com/agentauth/agentauth/pkg/wire"
)

// generated is a realistic policy set of n policies: each permits one agent to one tool (half plain HTTP, half
// one MCP tool), plus the global forbids every deployment has (risk, suspended users, destructive tools), which
// every request must evaluate.
func generated(n int) map[string][]byte {
	var b strings.Builder
	b.WriteString(`
@id("high-risk") forbid (principal, action, resource) when { context.risk_level == RiskLevel::"HIGH" };
@id("suspended") forbid (principal, action, resource)
  when { context has subject && context.subject.hasTag("status") && context.subject.getTag("status") == "suspended" };
@id("no-deletes") forbid (principal, action == Action::"tools/call", resource) when { resource.name like "delete_*" };
`)
	for i := range n {
		if i%2 == 0 {
			fmt.Fprintf(&b, "@id(\"http-%d\") permit (principal == Agent::\"spiffe://example.org/agent/a%d\", action in [Action::\"GET\", Action::\"POST\"], resource == Tool::\"tool-%d.example\") when { context.path like \"/api/*\" };\n", i, i, i)
		} else {
			fmt.Fprintf(&b, "@id(\"mcp-%d\") permit (principal == Agent::\"spiffe://example.org/agent/a%d\", action == Action::\"tools/call\", resource == McpTool::\"mcp.example/tool_%d\");\n", i, i, i)
		}
	}
	return map[string][]byte{"generated.cedar": []byte(b.String())}
}

// benchRequests are requests the generated set allows, spread over its agents.
func benchRequests(b *testing.B, n int) []Request {
	reqs := make([]Request, 0, 256)
	for k := range 256 {
		i := (k * 7919) % n
		agent := fmt.Sprintf("spiffe://example.org/agent/a%d", i)
		r := Request{
			AgentID: agent, AuthMethod: wire.AuthWITWPT, Method: "GET", Path: "/api/orders", Host: fmt.Sprintf("tool-%d.example", i),
			DelegatedSubject: "alice", DelegatedClaims: map[string]string{"scope": "orders.read", "status": "active"},
			TransactionID: "txn-1", RiskLevel: RiskLow, Time: time.Unix(1_780_000_000, 0),
		}
		if i%2 == 1 {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tool_%d","arguments":{"q":"x"}}}`, i)
			msg, err := mcp.Parse("application/json", []byte(body), 0)
			if err != nil {
				b.Fatal(err)
			}
			r.Host, r.Method, r.Path, r.MCP = "mcp.example", "POST", "/mcp", msg.Calls
		}
		reqs = append(reqs, r)
	}
	return reqs
}

// benchRevocations answers from a map, as the sidecar's revocation state does; the benchmark's subjects are not in
// it, so every decision pays for the three lookups and then for policy.
func benchRevocations() Revocations {
	revoked := map[[2]string]string{}
	for i := range 100 {
		revoked[[2]string{SubjectUser, fmt.Sprintf("revoked-%d", i)}] = fmt.Sprintf("rev-%d", i)
	}
	return RevocationsFunc(func(_ context.Context, kind, value string, _ time.Time) (string, bool) {
		id, ok := revoked[[2]string{kind, value}]
		return id, ok
	})
}

// BenchmarkDecide measures Engine.Decide per request at 10, 1,000 and 10,000 policies, on an engine with
// revocations like the sidecar's, under the default GC settings the sidecar runs with. It reports the p50 and
// p99 of individually timed calls (wall clock: on a busy machine they include waiting for a CPU) and cpu-ns/op,
// the process CPU time (user+system, GC included) per call, which waiting for a CPU does not inflate.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1_000, 10_000} {
		set, err := Compile(generated(n))
		if err != nil {
			b.Fatal(err)
		}
		reqs := benchRequests(b, n)
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			benchDecide(b, NewEngine(set, WithRevocations(benchRevocations())), reqs)
		})
	}
}

// BenchmarkDecideUnindexed is the same at 1,000 policies with the index disabled (every policy evaluated as
// written, as plain cedar.Authorize does), to show what the index buys.
func BenchmarkDecideUnindexed(b *testing.B) {
	files := generated(1_000)
	set, err := Compile(files)
	if err != nil {
		b.Fatal(err)
	}
	flat := *set
	flat.index = map[scopeKey][]*compiled{}
	for name, src := range files {
		list, err := cedar.NewPolicyListFromBytes(name, src)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range list {
			c := *set.policies[cedar.PolicyID(p.Annotations()["id"])]
			c.policy, c.actions = p, allActions
			flat.index[scopeKey{}] = append(flat.index[scopeKey{}], &c)
		}
	}
	benchDecide(b, NewEngine(&flat, WithRevocations(benchRevocations())), benchRequests(b, 1_000))
}

func benchDecide(b *testing.B, e *Engine, reqs []Request) {
	ctx := context.Background()
	for _, r := range reqs {
		if d := e.Decide(ctx, r); !d.Allowed {
			b.Fatalf("benchmark request denied: %v", d.Err())
		}
	}
	// The latencies go into a fixed histogram rather than a slice: b.Loop may run any number of iterations, and
	// a slice growing inside the loop would copy megabytes in a timed call and feed the GC we are measuring.
	lat := new(latencies)
	b.ReportAllocs()
	cpu0 := testproc.CPUTime(b)
	i := 0
	for b.Loop() {
		start := time.Now()
		d := e.Decide(ctx, reqs[i%len(reqs)])
		lat.record(time.Since(start))
		if !d.Allowed {
			b.Fatal("denied")
		}
		i++
	}
	b.ReportMetric(float64((testproc.CPUTime(b)-cpu0).Nanoseconds())/float64(i), "cpu-ns/op")
	b.ReportMetric(float64(lat.percentile(50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat.percentile(99).Nanoseconds()), "p99-ns")
}

// latencies is a log-linear histogram of durations: exact below 128 ns, then 128 buckets per power of two, so a
// percentile is reported at most 0.8% low. Recording neither allocates nor sorts.
type latencies struct {
	counts [48 * 128]int64 // up to 2^47 ns; anything longer lands in the last bucket
	n      int64
}

func (h *latencies) record(d time.Duration) {
	v := uint64(max(d, 0))
	i := int(v)
	if v >= 128 {
		e := bits.Len64(v) - 8 // v>>e is in [128, 256)
		i = (e+1)*128 + int(v>>e) - 128
	}
	h.counts[min(i, len(h.counts)-1)]++
	h.n++
}

// percentile is the lower bound of the bucket holding the p-th percentile (the sample at rank n*p/100).
func (h *latencies) percentile(p int64) time.Duration {
	rank := h.n * p / 100
	for i, c := range h.counts {
		if rank < c {
			if i < 128 {
				return time.Duration(i)
			}
			return time.Duration(uint64(i%128+128) << (i/128 - 1))
		}
		rank -= c
	}
	return 0
}

func TestLatencies(t *testing.T) {
	var h latencies
	for v := range time.Duration(1000) {
		h.record(v * time.Microsecond)
	}
	for _, c := range []struct {
		p    int64
		want time.Duration
	}{{0, 0}, {50, 500 * time.Microsecond}, {99, 990 * time.Microsecond}} {
		got := h.percentile(c.p)
		if got > c.want || float64(got) < float64(c.want)*0.992 {
			t.Errorf("p%d = %v, want %v (at most 0.8%% low)", c.p, got, c.want)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	files := generated(1_000)
	for b.Loop() {
		if _, err := Compile(files); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecisionString measures Decision.String, which the sidecar calls on every decision (reason and log).
func BenchmarkDecisionString(b *testing.B) {
	set, err := Compile(generated(1_000))
	if err != nil {
		b.Fatal(err)
	}
	e := NewEngine(set)
	var ds []Decision
	for _, r := range benchRequests(b, 1_000) {
		ds = append(ds, e.Decide(context.Background(), r))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if ds[i%len(ds)].String() == "" {
			b.Fatal("empty")
		}
		i++
	}
}
