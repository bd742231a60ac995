package controller

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/kubetest"
	"github.com/agentauth/agentauth/pkg/crd"
)

// installCedarPolicyCRD installs the CedarPolicy CRD in srv (once per server: it is cluster-scoped) and returns
// the resource once the API server serves it. Only what the controller relies on is the chart's: the group,
// version and names, cluster scope and the status subresource; the chart's full schema is tested against a real
// API server in test/k8s.
func installCedarPolicyCRD(t *testing.T, srv *kubetest.Server) dynamic.NamespaceableResourceInterface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	preserve := map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	def := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": crd.CedarPolicies.Resource + "." + crd.Group},
		"spec": map[string]any{
			"group": crd.Group, "scope": "Cluster",
			"names": map[string]any{"kind": "CedarPolicy", "listKind": "CedarPolicyList",
				"plural": crd.CedarPolicies.Resource, "singular": "cedarpolicy"},
			"versions": []any{map[string]any{
				"name": crd.Version, "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object",
					"required":   []any{"spec"},
					"properties": map[string]any{"spec": preserve, "status": preserve}}},
			}},
		},
	}}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dyn.Resource(crds).Create(context.Background(), def, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	policies := dyn.Resource(crd.CedarPolicies)
	await(t, "the API server to serve CedarPolicy objects", func() bool {
		_, err := policies.List(context.Background(), metav1.ListOptions{})
		return err == nil
	})
	return policies
}

// policyObjects creates, edits and reads CedarPolicy objects, all named with a prefix of their own (the resource
// is cluster-scoped, the API server the package's) and deleted at the test's end. Nothing checks them at
// admission: no webhook is registered, so an object that does not compile is stored, as when the webhook is down.
type policyObjects struct {
	api    dynamic.ResourceInterface
	prefix string
}

func (p policyObjects) create(t *testing.T, name, cedar string) {
	t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": crd.Group + "/" + crd.Version, "kind": "CedarPolicy",
		"metadata": map[string]any{"name": p.prefix + name},
		"spec":     map[string]any{"cedar": cedar},
	}}
	if _, err := p.api.Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.api.Delete(context.Background(), p.prefix+name, metav1.DeleteOptions{}) })
}

