//go:build bench

package k8s

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testproc"
)

// revocationID finds the revocation's id in a sidecar's refusal ("revoked: revocation ID: reason").
var revocationID = regexp.MustCompile(`revocation ([^\s:"]+):`)

// BenchmarkSETToEnforced measures how long a SET takes from its push to the first request the sidecars refuse for
// it, with the sidecars connected to replica B: pushed to B itself (replicas=1: B writes the revocation and
// serves it), and pushed to A (replicas=2: A writes it, B learns of it through its watch of the API server). Each
// iteration pushes an account-disabled SET for the agent (withheld credentials: refused whenever issued, so no
// renewal in between changes the outcome), polls the agent's request until it is refused, then lifts the
// revocation (not timed) and waits until the agent is allowed again. It reports p50 and p99 (ms)
// over b.N SETs. Run with make bench-replicas.
func BenchmarkSETToEnforced(b *testing.B) {
	env := newReplicaEnv(b, "agentauth-bench")
	a := env.startReplica(b, "replica-a")
	env.waitLeader(b, "replica-a")
	rb := env.startReplica(b, "replica-b")
	a.ctl(b, "policy", "apply", writeTestFile(b, b.TempDir(), "agents.cedar", anyAgentPolicy))
	m := startMesh(b, rb, a, agentPlanner)
	m.waitCall(b, agentPlanner, "the planner allowed", func(code int, _ string) bool { return code == http.StatusOK })

	seq := 0
	for _, c := range []struct {
		name string
		to   *replica
	}{{"replicas=1", rb}, {"replicas=2", a}} {
		b.Run(c.name, func(b *testing.B) {
			took := make([]time.Duration, 0, b.N)
			var pushed time.Duration
			for range b.N {
				seq++
				jti := fmt.Sprintf("bench-%d", seq)
				event, subject, members := disable(agentPlanner)
				start := time.Now()
				if code := env.push(b, c.to, jti, event, subject, members); code != http.StatusAccepted {
					b.Fatalf("SET %s: %d", jti, code)
				}
				pushed += time.Since(start)
				var body string
				for {
					var code int
					code, body = m.call(b, agentPlanner)
					if code == http.StatusForbidden {
						break
					}
					if time.Since(start) > time.Minute {
						b.Fatalf("SET %s not enforced after a minute: %d %s", jti, code, body)
					}
				}
				took = append(took, time.Since(start))

				b.StopTimer()
				id := revocationID.FindStringSubmatch(body)
				if id == nil {
					b.Fatalf("refusal names no revocation: %s", body)
				}
				rb.ctl(b, "unrevoke", id[1])
				testproc.WaitFor(b, nil, "the planner allowed again", 20*time.Millisecond, func() (bool, string) {
					code, body := m.call(b, agentPlanner)
					return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
				})
				b.StartTimer()
			}
			slices.Sort(took)
			pct := func(p float64) float64 {
				return float64(took[min(len(took)-1, int(p*float64(len(took))))]) / float64(time.Millisecond)
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			// The push's own time: the receiver answers 202 once the revocation is stored (and seen by its replica).
			b.ReportMetric(float64(pushed)/float64(time.Millisecond)/float64(b.N), "push-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
