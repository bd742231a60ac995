package xdsserver

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	stream "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// cacheClient plays go-control-plane's delta server and a sidecar for one subscription: it opens watches as the
// server does, records the version map of each response as the server does, and applies responses to its view.
type cacheClient struct {
	t      *testing.T
	c      *deltaCache
	sub    stream.Subscription
	out    chan cache.DeltaResponse
	cancel func()
	nonce  int
	view   map[string]string // name → version, as the sidecar holds them
}

func newCacheClient(t *testing.T, c *deltaCache, initial map[string]string) *cacheClient {
	cl := &cacheClient{t: t, c: c, sub: stream.NewDeltaSubscription(nil, nil, maps.Clone(initial), true),
		out: make(chan cache.DeltaResponse, 1), view: maps.Clone(initial)}
	if cl.view == nil {
		cl.view = map[string]string{}
	}
	return cl
}

// request opens the next watch: the first request of the stream, or the ACK of the last response.
func (cl *cacheClient) request() {
	cl.t.Helper()
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: cl.c.typeURL}
	if cl.nonce > 0 {
		req.ResponseNonce = strconv.Itoa(cl.nonce)
	}
	cancel, err := cl.c.CreateDeltaWatch(req, cl.sub, cl.out)
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.cancel = cancel
}

// receive takes the pending response, if any, and applies it; it reports what the response held.
func (cl *cacheClient) receive() (updated, removed []string, ok bool) {
	cl.t.Helper()
	select {
	case r := <-cl.out:
		cl.nonce++
		cl.cancel = nil
		msg, err := r.GetDeltaDiscoveryResponse()
		if err != nil {
			cl.t.Fatal(err)
		}
		for _, res := range msg.GetResources() {
			if res.GetResource().GetTypeUrl() != cl.c.typeURL {
				cl.t.Fatalf("resource %s has type %s", res.GetName(), res.GetResource().GetTypeUrl())
			}
			cl.view[res.GetName()] = res.GetVersion()
			updated = append(updated, res.GetName())
		}
		for _, name := range msg.GetRemovedResources() {
			delete(cl.view, name)
			removed = append(removed, name)
		}
		cl.sub.SetReturnedResources(r.GetReturnedResources())
		return updated, removed, true
	default:
		return nil, nil, false
	}
}

func (cl *cacheClient) expect(wantUpdated, wantRemoved []string) {
	cl.t.Helper()
	updated, removed, ok := cl.receive()
	if !ok {
		cl.t.Fatalf("no response; want updated %v removed %v", wantUpdated, wantRemoved)
	}
	slices.Sort(removed)
	if !slices.Equal(updated, wantUpdated) || !slices.Equal(removed, wantRemoved) {
		cl.t.Fatalf("response updated %v removed %v; want %v and %v", updated, removed, wantUpdated, wantRemoved)
	}
}

func (cl *cacheClient) expectNothing() {
	cl.t.Helper()
	if updated, removed, ok := cl.receive(); ok {
		cl.t.Fatalf("unexpected response: updated %v removed %v", updated, removed)
	}
}

// state is the cache's current name → version.
func cacheState(c *deltaCache) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]string{}
	for name, cr := range c.resources {
		m[name] = cr.version
	}
	return m
}

// cacheNames lists the resources c holds, sorted.
func cacheNames(c *deltaCache) []string { return slices.Sorted(maps.Keys(cacheState(c))) }

func policies(ids ...string) map[string]types.Resource {
	m := map[string]types.Resource{}
	for _, id := range ids {
		m[id] = policy(id, permitAll)
	}
	return m
}

