package k8s

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/agentauth/agentauth/pkg/crd"
)

// newCedarPolicy is a CedarPolicy object for the dynamic client.
func newCedarPolicy(name, cedar string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": crd.Group + "/" + crd.Version, "kind": "CedarPolicy",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"cedar": cedar},
	}}
}

// createWhenEstablished creates obj, retrying while the API server does not serve its kind yet (a CRD just applied).
func createWhenEstablished(t *testing.T, dyn dynamic.Interface, obj *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := dyn.Resource(crd.CedarPolicies).Create(ctx, obj, metav1.CreateOptions{})
		if err == nil {
			return out
		}
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatalf("creating CedarPolicy %s: %v", obj.GetName(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCRDWatchAndStatus: crd.Watch hands over every CedarPolicy, by name, after each create, update and delete, and
// StatusWriter sets the Accepted condition with metav1.Condition semantics, through the status subresource the
// chart's CRD defines.
func TestCRDWatchAndStatus(t *testing.T) {
	srv, _ := installChart(t)
	dyn := newApplier(t, srv).dyn
	ctx, cancel := context.WithCancel(context.Background())
	sets := make(chan []crd.CedarPolicy, 100)
	done := make(chan error, 1)
	go func() {
		done <- crd.Watch(ctx, dyn, crd.CedarPolicies, zaptest.NewLogger(t), func(ps []crd.CedarPolicy) { sets <- ps })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	prefix := fmt.Sprintf("watch-%d-", time.Now().UnixNano())
	// waitFor waits for a call whose objects of this test have these names and texts.
	waitFor := func(want ...string) []crd.CedarPolicy {
		t.Helper()
		deadline := time.After(time.Minute)
		var last []string
		for {
			select {
			case ps := <-sets:
				var got []string
				var mine []crd.CedarPolicy
				for _, p := range ps {
					if len(p.Name) > len(prefix) && p.Name[:len(prefix)] == prefix {
						got = append(got, p.Name[len(prefix):]+"="+p.Spec.Cedar)
						mine = append(mine, p)
					}
				}
				if slices.Equal(got, want) {
					return mine
				}
				last = got
			case <-deadline:
				t.Fatalf("no call with %q; last %q", want, last)
			}
		}
	}
	createWhenEstablished(t, dyn, newCedarPolicy(prefix+"b", "B"))
	waitFor("b=B")
	createWhenEstablished(t, dyn, newCedarPolicy(prefix+"a", "A"))
	ps := waitFor("a=A", "b=B")

	w := crd.StatusWriter{Client: dyn, Resource: crd.CedarPolicies}
	a := ps[0]
	if err := w.SetAccepted(ctx, a.ObjectMeta, a.Status, false, "Invalid", "line 1"); err != nil {
		t.Fatal(err)
	}
	first := acceptedOf(t, dyn, a.Name)
	if first.Status != metav1.ConditionFalse || first.Reason != "Invalid" || first.ObservedGeneration != a.Generation {
		t.Fatalf("Accepted = %+v", first)
	}
	// The watch sees the status write; the same status with another message keeps lastTransitionTime.
	for ps = waitFor("a=A", "b=B"); meta.FindStatusCondition(ps[0].Status.Conditions, crd.ConditionAccepted) == nil; {
		ps = waitFor("a=A", "b=B")
	}
	if err := w.SetAccepted(ctx, ps[0].ObjectMeta, ps[0].Status, false, "Invalid", "line 2"); err != nil {
		t.Fatal(err)
	}
	second := acceptedOf(t, dyn, a.Name)
	if second.Message != "line 2" || !second.LastTransitionTime.Equal(&first.LastTransitionTime) {
		t.Fatalf("Accepted = %+v after %+v", second, first)
	}
	// A write with a stale resourceVersion is dropped without an error: the watch brings the newer object.
	if err := w.SetAccepted(ctx, a.ObjectMeta, a.Status, true, "Compiled", "stale"); err != nil {
		t.Fatal(err)
	}
	if c := acceptedOf(t, dyn, a.Name); c.Message != "line 2" {
		t.Fatalf("a stale write landed: %+v", c)
	}

	obj, err := dyn.Resource(crd.CedarPolicies).Get(ctx, prefix+"b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(obj.Object, "B2", "spec", "cedar"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(crd.CedarPolicies).Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("a=A", "b=B2")
	if err := dyn.Resource(crd.CedarPolicies).Delete(ctx, prefix+"a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("b=B2")
	if err := dyn.Resource(crd.CedarPolicies).Delete(ctx, prefix+"b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor()
}

// acceptedOf reads the Accepted condition of the named CedarPolicy.
func acceptedOf(t *testing.T, dyn dynamic.Interface, name string) metav1.Condition {
	t.Helper()
	obj, err := dyn.Resource(crd.CedarPolicies).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var p crd.CedarPolicy
	if err := crd.Decode(obj, &p); err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(p.Status.Conditions, crd.ConditionAccepted)
	if c == nil {
		t.Fatalf("CedarPolicy %s has no Accepted condition: %+v", name, p.Status)
	}
	return *c
}
