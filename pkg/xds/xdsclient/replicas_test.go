package xdsclient

import (
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/xds/xdsserver"
)

// forwarder is a TCP relay on 127.0.0.1 standing in for a Service in front of controller replicas: switchTo sends
// new connections to another replica and cuts the open ones, as a replica that goes away does.
type forwarder struct {
	l      net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]bool
}

func newForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{l: l, target: target, conns: map[net.Conn]bool{}}
	go f.serve()
	t.Cleanup(func() {
		l.Close()
		f.switchTo("")
	})
	return f
}

func (f *forwarder) addr() string { return f.l.Addr().String() }

func (f *forwarder) serve() {
	for {
		down, err := f.l.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		target := f.target
		f.mu.Unlock()
		up, err := net.Dial("tcp", target)
		if err != nil {
			down.Close()
			continue
		}
		f.mu.Lock()
		f.conns[down], f.conns[up] = true, true
		f.mu.Unlock()
		relay := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			f.mu.Lock()
			delete(f.conns, dst)
			delete(f.conns, src)
			f.mu.Unlock()
		}
		go relay(up, down)
		go relay(down, up)
	}
}

// switchTo sends later connections to target and closes every open one.
func (f *forwarder) switchTo(target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target = target
	for c := range f.conns {
		c.Close()
	}
}

func revocationIDs(s *State) []string {
	var ids []string
	for _, r := range s.Revocations() {
		ids = append(ids, r.GetId())
	}
	return ids
}

// TestResumeOnAnotherReplica moves a sidecar from one controller replica to another, as when its replica goes
// away. Each replica reached its state through its own history (its own batches of the shared store's changes, or
// a load at start); the sidecar sends the resource versions it holds and receives only what differs: nothing when
// the replicas serve the same state, the difference when the other one is ahead. The system versions are the same
// on both replicas too, so the sidecar's reported versions and the controllers' sync status agree across replicas.
func TestResumeOnAnotherReplica(t *testing.T) {
	tests := []struct {
		name string
		// ahead changes replica B's state after both have converged.
		ahead           func(w writes) error
		wantReceived    uint64
		wantRevocations []string
	}{
		{name: "same state", wantReceived: 0, wantRevocations: []string{"r0", "r1", "r2", "r3", "r4"}},
		{name: "the other replica is ahead", ahead: func(w writes) error {
			if err := w.UpsertRevocation(spiffeRevocation("r9", "spiffe://example.org/agent/9")); err != nil {
				return err
			}
			return w.DeleteRevocation("r0")
		}, wantReceived: 1, wantRevocations: []string{"r1", "r2", "r3", "r4", "r9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := testca.New(t, td)
			a, b := newController(t, ca), newController(t, ca)
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			// Replica A: policies, then revocations one by one, then the bundle.
			must(a.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll), policy("p2", permitAll)}))
			for i := range 5 {
				must(a.w.UpsertRevocation(spiffeRevocation(fmt.Sprintf("r%d", i), fmt.Sprintf("spiffe://example.org/agent/%d", i))))
			}
			must(a.w.SetTrustBundle(trustBundle(ca, 1)))
			// Replica B: the same state by another way, with a revocation that came and went.
			must(b.w.SetTrustBundle(trustBundle(ca, 1)))
			must(b.w.UpsertRevocation(spiffeRevocation("rx", "spiffe://example.org/agent/x")))
			for i := 4; i >= 0; i-- {
				must(b.w.UpsertRevocation(spiffeRevocation(fmt.Sprintf("r%d", i), fmt.Sprintf("spiffe://example.org/agent/%d", i))))
			}
			must(b.w.SetPolicies([]*agentauthv1.Policy{policy("p2", permitAll)}))
			must(b.w.DeleteRevocation("rx"))
			must(b.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll), policy("p2", permitAll)}))
			waitFor(t, "both replicas to serve one state at one version", func() bool {
				return maps.Equal(a.pub.Versions(), b.pub.Versions())
			})

			fwd := newForwarder(t, a.addr)
			sc := a.sidecar("mover", nil, func(cfg *ClientConfig) { cfg.Target = fwd.addr() })
			waitFor(t, "the state from replica A", func() bool {
				n, ok := nodeByID(a.srv, sc.id.String())
				return ok && synced(n, a.pub.Versions())
			})
			before := sc.Status()
			if before.Received != 8 {
				t.Fatalf("initial sync received %d resources, want 8", before.Received)
			}
			if tt.ahead != nil {
				must(tt.ahead(b.w))
			}

			fwd.switchTo(b.addr)
			waitFor(t, "the sidecar to resume on replica B", func() bool {
				n, ok := nodeByID(b.srv, sc.id.String())
				return ok && synced(n, b.pub.Versions()) && slices.Equal(revocationIDs(sc.State()), tt.wantRevocations)
			})
			after := sc.Status()
			if after.Connects != 2 {
				t.Errorf("connects %d, want 2", after.Connects)
			}
			if got := after.Received - before.Received; got != tt.wantReceived {
				t.Errorf("resuming on replica B received %d resources, want %d", got, tt.wantReceived)
			}
			if tt.ahead == nil && !maps.Equal(after.Versions, before.Versions) {
				t.Errorf("same state, versions changed: %v on A, %v on B", before.Versions, after.Versions)
			}
			if !maps.Equal(after.Versions, b.pub.Versions()) {
				t.Errorf("sidecar reports %v, replica B serves %v", after.Versions, b.pub.Versions())
			}

			// Replica B's next change arrives as usual.
			must(b.w.UpsertRevocation(spiffeRevocation("r7", "spiffe://example.org/agent/7")))
			waitFor(t, "r7 from replica B", func() bool { _, ok := sc.State().Revocation("r7"); return ok })
			if got := sc.Status().Received - after.Received; got != 1 {
				t.Errorf("a new revocation carried %d resources, want 1", got)
			}
		})
	}
}

// synced reports whether n has ACKed current (Publisher.Versions) for every served type.
func synced(n xdsserver.NodeStatus, current map[string]string) bool {
	for _, typeURL := range agentauthv1.ServedTypes() {
		if n.Sync(typeURL, current[typeURL]) != xdsserver.Synced {
			return false
		}
	}
	return true
}
