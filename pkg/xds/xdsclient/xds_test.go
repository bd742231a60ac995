package xdsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/xds"
	"github.com/agentauth/agentauth/pkg/xds/xdsserver"
)

const permitAll = `permit (principal, action, resource);`

func TestPushAndAck(t *testing.T) {
	ca := testca.New(t, td)
	c := newController(t, ca)
	if err := c.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll)}); err != nil {
		t.Fatal(err)
	}
	if err := c.w.SetTrustBundle(trustBundle(ca, 1)); err != nil {
		t.Fatal(err)
	}
	if err := c.w.SetRisk(&agentauthv1.RiskState{Subject: &agentauthv1.Subject{Kind: "user_email", Value: "a@example.org"}, RiskLevel: "HIGH"}); err != nil {
		t.Fatal(err)
	}
	sc := c.sidecar("a", nil, func(cfg *ClientConfig) {
		cfg.Validators = map[string]xds.Validator{agentauthv1.PolicyType: cedarValidator}
	})
	waitFor(t, "the initial state", func() bool {
		s := sc.State()
		return len(s.Policies()) == 1 && len(s.TrustBundles()) == 1 && s.Len(agentauthv1.RiskStateType) == 1
	})

	st := sc.State()
	if p, ok := st.Policy("p1"); !ok || p.GetCedar() != permitAll {
		t.Errorf("policy p1: %v %v", p, ok)
	}
	if b, ok := st.TrustBundle("example.org"); !ok || b.GetSequence() != 1 {
		t.Errorf("bundle: %v %v", b, ok)
	}
	if r := st.Risks("user_email", "", "a@example.org"); len(r) != 1 || r[0].GetRiskLevel() != "HIGH" {
		t.Errorf("risk: %v", r)
	}

	// A revocation pushed after the initial sync arrives as one small update.
	before := sc.Status().Received
	if err := c.w.UpsertRevocation(spiffeRevocation("r1", "spiffe://example.org/agent/b")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revocation r1", func() bool { _, ok := sc.State().Revocation("r1"); return ok })
	if got := sc.Status().Received - before; got != 1 {
		t.Errorf("revocation update carried %d resources, want 1", got)
	}
	if r := sc.State().Revoked("spiffe", "", "spiffe://example.org/agent/b", time.Now(), time.Now()); r.GetId() != "r1" {
		t.Errorf("Revoked: %v", r)
	}

	// The server sees every type ACKed at the version the client applied.
	waitFor(t, "ACKs of every type", func() bool {
		n, ok := nodeByID(c.srv, sc.id.String())
		if !ok {
			return false
		}
		want := sc.Status().Versions
		for _, typeURL := range agentauthv1.ServedTypes() {
			if n.Acked[typeURL] == "" || n.Acked[typeURL] != want[typeURL] {
				return false
			}
		}
		return n.LastNACK == nil
	})
	n, _ := nodeByID(c.srv, sc.id.String())
	t.Logf("node %s acked %v", n.ID, n.Acked)
	if m := gather(t, xdsserver.NewServerCollector(c.srv)); m["agentauth_xds_sidecar_streams"] != 1 || m["agentauth_xds_sidecars_nacking"] != 0 {
		t.Errorf("server metrics: %v", m)
	}
	if n.Address == "" || n.ConnectedSince.IsZero() {
		t.Errorf("node status incomplete: %+v", n)
	}
}

