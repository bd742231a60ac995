package leader_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/agentauth/agentauth/internal/kubetest"
	"github.com/agentauth/agentauth/pkg/leader"
)

var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

func TestConfigRefused(t *testing.T) {
	// Never contacted: New only checks the config.
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  leader.Config
	}{
		{"no namespace", leader.Config{Name: "l", Identity: "a"}},
		{"no name", leader.Config{Namespace: "ns", Identity: "a"}},
		{"no identity", leader.Config{Namespace: "ns", Name: "l"}},
		{"renew deadline not below the lease duration", leader.Config{Namespace: "ns", Name: "l", Identity: "a",
			LeaseDuration: time.Second, RenewDeadline: 2 * time.Second}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := leader.New(client, c.cfg); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

// candidate is one replica: an Elector running until stop is called, and a count of the terms its singleton
// work ran.
type candidate struct {
	e     *leader.Elector
	id    string
	terms atomic.Int64
	stop  context.CancelFunc
	done  chan struct{}
}

func TestOneLeaderAndTakeOver(t *testing.T) {
	srv := kube.Server(t)
	ns := "leader-test"
	if _, err := srv.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const leaseDuration = 15 * time.Second
	var cands []*candidate
	for i := range 2 {
		c := &candidate{id: fmt.Sprintf("replica-%d", i), done: make(chan struct{})}
		e, err := leader.New(srv.Client, leader.Config{Namespace: ns, Name: "agentauth-leader", Identity: c.id,
			LeaseDuration: leaseDuration, RenewDeadline: 10 * time.Second, RetryPeriod: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		e.Go(func(ctx context.Context) {
			c.terms.Add(1)
			<-ctx.Done()
		})
		c.e = e
		ctx, cancel := context.WithCancel(context.Background())
		c.stop = cancel
		go func() {
			defer close(c.done)
			if err := e.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
		cands = append(cands, c)
		t.Cleanup(func() { cancel(); <-c.done })
	}

	started := time.Now()
	var first, other *candidate
	poll(t, time.Minute, "one replica leads", func() bool {
		switch l0, l1 := cands[0].e.IsLeader(), cands[1].e.IsLeader(); {
		case l0 && l1:
			t.Fatal("both replicas lead")
		case l0:
			first, other = cands[0], cands[1]
		case l1:
			first, other = cands[1], cands[0]
		}
		return first != nil
	})
	t.Logf("%s leads after %s", first.id, time.Since(started))
	poll(t, time.Minute, "the leader's singleton work runs", func() bool { return first.terms.Load() == 1 })
	if other.e.IsLeader() || other.terms.Load() != 0 {
		t.Fatal("the other replica leads too")
	}
	if holder := leaseHolder(t, srv, ns); holder != first.id {
		t.Fatalf("the Lease names %q; the leader is %q", holder, first.id)
	}

	// Stop the leader: Run releases the Lease and returns after its work did; the other takes over within the
	// lease duration (it need not wait for the Lease to expire).
	stopped := time.Now()
	first.stop()
	<-first.done
	t.Logf("the leader stopped in %s", time.Since(stopped))
	if first.e.IsLeader() {
		t.Fatal("a stopped replica still says it leads")
	}
	poll(t, leaseDuration, "the other replica takes the Lease", func() bool { return other.e.IsLeader() })
	t.Logf("the other replica took over %s after the leader was stopped", time.Since(stopped))
	poll(t, time.Minute, "its singleton work runs", func() bool { return other.terms.Load() == 1 })
	if holder := leaseHolder(t, srv, ns); holder != other.id {
		t.Fatalf("the Lease names %q; the leader is %q", holder, other.id)
	}
}

func leaseHolder(t *testing.T, srv *kubetest.Server, ns string) string {
	t.Helper()
	l, err := srv.Client.CoordinationV1().Leases(ns).Get(context.Background(), "agentauth-leader", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// poll waits for cond, failing t after within.
func poll(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
