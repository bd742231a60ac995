package crd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/agentauth/agentauth/internal/admission"
	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Validator is a validating admission webhook (AdmissionReview v1) for the custom resource kind (T its Go type):
// it calls check with each object being created or updated, and refuses the request with check's error as the
// message the API server shows (kubectl prints it). Deletes, status writes and other kinds are allowed unchecked.
func Validator[T any](kind string, check func(ctx context.Context, obj *T) error, log *zap.Logger) http.Handler {
	return admission.Handler(func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		if req.Kind.Group != Group || req.Kind.Kind != kind || req.SubResource != "" ||
			(req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
			return &admissionv1.AdmissionResponse{Allowed: true}
		}
		var obj T
		if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
			return denied(fmt.Errorf("%s %s does not decode: %w", kind, req.Name, err))
		}
		if err := check(ctx, &obj); err != nil {
			log.Info("refused at admission", zap.String("kind", kind), zap.String("name", req.Name),
				zap.String("operation", string(req.Operation)), zap.Error(err))
			return denied(err)
		}
		return &admissionv1.AdmissionResponse{Allowed: true}
	})
}

func denied(err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
		Message: err.Error()}}
}
