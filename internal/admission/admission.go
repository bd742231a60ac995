// Package admission serves Kubernetes admission webhooks (admission.k8s.io/v1 AdmissionReview): the HTTP exchange
// around one decision, shared by the pod injector (pkg/inject) and the custom resources' validation (pkg/crd).
package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
)

// MaxReviewBytes bounds an AdmissionReview: the API server caps a stored object at about 1.5 MiB, and an UPDATE's
// review holds it twice.
const MaxReviewBytes = 4 << 20

// Handler answers each AdmissionReview with admit's response to its request, the request's UID set on it. A body
// that is not JSON, is over MaxReviewBytes or holds no request gets an HTTP error instead.
func Handler(admit func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			http.Error(w, fmt.Sprintf("Content-Type %q is not application/json", ct), http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReviewBytes))
		if err != nil {
			http.Error(w, "reading the AdmissionReview: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		var rev admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &rev); err != nil || rev.Request == nil {
			http.Error(w, "not an admission.k8s.io/v1 AdmissionReview with a request", http.StatusBadRequest)
			return
		}
		resp := admit(r.Context(), rev.Request)
		resp.UID = rev.Request.UID
		out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: rev.TypeMeta, Response: resp})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
}
