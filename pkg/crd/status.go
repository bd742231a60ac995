package crd

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// FieldManager is the manager name of the controller's writes.
const FieldManager = "agentauth-controller"

// StatusWriter writes the Accepted condition of objects of one resource.
type StatusWriter struct {
	Client   dynamic.Interface
	Resource schema.GroupVersionResource
}

// Accepted returns st with the Accepted condition set for the object's generation (metav1.Condition semantics:
// lastTransitionTime changes only when the condition's status does), and whether that differs from st.
func Accepted(st Status, generation int64, accepted bool, reason, message string) (Status, bool) {
	out := Status{ObservedGeneration: generation, Conditions: make([]metav1.Condition, len(st.Conditions))}
	for i, c := range st.Conditions {
		out.Conditions[i] = *c.DeepCopy()
	}
	status := metav1.ConditionFalse
	if accepted {
		status = metav1.ConditionTrue
	}
	changed := meta.SetStatusCondition(&out.Conditions, metav1.Condition{Type: ConditionAccepted, Status: status,
		Reason: reason, Message: message, ObservedGeneration: generation})
	return out, changed || st.ObservedGeneration != generation
}

// SetAccepted sets the Accepted condition of obj (as last seen: its name, generation, resourceVersion and
// status) and writes the status only when it changes. The write carries obj's resourceVersion: if the object
// changed or went away since, nothing is written and SetAccepted returns nil, since the watch sees the change and
// the caller decides again.
func (w StatusWriter) SetAccepted(ctx context.Context, obj metav1.ObjectMeta, st Status, accepted bool, reason, message string) error {
	next, changed := Accepted(st, obj.Generation, accepted, reason, message)
	if !changed {
		return nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": obj.ResourceVersion},
		"status":   next,
	})
	if err != nil {
		return fmt.Errorf("crd: %w", err)
	}
	_, err = w.Client.Resource(w.Resource).Patch(ctx, obj.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager}, "status")
	switch {
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("crd: status of %s %s: %w", w.Resource.Resource, obj.Name, err)
	}
	return nil
}