func TestNACKKeepsLastGoodState(t *testing.T) {
	ca := testca.New(t, td)
	c := newController(t, ca)
	if err := c.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll)}); err != nil {
		t.Fatal(err)
	}
	strict := c.sidecar("strict", nil, func(cfg *ClientConfig) {
		cfg.Validators = map[string]xds.Validator{agentauthv1.PolicyType: cedarValidator}
	})
	lax := c.sidecar("lax", nil, nil)
	for _, sc := range []*sidecar{strict, lax} {
		waitFor(t, "p1 on "+sc.id.String(), func() bool { _, ok := sc.State().Policy("p1"); return ok })
	}

	// The controller has no Cedar validator here, so the bad policy reaches the sidecars.
	bad := policy("p2", `permit (principal, action, resource) when { principal.risk == };`)
	if err := c.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll), bad}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the NACK", func() bool { return strict.Status().NACKs == 1 })
	st := strict.Status()
	if !strings.Contains(st.LastNACK, `"p2"`) || !strings.Contains(st.LastNACK, "p2.cedar") {
		t.Errorf("NACK does not name the policy and its source: %q", st.LastNACK)
	}
	t.Logf("NACK: %s", st.LastNACK)
	if _, ok := strict.State().Policy("p2"); ok {
		t.Error("the strict sidecar applied the bad policy")
	}
	if _, ok := strict.State().Policy("p1"); !ok {
		t.Error("the strict sidecar lost its last good policy")
	}
	waitFor(t, "the server to record the NACK", func() bool {
		n, ok := nodeByID(c.srv, strict.id.String())
		return ok && n.LastNACK != nil && n.LastNACK.TypeURL == agentauthv1.PolicyType && n.LastNACK.Message == st.LastNACK
	})

	// A sidecar without that validator is unaffected, and so are the other types on the strict one.
	waitFor(t, "the lax sidecar to apply p2", func() bool { _, ok := lax.State().Policy("p2"); return ok })
	if lax.Status().NACKs != 0 {
		t.Errorf("lax sidecar NACKed: %s", lax.Status().LastNACK)
	}
	if err := c.w.UpsertRevocation(spiffeRevocation("r1", "spiffe://example.org/agent/x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revocation on the strict sidecar", func() bool { _, ok := strict.State().Revocation("r1"); return ok })

	// What agentauthctl sidecars shows: the strict sidecar NACKED policies and is SYNCED on the other types; the
	// lax one is SYNCED on all.
	syncOf := func(sc *sidecar) map[string]xdsserver.SyncStatus {
		n, ok := nodeByID(c.srv, sc.id.String())
		if !ok {
			return nil
		}
		cur, out := c.pub.Versions(), map[string]xdsserver.SyncStatus{}
		for _, typeURL := range agentauthv1.ServedTypes() {
			out[xds.ShortType(typeURL)] = n.Sync(typeURL, cur[typeURL])
		}
		return out
	}
	allSynced := map[string]xdsserver.SyncStatus{"Policy": xdsserver.Synced, "Revocation": xdsserver.Synced, "RiskState": xdsserver.Synced, "TrustBundle": xdsserver.Synced}
	strictWant := maps.Clone(allSynced)
	strictWant["Policy"] = xdsserver.NACKed
	waitFor(t, "strict: policy NACKED, the rest SYNCED", func() bool { return maps.Equal(syncOf(strict), strictWant) })
	waitFor(t, "lax: all SYNCED", func() bool { return maps.Equal(syncOf(lax), allSynced) })

	// Fixing the policy clears the way.
	if err := c.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll), policy("p2", `forbid (principal, action, resource);`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fixed policy", func() bool { _, ok := strict.State().Policy("p2"); return ok })
	waitFor(t, "strict: all SYNCED after the fix", func() bool { return maps.Equal(syncOf(strict), allSynced) })
}

