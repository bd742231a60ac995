package crd

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestAccepted(t *testing.T) {
	then := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	was := Status{ObservedGeneration: 3, Conditions: []metav1.Condition{
		{Type: "Other", Status: metav1.ConditionTrue, Reason: "X", Message: "kept", LastTransitionTime: then},
		{Type: ConditionAccepted, Status: metav1.ConditionTrue, Reason: "Compiled", Message: "ok", ObservedGeneration: 3, LastTransitionTime: then},
	}}
	tests := []struct {
		name        string
		st          Status
		generation  int64
		accepted    bool
		reason, msg string
		wantChanged bool
		wantLTTKept bool // the Accepted condition's lastTransitionTime is the old one
	}{
		{"unchanged", was, 3, true, "Compiled", "ok", false, true},
		{"same status, new message", was, 3, true, "Compiled", "ok again", true, true},
		{"new generation", was, 4, true, "Compiled", "ok", true, true},
		{"status flips", was, 3, false, "Invalid", "line 2", true, false},
		{"first condition", Status{}, 1, false, "Invalid", "line 2", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := Accepted(tc.st, tc.generation, tc.accepted, tc.reason, tc.msg)
			if changed != tc.wantChanged {
				t.Fatalf("changed = %v, want %v", changed, tc.wantChanged)
			}
			if got.ObservedGeneration != tc.generation {
				t.Errorf("observedGeneration = %d, want %d", got.ObservedGeneration, tc.generation)
			}
			var acc *metav1.Condition
			for i := range got.Conditions {
				if got.Conditions[i].Type == ConditionAccepted {
					acc = &got.Conditions[i]
				}
			}
			if acc == nil {
				t.Fatalf("no Accepted condition in %+v", got.Conditions)
			}
			want := metav1.ConditionFalse
			if tc.accepted {
				want = metav1.ConditionTrue
			}
			if acc.Status != want || acc.Reason != tc.reason || acc.Message != tc.msg || acc.ObservedGeneration != tc.generation {
				t.Errorf("Accepted = %+v", acc)
			}
			if kept := acc.LastTransitionTime.Equal(&then); kept != tc.wantLTTKept {
				t.Errorf("lastTransitionTime %v kept = %v, want %v", acc.LastTransitionTime, kept, tc.wantLTTKept)
			}
			if acc.LastTransitionTime.IsZero() {
				t.Error("lastTransitionTime is zero")
			}
			if len(tc.st.Conditions) == 2 && (len(got.Conditions) != 2 || got.Conditions[0].Message != "kept") {
				t.Errorf("other conditions not kept: %+v", got.Conditions)
			}
		})
	}
	// The input is not modified.
	if was.Conditions[1].Message != "ok" {
		t.Errorf("Accepted modified its input: %+v", was.Conditions[1])
	}
}

func TestDecodeAll(t *testing.T) {
	obj := func(name string, spec any) any {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": Group + "/" + Version, "kind": "CedarPolicy",
			"metadata": map[string]any{"name": name, "generation": int64(2)},
			"spec":     spec,
		}}
	}
	got, err := decodeAll[CedarPolicy]([]any{obj("b", map[string]any{"cedar": "B"}), obj("a", map[string]any{"cedar": "A", "description": "d"})})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[0].Spec.Cedar != "A" || got[0].Spec.Description != "d" ||
		got[0].Generation != 2 || got[1].Name != "b" {
		t.Fatalf("decodeAll = %+v", got)
	}
	if _, err := decodeAll[CedarPolicy]([]any{obj("a", map[string]any{"cedar": 7})}); err == nil {
		t.Fatal("a spec.cedar that is a number decoded")
	}
}