func newTestCache(t *testing.T, initial map[string]types.Resource) *deltaCache {
	c, err := newDeltaCache(agentauthv1.PolicyType, initial)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func update(t *testing.T, c *deltaCache, set map[string]types.Resource, deleted ...string) {
	t.Helper()
	if err := c.update(set, deleted); err != nil {
		t.Fatal(err)
	}
}

func TestDeltaCacheSendsOnlyWhatChanged(t *testing.T) {
	c := newTestCache(t, policies("a", "b"))
	cl := newCacheClient(t, c, nil)
	cl.request()
	cl.expect([]string{"a", "b"}, nil)

	cl.request() // the ACK: nothing new, so the watch waits
	cl.expectNothing()
	update(t, c, policies("c"))
	cl.expect([]string{"c"}, nil)

	cl.request()
	update(t, c, nil, "a")
	cl.expect(nil, []string{"a"})

	cl.request()
	update(t, c, policies("b"))        // same content: no change
	update(t, c, nil, "never-existed") // nothing to delete: no change
	update(t, c, map[string]types.Resource{"b": policy("b", `forbid (principal, action, resource);`)})
	cl.expect([]string{"b"}, nil)
	if !maps.Equal(cl.view, cacheState(c)) {
		t.Errorf("client holds %v, cache %v", cl.view, cacheState(c))
	}
	if c.seq != 3 {
		t.Errorf("sequence %d after three changes: a no-op update counted", c.seq)
	}
}

// TestDeltaCacheVersionIsContent checks that the system version depends on the resources only, not on the order
// of the updates that brought them: controller replicas that reach one state through different histories (each
// applies the shared store's changes in its own batches, or loads them at start) report one version.
func TestDeltaCacheVersionIsContent(t *testing.T) {
	forbid := map[string]types.Resource{"b": policy("b", `forbid (principal, action, resource);`)}
	loaded := newTestCache(t, map[string]types.Resource{"a": policy("a", permitAll), "b": forbid["b"], "c": policy("c", permitAll)})

	stepwise := newTestCache(t, nil)
	update(t, stepwise, policies("c"))
	update(t, stepwise, policies("b", "x"))
	update(t, stepwise, policies("a"), "x")
	update(t, stepwise, forbid)

	if got, want := stepwise.systemVersion(), loaded.systemVersion(); got != want {
		t.Errorf("same resources, different versions: %s after updates, %s loaded at once", got, want)
	}
	if stepwise.seq == loaded.seq {
		t.Fatalf("both at sequence %d: the histories should differ", loaded.seq)
	}
	update(t, stepwise, nil, "a")
	if stepwise.systemVersion() == loaded.systemVersion() {
		t.Errorf("version %s unchanged by a deletion", loaded.systemVersion())
	}
	update(t, stepwise, policies("a"))
	if got, want := stepwise.systemVersion(), loaded.systemVersion(); got != want {
		t.Errorf("back to the same resources: version %s, want %s", got, want)
	}
	if empty := newTestCache(t, nil).systemVersion(); empty == "" || empty == loaded.systemVersion() {
		t.Errorf("empty cache version %q", empty)
	}
}

// TestDeltaCacheSharesAnswersAtOneMark checks that an update builds one answer per mark, not per subscription:
// the fan-out of one revocation to a thousand waiting sidecars costs one diff.
func TestDeltaCacheSharesAnswersAtOneMark(t *testing.T) {
	c := newTestCache(t, policies("a"))
	cls := []*cacheClient{newCacheClient(t, c, nil), newCacheClient(t, c, nil), newCacheClient(t, c, nil)}
	for _, cl := range cls {
		cl.request()
		cl.expect([]string{"a"}, nil)
		cl.request()
	}
	update(t, c, policies("b"))
	answers := map[*deltaAnswer]bool{}
	for i, cl := range cls {
		select {
		case r := <-cl.out:
			answers[r.(*deltaResponse).deltaAnswer] = true
			cl.out <- r
		default:
			t.Fatalf("subscription %d got no answer", i)
		}
		cl.expect([]string{"b"}, nil)
	}
	if len(answers) != 1 {
		t.Errorf("three subscriptions at one mark got %d answers", len(answers))
	}
}

func TestDeltaCacheFirstRequestIsAnsweredEvenWhenEmpty(t *testing.T) {
	c := newTestCache(t, nil)
	cl := newCacheClient(t, c, nil)
	cl.request()
	cl.expect(nil, nil)
	cl.request()
	cl.expectNothing()
}

// A reconnecting sidecar sends the versions it holds; only the difference comes back.
func TestDeltaCacheResumesFromInitialVersions(t *testing.T) {
	c := newTestCache(t, policies("a", "b", "c"))
	state := cacheState(c)
	tests := []struct {
		name        string
		initial     map[string]string
		wantUpdated []string
		wantRemoved []string
	}{
		{"holds everything", state, nil, nil},
		{"holds nothing", nil, []string{"a", "b", "c"}, nil},
		{"holds a stale and a deleted one", map[string]string{"a": state["a"], "b": "stale", "gone": "x"},
			[]string{"b", "c"}, []string{"gone"}},
		// A mark this cache did not write (another controller's, or made up) is only a name to compare.
		{"forged mark", map[string]string{markKey: c.markFrom[:8] + "ffff:0", "a": state["a"]}, []string{"b", "c"}, nil},
		{"foreign epoch", map[string]string{markKey: "00000000000000000000000000000000:0"}, []string{"a", "b", "c"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCacheClient(t, c, tt.initial)
			cl.request()
			cl.expect(tt.wantUpdated, tt.wantRemoved)
			delete(cl.view, markKey)
			if !maps.Equal(cl.view, state) {
				t.Errorf("client holds %v, cache %v", cl.view, state)
			}
		})
	}
}

// A subscription whose mark is older than the change log reaches is compared in full, and still converges.
func TestDeltaCacheBeyondTheChangeLog(t *testing.T) {
	c := newTestCache(t, policies("keep", "drop"))
	cl := newCacheClient(t, c, nil)
	cl.request()
	cl.expect([]string{"drop", "keep"}, nil)
	// The sidecar lags: no watch is open while more changes than the log holds happen.
	update(t, c, nil, "drop")
	for i := range maxChanges + 10 {
		update(t, c, map[string]types.Resource{"busy": policy("busy", fmt.Sprintf("@id(\"v%d\") permit (principal, action, resource);", i))})
	}
	if c.floor == 0 {
		t.Fatal("the change log was never trimmed")
	}
	cl.request()
	cl.expect([]string{"busy"}, []string{"drop"})
	if !maps.Equal(cl.view, cacheState(c)) {
		t.Errorf("client holds %v, cache %v", cl.view, cacheState(c))
	}
}

// The version map handed to the server is shared between subscriptions, so it must never change afterwards.
func TestDeltaCacheVersionMapsAreImmutable(t *testing.T) {
	c := newTestCache(t, policies("a"))
	cl := newCacheClient(t, c, nil)
	cl.request()
	cl.expect([]string{"a"}, nil)
	held := cl.sub.ReturnedResources()
	before := maps.Clone(held)
	cl.request()
	update(t, c, policies("b"), "a")
	cl.expect([]string{"b"}, []string{"a"})
	if !maps.Equal(held, before) {
		t.Errorf("an earlier version map changed from %v to %v", before, held)
	}
}

func TestDeltaCacheRefusesWhatItDoesNotServe(t *testing.T) {
	c := newTestCache(t, nil)
	out := make(chan cache.DeltaResponse, 1)
	named := stream.NewDeltaSubscription([]string{"a"}, nil, nil, true)
	if _, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{TypeUrl: c.typeURL}, named, out); err != errNamed {
		t.Errorf("named subscription: %v", err)
	}
	wild := stream.NewDeltaSubscription(nil, nil, nil, true)
	if _, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{TypeUrl: agentauthv1.RevocationType}, wild, out); err == nil {
		t.Error("a watch for another type was accepted")
	}
	if _, err := c.CreateWatch(&discovery.DiscoveryRequest{TypeUrl: c.typeURL}, wild, nil); err != errDeltaOnly {
		t.Errorf("state-of-the-world watch: %v", err)
	}
}

