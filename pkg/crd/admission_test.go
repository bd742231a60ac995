package crd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/internal/admission"
	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// refuseBad refuses a CedarPolicy whose text is "bad".
func refuseBad(_ context.Context, p *CedarPolicy) error {
	if p.Spec.Cedar == "bad" {
		return errors.New("CedarPolicy " + p.Name + ": line 1: bad")
	}
	return nil
}

func reviewBody(t *testing.T, op admissionv1.Operation, group, kind, sub string, obj any) string {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Group: group, Version: Version, Kind: kind},
			Name: "p1", Operation: op, SubResource: sub, Object: runtime.RawExtension{Raw: raw}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestValidator(t *testing.T) {
	h := Validator("CedarPolicy", refuseBad, zap.NewNop())
	good := CedarPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p1"}, Spec: CedarPolicySpec{Cedar: "fine"}}
	bad := CedarPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p1"}, Spec: CedarPolicySpec{Cedar: "bad"}}
	tests := []struct {
		name        string
		contentType string
		body        string
		wantCode    int
		wantAllowed bool
		wantMsg     string
	}{
		{"good create", "application/json", reviewBody(t, admissionv1.Create, Group, "CedarPolicy", "", good), 200, true, ""},
		{"bad create", "application/json", reviewBody(t, admissionv1.Create, Group, "CedarPolicy", "", bad), 200, false, "CedarPolicy p1: line 1: bad"},
		{"bad update", "application/json", reviewBody(t, admissionv1.Update, Group, "CedarPolicy", "", bad), 200, false, "line 1"},
		{"delete is not checked", "application/json", reviewBody(t, admissionv1.Delete, Group, "CedarPolicy", "", bad), 200, true, ""},
		{"status is not checked", "application/json", reviewBody(t, admissionv1.Update, Group, "CedarPolicy", "status", bad), 200, true, ""},
		{"other kind", "application/json", reviewBody(t, admissionv1.Create, Group, "SSFTransmitter", "", bad), 200, true, ""},
		{"other group", "application/json", reviewBody(t, admissionv1.Create, "example.com", "CedarPolicy", "", bad), 200, true, ""},
		{"spec of the wrong type", "application/json", reviewBody(t, admissionv1.Create, Group, "CedarPolicy", "",
			map[string]any{"spec": map[string]any{"cedar": 1}}), 200, false, "does not decode"},
		{"not JSON", "application/json", "{", 400, false, ""},
		{"no request", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, 400, false, ""},
		{"wrong content type", "text/plain", "{}", 415, false, ""},
		{"too large", "application/json", `{"x":"` + strings.Repeat("a", admission.MaxReviewBytes) + `"}`, 413, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/validate", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantCode, rec.Body)
			}
			if tc.wantCode != 200 {
				return
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			r := out.Response
			if r == nil || r.UID != "u-1" || out.Kind != "AdmissionReview" {
				t.Fatalf("answer %s", rec.Body)
			}
			if r.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v: %s", r.Allowed, tc.wantAllowed, rec.Body)
			}
			if !tc.wantAllowed && (r.Result == nil || !strings.Contains(r.Result.Message, tc.wantMsg) || r.Result.Code != 422) {
				t.Errorf("result %+v, want a 422 with %q", r.Result, tc.wantMsg)
			}
		})
	}
}