func (p policyObjects) edit(t *testing.T, name, cedar string) {
	t.Helper()
	obj, err := p.api.Get(context.Background(), p.prefix+name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(obj.Object, cedar, "spec", "cedar"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.api.Update(context.Background(), obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (p policyObjects) delete(t *testing.T, name string) {
	t.Helper()
	if err := p.api.Delete(context.Background(), p.prefix+name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// awaitAccepted waits until the named object's Accepted condition has status and reason for the object's
// current generation (status.observedGeneration too), and returns it.
func (p policyObjects) awaitAccepted(t *testing.T, name string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	await(t, fmt.Sprintf("CedarPolicy %s Accepted=%s (%s) for its generation", name, status, reason), func() bool {
		u, err := p.api.Get(context.Background(), p.prefix+name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var obj crd.CedarPolicy
		if err := crd.Decode(u, &obj); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(obj.Status.Conditions, crd.ConditionAccepted)
		if c == nil {
			return false
		}
		got = *c
		return c.Status == status && c.Reason == reason && c.ObservedGeneration == obj.Generation &&
			obj.Status.ObservedGeneration == obj.Generation
	})
	return got
}

// runsWork reports whether r runs the singleton work now (its agentauth_singleton_running gauge).
func (r *replica) runsWork(t *testing.T, work string) bool {
	t.Helper()
	var m dto.Metric
	if err := r.c.metrics.singletons.WithLabelValues(work).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue() == 1
}

// served is r's stored policy set (id → Cedar text: what a sidecar compiles) and the system version its xDS
// publisher serves of the Policy type, with how many policies that is.
func (r *replica) served(t *testing.T) (set map[string]string, version string, n int) {
	t.Helper()
	ps, err := r.c.store.Policies().List()
	if err != nil {
		t.Fatal(err)
	}
	set = make(map[string]string, len(ps))
	for _, p := range ps {
		set[p.GetId()] = p.GetCedar()
	}
	return set, r.c.pub.Versions()[agentauthv1.PolicyType], r.c.pub.Len(agentauthv1.PolicyType)
}

// awaitServing waits until every replica of rs stores want and serves it to sidecars at one system version (it
// depends on the content only, so equal versions are equal sets), and returns that version.
func awaitServing(t *testing.T, rs []*replica, want map[string]string) string {
	t.Helper()
	var version string
	await(t, fmt.Sprintf("%d replicas serving the policy set %v", len(rs), want), func() bool {
		version = ""
		for _, r := range rs {
			set, v, n := r.served(t)
			if !maps.Equal(set, want) || n != len(want) || v == "" || (version != "" && v != version) {
				return false
			}
			version = v
		}
		return true
	})
	return version
}

// TestReplicasApplyCedarPolicies: with policy.source crd on shared Kubernetes state, the CedarPolicy objects are
// applied by the Lease holder alone, which writes their Accepted condition, and every replica serves the set
// applied. When the leader stops, the other takes the Lease and applies the next edit, and writes its status. An
// object that does not compile (past admission) is Accepted=False (Invalid) and holds a good one created meanwhile
// back (NotApplied); every replica keeps serving the last good set until it is deleted.
func TestReplicasApplyCedarPolicies(t *testing.T) {
	rs := newReplicaSet(t)
	policies := policyObjects{api: installCedarPolicyCRD(t, rs.srv), prefix: rs.ns + "-"}
	rs.tune = func(cfg *Config) { cfg.Policy = PolicyConfig{Source: PolicySourceCRD, Kubeconfig: rs.kubeconfig} }
	name := func(n string) string { return rs.ns + "-" + n }
	const (
		searchPolicy = `@id("agents-may-call-weather")
permit (principal, action, resource == Tool::"search.tools.local");
`
		latePolicy = `@id("agents-may-call-maps")
permit (principal, action, resource == Tool::"maps.tools.local");
`
	)
	leaseHolder := func() string {
		t.Helper()
		lease, err := rs.srv.Client.CoordinationV1().Leases(rs.ns).Get(context.Background(), "controller-leader", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *lease.Spec.HolderIdentity
	}

	// Two replicas: the Lease holder alone applies the set and writes the status; both serve it.
	lead, other := leading(t, rs.start(t, "a", "b"), "cedar_policies")
	if got, want := leaseHolder(), lead.cfg.State.Kubernetes.Identity; got != want {
		t.Fatalf("CedarPolicy objects applied by %s; the Lease is held by %s", want, got)
	}
	policies.create(t, "weather", weatherPolicy)
	policies.awaitAccepted(t, "weather", metav1.ConditionTrue, reasonCompiled)
	first := awaitServing(t, []*replica{lead, other}, map[string]string{name("weather"): weatherPolicy})
	if other.runsWork(t, "cedar_policies") || !lead.runsWork(t, "cedar_policies") {
		t.Fatal("the CedarPolicy objects are no longer applied by the Lease holder alone")
	}

	// The leader stops: the other takes the Lease, applies the edit, and writes its status.
	lead.stop()
	await(t, "the other replica applying CedarPolicy objects", func() bool { return other.runsWork(t, "cedar_policies") })
	if got, want := leaseHolder(), other.cfg.State.Kubernetes.Identity; got != want {
		t.Fatalf("the Lease is held by %q; want %q", got, want)
	}
	policies.edit(t, "weather", searchPolicy)
	policies.awaitAccepted(t, "weather", metav1.ConditionTrue, reasonCompiled)
	second := awaitServing(t, []*replica{other}, map[string]string{name("weather"): searchPolicy})
	if second == first {
		t.Fatalf("the edit did not change the served version %s", first)
	}

	// A replica started now serves the set from the state, and follows.
	joined := rs.start(t, "c")[0]
	good := map[string]string{name("weather"): searchPolicy}
	awaitServing(t, []*replica{other, joined}, good)

	// An object that does not compile: Invalid, with its line; a good one created after it waits (NotApplied,
	// naming the object at fault); the one already live stays Compiled; every replica keeps the last good set.
	policies.create(t, "broken", badPolicy)
	broken := policies.awaitAccepted(t, "broken", metav1.ConditionFalse, reasonInvalid)
	if !strings.Contains(broken.Message, "line 2, column") {
		t.Errorf("Invalid without the line: %q", broken.Message)
	}
	policies.create(t, "late", latePolicy)
	late := policies.awaitAccepted(t, "late", metav1.ConditionFalse, reasonNotApplied)
	if !strings.Contains(late.Message, name("broken")) {
		t.Errorf("NotApplied does not name the object at fault: %q", late.Message)
	}
	policies.awaitAccepted(t, "weather", metav1.ConditionTrue, reasonCompiled)
	for _, r := range []*replica{other, joined} {
		if set, v, n := r.served(t); !maps.Equal(set, good) || n != len(good) || v != second {
			t.Fatalf("replica %s serves %v (%d policies, version %s); want the last good set %v at version %s",
				r.cfg.State.Kubernetes.Identity, set, n, v, good, second)
		}
	}

	// Deleted, the broken object no longer holds the set back.
	policies.delete(t, "broken")
	policies.awaitAccepted(t, "late", metav1.ConditionTrue, reasonCompiled)
	awaitServing(t, []*replica{other, joined}, map[string]string{name("weather"): searchPolicy, name("late"): latePolicy})
}
