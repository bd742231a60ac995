package crd

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzValidator: whatever the API server (or anyone reaching the port) sends, the webhook answers 4xx, or 200 with
// a response for the request's UID; it never panics.
func FuzzValidator(f *testing.F) {
	t := &testing.T{}
	f.Add(reviewBody(t, admissionv1.Create, Group, "CedarPolicy", "", CedarPolicy{Spec: CedarPolicySpec{Cedar: "bad"}}))
	f.Add(reviewBody(t, admissionv1.Update, Group, "CedarPolicy", "", map[string]any{"spec": []int{1}}))
	f.Add(`{"request":{"uid":"x","kind":{"group":"agentauth.io","kind":"CedarPolicy"},"operation":"CREATE","object":null}}`)
	f.Add(`{"request":{}}`)
	h := Validator("CedarPolicy", refuseBad, zap.NewNop())
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/validate", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 400 && rec.Code < 500 {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		var in, out admissionv1.AdmissionReview
		_ = json.Unmarshal([]byte(body), &in)
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("answer %q: %v", rec.Body, err)
		}
		if out.Response.UID != in.Request.UID {
			t.Fatalf("answer for UID %q, request %q", out.Response.UID, in.Request.UID)
		}
		if !out.Response.Allowed && (out.Response.Result == nil || out.Response.Result.Status != metav1.StatusFailure) {
			t.Fatalf("refusal without a failure status: %s", rec.Body)
		}
	})
}
