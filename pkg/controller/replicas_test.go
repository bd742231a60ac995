package controller

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/kubetest"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/signals"
)

// kube is the package's kube-apiserver (internal/kubetest), started by the first test that asks for it.
var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

var replicaNS atomic.Int64

// replicaSet is a namespace of a real API server and the kubeconfig to reach it, for controllers sharing state
// there.
type replicaSet struct {
	srv        *kubetest.Server
	ns         string
	kubeconfig string
	// extra is YAML added to each replica's config (an ssf section).
	extra string
	// tune, when set, adjusts each replica's config before it is validated.
	tune func(*Config)
}

func newReplicaSet(t *testing.T) *replicaSet {
	t.Helper()
	srv := kube.Server(t)
	ns := fmt.Sprintf("replicas-%d", replicaNS.Add(1))
	if _, err := srv.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: srv.Config.Host, CertificateAuthorityData: srv.Config.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: srv.Config.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return &replicaSet{srv: srv, ns: ns, kubeconfig: path}
}

// config is the config of the replica called identity: its own dataDir and listeners, the shared state, and a
// short Lease so that a takeover happens within seconds.
func (rs *replicaSet) config(t *testing.T, identity string) *Config {
	t.Helper()
	cfg := ssfConfig(t, rs.extra)
	cfg.State = StateConfig{Backend: BackendKubernetes, Kubernetes: &KubernetesStateConfig{Namespace: rs.ns,
		Kubeconfig: rs.kubeconfig, Identity: identity, LeaseName: "controller-leader",
		LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second, RetryPeriod: time.Second}}
	if rs.tune != nil {
		rs.tune(cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// replica is one running controller of a replicaSet.
type replica struct {
	c    *Controller
	cfg  *Config
	stop func() // stops Run and waits for it; also at the test's end
}

// start builds the replicas named ids at once (so they race to create the CA) and runs them.
func (rs *replicaSet) start(t *testing.T, ids ...string) []*replica {
	t.Helper()
	out := make([]*replica, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		cfg := rs.config(t, id)
		wg.Go(func() {
			c, err := New(context.Background(), cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named(id))
			out[i], errs[i] = &replica{c: c, cfg: cfg}, err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %s: %v", ids[i], err)
		}
	}
	for _, r := range out {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.c.Run(ctx) }()
		r.stop = sync.OnceFunc(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		t.Cleanup(r.stop)
	}
	return out
}

// runsHousekeeping reports whether r runs the singleton housekeeping now.
func (r *replica) runsHousekeeping() bool {
	var m dto.Metric
	if err := r.c.metrics.singletons.WithLabelValues("housekeeping").Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue() == 1
}

// await polls cond until it holds or a generous deadline passes (a Lease changes hands in seconds, slower on a
// loaded machine).
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 2 minutes: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReplicasShareTheCA: two controllers started at once on one state create one CA between them: the same root,
// the same WIT key, the same stored trust bundle, and a certificate either issues verifies under the other's
// bundle.
func TestReplicasShareTheCA(t *testing.T) {
	rs := newReplicaSet(t)
	r := rs.start(t, "a", "b")
	a, b := r[0].c, r[1].c
	if !a.ca.Root().Equal(b.ca.Root()) {
		t.Fatalf("two roots: serial %x and %x", a.ca.Root().SerialNumber, b.ca.Root().SerialNumber)
	}
	if !a.ca.WITBundle().Equal(b.ca.WITBundle()) {
		t.Fatal("two WIT signing keys")
	}
	ba, err := a.store.TrustBundles().Get("example.org")
	if err != nil {
		t.Fatal(err)
	}
	bb, err := b.store.TrustBundles().Get("example.org")
	if err != nil || !proto.Equal(ba, bb) {
		t.Fatalf("stored trust bundles differ: %v, %v", ba, bb)
	}
	// Each replica's own SVID is issued by the one CA.
	svid, err := b.self.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.ca.Root())
	opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := svid.Certificates[0].Verify(opts); err != nil {
		t.Fatalf("b's SVID does not verify under a's root: %v", err)
	}
	// A third replica, started later, loads the CA rather than creating one.
	c := rs.start(t, "c")[0].c
	if !c.ca.Root().Equal(a.ca.Root()) {
		t.Fatal("a replica started later made its own CA")
	}
}

// TestReplicasShareRevocations: a revocation made through one replica's admin API is in the other's revocation
// index (which refuses renewals and token requests there) and in what its xDS publisher serves.
func TestReplicasShareRevocations(t *testing.T) {
	rs := newReplicaSet(t)
	r := rs.start(t, "a", "b")
	a, b := r[0], r[1]
	const victim = "spiffe://example.org/agent/stolen"
	code, body := adminPost(t, adminClient(a.cfg), "/v1/revocations",
		RevokeRequest{Kind: "spiffe", Value: victim, Reason: "key leaked", NoRenew: true, NotBefore: new(time.Now())})
	if code != http.StatusCreated {
		t.Fatalf("revoke on a: %d %s", code, body)
	}
	await(t, "the revocation made on a in b's index", func() bool {
		return len(b.c.state.Revocations().About(revocation.KindSPIFFE, "", victim)) == 1
	})
	await(t, "the revocation made on a served by b's xDS publisher", func() bool {
		return b.c.pub.Len(agentauthv1.RevocationType) == 1
	})
}

// leading returns which of rs runs the singleton work (work), once exactly one does, and the other.
func leading(t *testing.T, rs []*replica, work string) (lead, other *replica) {
	t.Helper()
	runs := func(r *replica) bool {
		var m dto.Metric
		if err := r.c.metrics.singletons.WithLabelValues(work).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue() == 1
	}
	await(t, "one replica running "+work, func() bool { return runs(rs[0]) != runs(rs[1]) })
	if runs(rs[0]) {
		return rs[0], rs[1]
	}
	return rs[1], rs[0]
}

// TestReplicasPollSSFFromTheLeader: of two replicas with a poll-mode SSF stream configured, only the leader creates
// the stream and polls it, and a SET it polls is in both replicas' state; when it stops, the other takes over the
// same stream (its id is in the shared state) and polls the next SET.
func TestReplicasPollSSFFromTheLeader(t *testing.T) {
	tr := newTransmitter(t)
	rs := newReplicaSet(t)
	rs.extra = fmt.Sprintf(`ssf:
  listen: 127.0.0.1:0
  transmitters:
    - issuer: %s
      audience: [%s]
      jwksURL: %s/jwks
      poll: {maxEvents: 10}
      stream: {authorization: %q, delivery: poll}
`, tr.Issuer, ssfAudience, tr.Issuer, mgmtToken)
	lead, other := leading(t, rs.start(t, "a", "b"), "ssf_clients")
	await(t, "the leader to verify the stream", func() bool { return streamVerified(t, lead.c, tr.Issuer) == "1" })
	tr.Enqueue(signEvent(tr, "first", agent("a"), signals.EventSessionRevoked))
	for _, r := range []*replica{lead, other} {
		await(t, "the polled revocation in both replicas", func() bool { _, ok := revokedBy(t, r.c, "first"); return ok })
	}
	lead.stop()
	await(t, "the other replica to verify the stream", func() bool { return streamVerified(t, other.c, tr.Issuer) == "1" })
	tr.Enqueue(signEvent(tr, "second", agent("b"), signals.EventSessionRevoked))
	await(t, "the SET polled by the new leader", func() bool { _, ok := revokedBy(t, other.c, "second"); return ok })
	if n := tr.Counts(); n.Created != 1 {
		t.Fatalf("%d streams created; want 1, taken over by the new leader", n.Created)
	}
}

// TestReplicasElectOneHousekeeper: of two replicas exactly one runs housekeeping at a time; when it stops, the
// other takes the Lease and runs it, and what was written before is all there.
func TestReplicasElectOneHousekeeper(t *testing.T) {
	rs := newReplicaSet(t)
	r := rs.start(t, "a", "b")
	await(t, "a replica running housekeeping", func() bool { return r[0].runsHousekeeping() || r[1].runsHousekeeping() })
	// Sampled over a few renewals of the Lease: never both, never neither.
	for range 40 {
		if r[0].runsHousekeeping() == r[1].runsHousekeeping() {
			t.Fatalf("housekeeping on a: %v, on b: %v; want exactly one", r[0].runsHousekeeping(), r[1].runsHousekeeping())
		}
		time.Sleep(100 * time.Millisecond)
	}
	lead, other := r[0], r[1]
	if !lead.runsHousekeeping() {
		lead, other = other, lead
	}
	if err := lead.c.state.UpsertRevocation(&agentauthv1.Revocation{Id: "kept",
		Subject: &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/agent/a"}}); err != nil {
		t.Fatal(err)
	}
	lead.stop()
	await(t, "the other replica running housekeeping", other.runsHousekeeping)
	lease, err := rs.srv.Client.CoordinationV1().Leases(rs.ns).Get(context.Background(), "controller-leader", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *lease.Spec.HolderIdentity, other.cfg.State.Kubernetes.Identity; got != want {
		t.Fatalf("the Lease is held by %q; want %q", got, want)
	}
	if _, err := other.c.store.Revocations().Get("kept"); err != nil {
		t.Fatalf("a revocation written through the old leader: %v", err)
	}
}