func TestControllerRestartAndDown(t *testing.T) {
	ca := testca.New(t, td)
	c := newController(t, ca)
	if err := c.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll), policy("p2", permitAll)}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := c.w.UpsertRevocation(spiffeRevocation(fmt.Sprintf("r%d", i), fmt.Sprintf("spiffe://example.org/agent/%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.w.SetTrustBundle(trustBundle(ca, 1)); err != nil {
		t.Fatal(err)
	}
	sc := c.sidecar("a", nil, nil)
	waitFor(t, "the initial state", func() bool {
		s := sc.State()
		return len(s.Revocations()) == 5 && len(s.Policies()) == 2 && len(s.TrustBundles()) == 1
	})
	received := sc.Status().Received
	if received != 8 {
		t.Fatalf("initial sync received %d resources, want 8", received)
	}

	// Controller down: the sidecar says so and keeps enforcing.
	c.stop()
	waitFor(t, "the sidecar to notice", func() bool { return !sc.Status().Connected })
	st := sc.Status()
	if !st.Synced || st.LastError == "" {
		t.Errorf("status while down: %+v", st)
	}
	t.Logf("while down: connected=%t synced=%t last error %q", st.Connected, st.Synced, st.LastError)
	if r := sc.State().Revoked("spiffe", "", "spiffe://example.org/agent/3", time.Now(), time.Now()); r.GetId() != "r3" {
		t.Errorf("revocation not enforced while the controller is down: %v", r)
	}
	if len(sc.State().Policies()) != 2 {
		t.Errorf("policies lost while the controller is down")
	}
	if m := gather(t, NewClientCollector(sc.Client)); m["agentauth_xds_connected"] != 0 || m["agentauth_xds_synced"] != 1 ||
		m["agentauth_xds_resources/Revocation"] != 5 || m["agentauth_xds_connects_total"] != 1 {
		t.Errorf("metrics while down: %v", m)
	}

	// While it is down, an operator changes the store: one revocation more, one less.
	st2, err := store.Open(c.path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Revocations().Put(spiffeRevocation("r9", "spiffe://example.org/agent/9")); err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Revocations().Delete("r0"); err != nil {
		t.Fatal(err)
	}
	if err := st2.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart on the same file and port: the sidecar resumes and gets only the difference.
	c.start()
	waitFor(t, "the sidecar to reconnect and converge", func() bool {
		s := sc.State()
		_, has9 := s.Revocation("r9")
		_, has0 := s.Revocation("r0")
		return sc.Status().Connected && has9 && !has0
	})
	waitFor(t, "ACKs after the restart", func() bool {
		n, ok := nodeByID(c.srv, sc.id.String())
		return ok && len(n.Acked) == len(agentauthv1.ServedTypes())
	})
	if got := sc.Status().Received - received; got != 1 {
		t.Errorf("resume received %d resources, want 1 (r9 only): a full re-download?", got)
	}
	if sc.Status().Connects != 2 {
		t.Errorf("connects %d, want 2", sc.Status().Connects)
	}
	if len(sc.State().Revocations()) != 5 || len(sc.State().Policies()) != 2 {
		t.Errorf("state after restart: %d revocations, %d policies", len(sc.State().Revocations()), len(sc.State().Policies()))
	}
	// And the restarted controller serves new changes.
	if err := c.w.DeleteRevocation("r9"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion", func() bool { _, ok := sc.State().Revocation("r9"); return !ok })
}

func TestRevocationReachesEverySidecar(t *testing.T) {
	ca := testca.New(t, td)
	c := newController(t, ca)
	const n = 20
	var sidecars []*sidecar
	for i := range n {
		sidecars = append(sidecars, c.sidecar(fmt.Sprintf("s%d", i), nil, nil))
	}
	for _, s := range sidecars {
		s.waitSynced(t)
	}
	waitFor(t, "every node listed", func() bool { return len(c.srv.Nodes()) == n })
	before := make([]int, n)
	for i, s := range sidecars {
		s.mu.Lock()
		before[i] = len(s.updates)
		s.mu.Unlock()
	}
	if err := c.w.UpsertRevocation(spiffeRevocation("r1", "spiffe://example.org/agent/s3")); err != nil {
		t.Fatal(err)
	}
	for i, s := range sidecars {
		// Exactly one revocation update that changed something, naming r1, since the upsert; an update of another
		// type, or the first (empty) revocation answer reported late, may come before or after it: a sidecar counts
		// as synced before its last first answer is reported.
		revUpdates := func() []Update {
			s.mu.Lock()
			defer s.mu.Unlock()
			var revs []Update
			for _, u := range s.updates[before[i]:] {
				if u.TypeURL == agentauthv1.RevocationType && len(u.Updated)+len(u.Removed) > 0 {
					revs = append(revs, u)
				}
			}
			return revs
		}
		// The state is swapped before the update is reported, so both are waited for.
		waitFor(t, "revocation on "+s.id.String(), func() bool {
			return s.State().Revoked("spiffe", "", "spiffe://example.org/agent/s3", time.Now(), time.Now()) != nil &&
				len(revUpdates()) > 0
		})
		if revs := revUpdates(); len(revs) != 1 || !slices.Equal(revs[0].Updated, []string{"r1"}) {
			t.Errorf("%s: revocation updates since the upsert %+v, want one updating r1", s.id, revs)
		}
	}
	if err := c.w.DeleteRevocation("r1"); err != nil {
		t.Fatal(err)
	}
	for _, s := range sidecars {
		waitFor(t, "removal on "+s.id.String(), func() bool { _, ok := s.State().Revocation("r1"); return !ok })
	}
}

func TestClientWithoutValidSVIDIsRefused(t *testing.T) {
	ca := testca.New(t, td)
	other := testca.New(t, spiffeid.RequireTrustDomainFromString("evil.example"))
	c := newController(t, ca)
	if err := c.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tls  func() *tls.Config
	}{
		{"no certificate", func() *tls.Config {
			return tlsconfig.TLSClientConfig(ca.X509Bundle(), tlsconfig.AuthorizeID(controllerID))
		}},
		{"SVID of another trust domain", func() *tls.Config {
			svid := other.CreateX509SVID(spiffeid.RequireFromPath(other.TrustDomain(), "/agent/a"))
			return tlsconfig.MTLSClientConfig(svid, ca.X509Bundle(), tlsconfig.AuthorizeID(controllerID))
		}},
		{"expired SVID", func() *tls.Config {
			svid := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agent/old"), testca.WithNotAfter(time.Now().Add(-time.Minute)))
			return tlsconfig.MTLSClientConfig(svid, ca.X509Bundle(), tlsconfig.AuthorizeID(controllerID))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := c.sidecar("refused", tt.tls(), nil)
			waitFor(t, "the refusal", func() bool { return sc.Status().LastError != "" })
			st := sc.Status()
			t.Logf("client error: %s", st.LastError)
			if st.Connected || st.Connects != 0 || st.Received != 0 || len(sc.State().Policies()) != 0 {
				t.Errorf("refused client got in: %+v", st)
			}
			sc.stop()
			if len(c.srv.Nodes()) != 0 {
				t.Errorf("nodes: %+v", c.srv.Nodes())
			}
		})
	}
}

func TestNodeIdentityComesFromSVID(t *testing.T) {
	ca := testca.New(t, td)
	c := newController(t, ca)
	sc := c.sidecar("honest", nil, func(cfg *ClientConfig) { cfg.NodeID = "spiffe://example.org/agent/admin" })
	sc.waitSynced(t)
	nodes := c.srv.Nodes()
	if len(nodes) != 1 {
		t.Fatalf("nodes: %+v", nodes)
	}
	if nodes[0].ID != "spiffe://example.org/agent/honest" || nodes[0].ClaimedID != "spiffe://example.org/agent/admin" {
		t.Errorf("node identity: id %q claimed %q", nodes[0].ID, nodes[0].ClaimedID)
	}
}

// rawStream opens an ADS stream with a valid SVID, for requests our Client would never send.
func rawStream(t *testing.T, c *controller) (discovery.AggregatedDiscoveryServiceClient, func()) {
	t.Helper()
	tlsConf := tlsconfig.MTLSClientConfig(c.ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agent/raw")), c.ca.X509Bundle(), tlsconfig.AuthorizeID(controllerID))
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)))
	if err != nil {
		t.Fatal(err)
	}
	return discovery.NewAggregatedDiscoveryServiceClient(conn), func() { _ = conn.Close() }
}

