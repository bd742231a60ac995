package controller

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testca"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
)

// rotatingConfig is a controller whose 100-second root prepares its successor 30s in and activates it 50s in
// (published for 20s, svidTTL), and stays trusted for 50s more, with an audit log in auditDir. The successor
// prepares the next one 60s in and activates it 80s in, after the test.
func rotatingConfig(t *testing.T, auditDir string) *Config {
	t.Helper()
	return testConfig(t, ", svidTTL: 20s, caTTL: 100s, caPrepareAt: 0.3, caActivateAt: 0.5}\naudit: {dir: "+auditDir)
}

// joinWorkload attests a new workload called name with a join token from the admin API.
func joinWorkload(t *testing.T, c *Controller, name string) *workload {
	t.Helper()
	code, body := adminPost(t, adminClient(c.cfg), "/v1/join-tokens",
		JoinTokenRequest{SPIFFEID: spiffeid.RequireFromPath(c.td, "/"+name).String(), TTL: time.Hour})
	if code != http.StatusCreated {
		t.Fatalf("join token: %d %s", code, body)
	}
	var jt JoinTokenResponse
	if err := json.Unmarshal(body, &jt); err != nil {
		t.Fatal(err)
	}
	w, err := attestWorkload(t, c.issuerLn().Addr().String(), c.ca, jt.Token)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// bundleOf is the X.509 bundle the issuer handed w.
func bundleOf(w *workload) *x509bundle.Bundle { return w.issued.X509Bundle }

// signedBy reports whether w's SVID was signed by root.
func signedBy(w *workload, root *x509.Certificate) bool {
	return w.svid.Certificates[0].CheckSignatureFrom(root) == nil
}

// TestControllerRotatesCA runs a controller with a 40-second root through a rotation in real time. A workload
// that renewed while the successor was prepared (SVID of the old root, bundle of both) and one that joined after
// the activation (SVID of the new root) authenticate each other over mTLS on real sockets. The xDS trust bundle
// and bundle.pem carry the prepared root before it signs; the controller's own SVID moves to the new root; each
// step is logged in the audit log and counted. A restart loads the rotated CA.
func TestControllerRotatesCA(t *testing.T) {
	auditDir := filepath.Join(t.TempDir(), "audit")
	cfg := rotatingConfig(t, auditDir)
	c, stop := runController(t, cfg)
	addr := c.issuerLn().Addr().String()
	first := c.ca.Root()

	early := joinWorkload(t, c, "early")
	if len(early.issued.X509Bundle.X509Authorities()) != 1 || !signedBy(early, first) {
		t.Fatalf("before any rotation: bundle of %d roots", len(early.issued.X509Bundle.X509Authorities()))
	}
	await(t, "a successor root is prepared", func() bool { return c.ca.Prepared() != nil })
	prepared := c.ca.Prepared()
	if c.ca.Generation() != 0 {
		t.Fatal("the prepared root was activated in the same step")
	}
	// The rotator applies the step (trust bundle, bundle.pem) just after the CA has taken it.
	await(t, "the xDS trust bundle carries the prepared root", func() bool {
		tb, err := c.store.TrustBundles().Get(c.td.Name())
		return err == nil && len(tb.GetX509Authorities()) == 2 && tb.GetSequence() == 2
	})
	await(t, "bundle.pem carries the prepared root", func() bool {
		return pemCerts(t, filepath.Join(cfg.DataDir, "bundle.pem")) == 2
	})
	// A workload joins while the successor is prepared and renews at half its SVID's life, as a sidecar does,
	// until the successor is activated: old is its last SVID of the first root.
	old := joinWorkload(t, c, "old")
	for cur := old; ; {
		if signedBy(cur, first) {
			old = cur
			if n := len(cur.issued.X509Bundle.X509Authorities()); n != 2 {
				t.Fatalf("issued while prepared: a bundle of %d roots", n)
			}
		}
		if c.ca.Generation() == 1 {
			break
		}
		if time.Now().After(cur.svid.Certificates[0].NotAfter.Add(-10 * time.Second)) {
			var err error
			if cur, err = renewWorkload(t, addr, c.ca, cur); err != nil {
				t.Fatal(err)
			}
		}
		if time.Since(first.NotBefore) > 3*time.Minute {
			t.Fatal("the prepared root was not activated within 3 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !c.ca.Root().Equal(prepared) {
		t.Fatal("another root than the prepared one was activated")
	}
	late := joinWorkload(t, c, "late")
	if !signedBy(late, prepared) {
		t.Fatal("a workload that joined after the activation was not signed by the new root")
	}
	for _, tc := range []struct {
		name           string
		server, client *workload
	}{
		{"old root serves new root", old, late},
		{"new root serves old root", late, old},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := testca.MTLSEcho(t, tc.server.svid, bundleOf(tc.server), tc.client.svid, bundleOf(tc.client)); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A workload still on the old root renews with the SVID it holds and moves to the new root.
	moved, err := renewWorkload(t, addr, c.ca, old)
	if err != nil {
		t.Fatal(err)
	}
	if !signedBy(moved, prepared) {
		t.Error("a renewal after the activation was not signed by the new root")
	}
	await(t, "the controller's own SVID is reissued from the new root", func() bool {
		s, _ := c.self.GetX509SVID()
		return s.Certificates[0].CheckSignatureFrom(prepared) == nil
	})
	if v := opsMetric(t, c, `agentauth_ca_rotation_steps_total{step="activated"}`); v != "1" {
		t.Errorf("activated steps metric = %q, want 1", v)
	}
	if v := opsMetric(t, c, "agentauth_ca_generation"); v != "1" {
		t.Errorf("generation metric = %q, want 1", v)
	}
	stop()

	steps := map[string]int{}
	for _, r := range controllerRecords(t, c, auditDir) {
		if r.Action == ActionCARotation {
			steps[strings.Fields(r.Reason)[0]]++
		}
	}
	if steps["prepared"] < 1 || steps["activated"] != 1 || steps["retired"] != 1 {
		t.Errorf("rotation audit records by step: %v", steps)
	}

	// A restart (bbolt) loads the rotated CA: generation 1 active, the first root retired in the bundle.
	again, err := New(context.Background(), cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	if again.ca.Generation() != 1 || !again.ca.Root().Equal(prepared) || len(again.ca.Roots()) < 2 {
		t.Errorf("after a restart: generation %d, %d roots in the bundle", again.ca.Generation(), len(again.ca.Roots()))
	}
}

// pemCerts counts the certificates in a PEM file.
func pemCerts(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return n
		}
		n++
	}
}

// opsMetric reads one series from the ops endpoint's /metrics ("" when absent).
func opsMetric(t *testing.T, c *Controller, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + c.opsLn().Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return v
		}
	}
	return ""
}

// TestReplicasRotateCAOnTheLeader: of two replicas sharing state on a real API server, only the leader takes the
// CA's rotation steps; the other follows the records it watches, so both trust the prepared root, then both issue
// from it once it is active, serve the same trust bundle, and reissue their own SVIDs from it.
func TestReplicasRotateCAOnTheLeader(t *testing.T) {
	rs := newReplicaSet(t)
	rs.tune = func(cfg *Config) {
		// A 60-second root: the successor is prepared 24s in, activated 33s in (published for 9s, over svidTTL);
		// it prepares the next one 15s after that.
		cfg.Issuer.SVIDTTL, cfg.Issuer.CATTL, cfg.Issuer.CAPrepareAt, cfg.Issuer.CAActivateAt = 5*time.Second, time.Minute, 0.4, 0.55
	}
	lead, other := leading(t, rs.start(t, "a", "b"), "ca_rotation")
	first := lead.c.ca.Root()
	steps := func(r *replica, step string) float64 {
		var m dto.Metric
		if err := r.c.metrics.caSteps.WithLabelValues(step).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}

	await(t, "both replicas trust the same prepared root", func() bool {
		p, q := lead.c.ca.Prepared(), other.c.ca.Prepared()
		return p != nil && q != nil && p.Equal(q)
	})
	prepared := lead.c.ca.Prepared()
	await(t, "both replicas issue from the prepared root", func() bool {
		return lead.c.ca.Root().Equal(prepared) && other.c.ca.Root().Equal(prepared)
	})
	for _, r := range []*replica{lead, other} {
		key, _, _, _ := renewalKeys(t)
		chain, err := r.c.ca.IssueX509SVID(context.Background(), key.Public(), spiffeid.RequireFromPath(r.c.td, "/agent"), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if chain[0].CheckSignatureFrom(prepared) != nil {
			t.Errorf("%s issues from another root than the activated one", r.cfg.State.Kubernetes.Identity)
		}
		if roots := r.c.ca.Roots(); !slices.ContainsFunc(roots, first.Equal) {
			t.Errorf("%s: the retired root is not in its bundle (%d roots)", r.cfg.State.Kubernetes.Identity, len(roots))
		}
		await(t, r.cfg.State.Kubernetes.Identity+"'s own SVID reissued from the new root", func() bool {
			s, _ := r.c.self.GetX509SVID()
			return s.Certificates[0].CheckSignatureFrom(prepared) == nil
		})
	}
	await(t, "the trust bundle the other replica serves is the CA's after the activation", func() bool {
		tb, err := other.c.store.TrustBundles().Get(other.c.td.Name())
		return err == nil && tb.GetSequence() >= 3 && proto.Equal(tb, trustBundle(other.c.ca))
	})
	if steps(lead, "prepared") < 1 || steps(lead, "activated") != 1 {
		t.Errorf("leader's steps: prepared %v, activated %v; want 1 each (2 prepared once the next successor is)", steps(lead, "prepared"), steps(lead, "activated"))
	}
	for _, step := range []string{"prepared", "activated", "retired", "failed"} {
		if n := steps(other, step); n != 0 {
			t.Errorf("the replica that does not lead took %v %s steps", n, step)
		}
	}
}
