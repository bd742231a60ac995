package crd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds an AdmissionReview: an UPDATE holds the object twice, each at most the API server's
// ~1.5 MiB.
const maxReviewBytes = 4 << 20

// Validator is a validating admission webhook (AdmissionReview v1) for the custom resource kind (T its Go type):
// it calls check with each object being created or updated, and refuses the request with check's error as the
// message the API server shows (kubectl prints it). Deletes, status writes and other kinds are allowed unchecked.
func Validator[T any](kind string, check func(ctx context.Context, obj *T) error, log *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rev, status, err := readReview(w, r)
		if err != nil {
			http.Error(w, err.Error(), status)
			return
		}
		req := rev.Request
		resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
		if req.Kind.Group == Group && req.Kind.Kind == kind && req.SubResource == "" &&
			(req.Operation == admissionv1.Create || req.Operation == admissionv1.Update) {
			var obj T
			if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
				err = fmt.Errorf("%s %s does not decode: %w", kind, req.Name, err)
				resp = denied(req, err)
			} else if err := check(r.Context(), &obj); err != nil {
				log.Info("refused at admission", zap.String("kind", kind), zap.String("name", req.Name),
					zap.String("operation", string(req.Operation)), zap.Error(err))
				resp = denied(req, err)
			}
		}
		out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: rev.TypeMeta, Response: resp})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
}

// readReview decodes the request's AdmissionReview; on failure it returns the HTTP status to answer with.
func readReview(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionReview, int, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %q is not application/json", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("reading the AdmissionReview: %w", err)
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &rev); err != nil || rev.Request == nil {
		return nil, http.StatusBadRequest, fmt.Errorf("not an admission.k8s.io/v1 AdmissionReview with a request")
	}
	return &rev, 0, nil
}

func denied(req *admissionv1.AdmissionRequest, err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{UID: req.UID, Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
		Message: err.Error()}}
}