func TestBadRequestsGetClearErrors(t *testing.T) {
	ca := testca.New(t, td)
	c := newController(t, ca)
	if err := c.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll)}); err != nil {
		t.Fatal(err)
	}
	version, _ := c.st.Version()
	ads, closeConn := rawStream(t, c)
	defer closeConn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("unknown type", func(t *testing.T) {
		str, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := str.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: "type.googleapis.com/agentauth.v1.Secret", ResourceNamesSubscribe: []string{"*"}}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		_, err = str.Recv()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "agentauth.v1.Secret") {
			t.Fatalf("unknown type: %v", err)
		}
		t.Log(err)
	})
	for _, req := range []*discovery.DeltaDiscoveryRequest{
		{TypeUrl: agentauthv1.PolicyType, ResourceNamesSubscribe: []string{"p1"}},
		{TypeUrl: agentauthv1.PolicyType, ResourceNamesSubscribe: []string{"*"}, ResourceNamesUnsubscribe: []string{"p1"}},
	} {
		t.Run(fmt.Sprintf("named subscription %v -%v", req.ResourceNamesSubscribe, req.ResourceNamesUnsubscribe), func(t *testing.T) {
			str, err := ads.DeltaAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := str.Send(req); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			_, err = str.Recv()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "wildcard") {
				t.Fatalf("named subscription: %v", err)
			}
			t.Log(err)
		})
	}
	t.Run("state of the world", func(t *testing.T) {
		str, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The server may refuse the stream before reading anything: Send then reports io.EOF and Recv the status.
		if err := str.Send(&discovery.DiscoveryRequest{TypeUrl: agentauthv1.PolicyType}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		_, err = str.Recv()
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("sotw: %v", err)
		}
		t.Log(err)
	})
	if v, _ := c.st.Version(); v != version {
		t.Errorf("store version moved from %d to %d", version, v)
	}
	waitFor(t, "the policy cache to hold p1 only", func() bool { return c.pub.Len(agentauthv1.PolicyType) == 1 })
}

// gather collects c through a pedantic registry and returns each sample as name or name/label-value.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			switch {
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