// Random updates, deletions and ACK timings over several subscriptions: whenever a subscription has caught up,
// it holds exactly what the cache holds.
func TestDeltaCacheConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newTestCache(t, policies("p0", "p1"))
	clients := make([]*cacheClient, 5)
	for i := range clients {
		clients[i] = newCacheClient(t, c, nil)
		clients[i].request()
	}
	for step := range 3000 {
		switch op := rng.IntN(4); op {
		case 0, 1:
			set := map[string]types.Resource{}
			for range 1 + rng.IntN(3) {
				id := fmt.Sprintf("p%d", rng.IntN(12))
				set[id] = policy(id, fmt.Sprintf("@id(\"%s-%d\") permit (principal, action, resource);", id, rng.IntN(3)))
			}
			update(t, c, set)
		case 2:
			update(t, c, nil, fmt.Sprintf("p%d", rng.IntN(12)))
		case 3:
			cl := clients[rng.IntN(len(clients))]
			if _, _, ok := cl.receive(); ok && rng.IntN(3) > 0 {
				cl.request() // ACK now; otherwise the ACK comes in a later step
			}
		}
		for _, cl := range clients {
			if cl.cancel == nil && len(cl.out) == 0 && rng.IntN(4) == 0 {
				cl.request()
			}
		}
		if step%100 == 99 {
			want := cacheState(c)
			for i, cl := range clients {
				for {
					if cl.cancel == nil && len(cl.out) == 0 {
						cl.request()
					}
					if _, _, ok := cl.receive(); !ok {
						break
					}
				}
				if !maps.Equal(cl.view, want) {
					t.Fatalf("step %d: client %d holds %v, cache %v", step, i, cl.view, want)
				}
			}
		}
	}
}
