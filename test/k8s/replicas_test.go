package k8s

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testproc"
)

const (
	agentPlanner = "spiffe://" + replicaTrustDomain + "/agent/planner"
	agentScout   = "spiffe://" + replicaTrustDomain + "/agent/scout"
)

// TestReplicas: two controller replicas on the Kubernetes state backend. A SET pushed to replica A is enforced by
// the sidecars connected to replica B. When the leader (A) is killed, B takes the Lease once it has expired, and
// nothing is lost: the revocation is still enforced, the SET's de-duplication record is still there, and a new SET
// pushed to B is enforced.
func TestReplicas(t *testing.T) {
	env := newReplicaEnv(t, "agentauth-replicas")
	a := env.startReplica(t, "replica-a")
	env.waitLeader(t, "replica-a")
	b := env.startReplica(t, "replica-b")

	// Policy through A, join tokens from A, the sidecars on B.
	a.ctl(t, "policy", "apply", writeTestFile(t, t.TempDir(), "agents.cedar", anyAgentPolicy))
	m := startMesh(t, b, a, agentPlanner, agentScout)
	for _, agent := range []string{agentPlanner, agentScout} {
		m.waitCall(t, agent, agent+" allowed", func(code int, _ string) bool { return code == http.StatusOK })
	}

	refusedFor := func(jti string) func(int, string) bool {
		return func(code int, body string) bool {
			if code == http.StatusOK {
				return false
			}
			if code != http.StatusForbidden || !strings.Contains(body, "revoked") || !strings.Contains(body, jti) {
				t.Fatalf("refusal %d %s does not name the revocation of %s", code, body, jti)
			}
			return true
		}
	}

	const jti1 = "replicas-compromise-planner"
	event, subject, members := compromise(agentPlanner)
	if code := env.push(t, a, jti1, event, subject, members); code != http.StatusAccepted {
		t.Fatalf("SET to replica A: %d, want 202", code)
	}
	_, body := m.waitCall(t, agentPlanner, "the planner refused by the sidecars on replica B", refusedFor(jti1))
	t.Logf("SET to A, refused through B: %s", body)
	if code, body := m.call(t, agentScout); code != http.StatusOK {
		t.Fatalf("the scout, not revoked: %d %s", code, body)
	}

	// Both replicas serve the state at the same versions (they depend on content only), so a sidecar that moves
	// from one to the other is sent nothing it holds.
	testproc.WaitFor(t, nil, "both replicas to serve the same versions", 50*time.Millisecond, func() (bool, string) {
		va, vb := a.xdsVersions(t), b.xdsVersions(t)
		return len(va) > 0 && maps.Equal(va, vb), fmt.Sprintf("replica-a %v, replica-b %v", va, vb)
	})

	// Kill the leader: no chance to release the Lease. Its last renewal is in the Lease, read once it is dead.
	if err := syscall.Kill(a.proc.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	testproc.WaitFor(t, nil, "replica-a to exit", 10*time.Millisecond, func() (bool, string) { return a.proc.Exited(), "" })
	holder, before := env.leader(t)
	if holder != "replica-a" {
		t.Fatalf("the Lease went to %q before it expired", holder)
	}
	lease := env.waitLeader(t, "replica-b")
	lastRenew, acquired := before.Spec.RenewTime.Time, lease.Spec.AcquireTime.Time
	t.Logf("replica-b took the Lease %v after replica-a's last renewal, %v after the kill (lease duration %v, retry period %v)",
		acquired.Sub(lastRenew).Round(time.Millisecond), acquired.Sub(killed).Round(time.Millisecond), leaseDuration, retryPeriod)
	// The Lease cannot be taken before it expires, judged by each replica from when it saw the last renewal (it
	// looks every retry period, with jitter), and the survivor takes it at its next try after that: about
	// leaseDuration + 2.4 × retryPeriod after the last renewal. The bound, checked on the times the replicas
	// wrote into the Lease, leaves room for a loaded machine.
	if took := acquired.Sub(lastRenew); took < leaseDuration || took > leaseDuration+5*retryPeriod {
		t.Errorf("replica-b took the Lease %v after the last renewal, lease duration %v", took, leaseDuration)
	}

	// Nothing lost: the revocation is enforced, the SET is known (a replay is accepted and changes nothing), and
	// the survivor takes new SETs.
	if code, body := m.call(t, agentPlanner); !refusedFor(jti1)(code, body) {
		t.Fatalf("after the failover the planner is allowed: %d %s", code, body)
	}
	if code := env.push(t, b, jti1, event, subject, members); code != http.StatusAccepted {
		t.Fatalf("replayed SET to replica B: %d, want 202", code)
	}
	const jti2 = "replicas-compromise-scout"
	event, subject, members = compromise(agentScout)
	if code := env.push(t, b, jti2, event, subject, members); code != http.StatusAccepted {
		t.Fatalf("SET to replica B: %d, want 202", code)
	}
	m.waitCall(t, agentScout, "the scout refused after the failover", refusedFor(jti2))
	if out := b.ctl(t, "revocations", "-o", "json"); !strings.Contains(out, jti1) || !strings.Contains(out, jti2) {
		t.Errorf("replica B lists revocations without both SETs: %s", out)
	}
}
