package inject

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/agentauth/agentauth/internal/admission"
	"go.uber.org/zap"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Paths the webhook serves. PathNamespace is for pods of opted-in namespaces (injected unless they opt out);
// PathPod for pods selected by the label agentauth.io/inject: "true" elsewhere (injected only when they ask).
const (
	PathNamespace = "/inject"
	PathPod       = "/inject/pod"
)

// Handler serves the injector's admission webhook on PathNamespace and PathPod.
func Handler(in *Injector, log *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+PathNamespace, admission.Handler((&review{in: in, log: log}).admit))
	mux.Handle("POST "+PathPod, admission.Handler((&review{in: in, log: log, requireOptIn: true}).admit))
	return mux
}

type review struct {
	in           *Injector
	log          *zap.Logger
	requireOptIn bool
}

// admit answers one request: allowed with the JSON patch that injects the pod, allowed unchanged, or refused with
// the reason (the API server shows the message to whoever created the pod).
func (h *review) admit(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	log := h.log.With(zap.String("namespace", req.Namespace), zap.String("name", req.Name), zap.String("uid", string(req.UID)))
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create || req.SubResource != "" {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(http.StatusBadRequest, "the pod does not decode: "+err.Error())
	}
	out, err := h.in.Inject(&pod, h.requireOptIn)
	if errors.Is(err, ErrRefused) {
		log.Info("injection refused", zap.Error(err))
		return deny(http.StatusBadRequest, err.Error())
	}
	if err != nil {
		log.Error("injection failed", zap.Error(err))
		return deny(http.StatusInternalServerError, err.Error())
	}
	if out == nil {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	// The patch is between the pod as decoded and its mutated copy, not from the raw object: a field this
	// package's k8s.io/api does not know is in neither, so the patch leaves it alone instead of removing it.
	orig, err := json.Marshal(&pod)
	if err != nil {
		return deny(http.StatusInternalServerError, err.Error())
	}
	mutated, err := json.Marshal(out)
	if err != nil {
		return deny(http.StatusInternalServerError, err.Error())
	}
	ops, err := jsonpatch.CreatePatch(orig, mutated)
	if err != nil {
		return deny(http.StatusInternalServerError, "computing the patch: "+err.Error())
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return deny(http.StatusInternalServerError, err.Error())
	}
	log.Info("sidecar injected", zap.Int("patch_ops", len(ops)))
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}
}

func deny(code int32, msg string) *admissionv1.AdmissionResponse {
	reason := metav1.StatusReasonBadRequest
	if code >= 500 {
		reason = metav1.StatusReasonInternalError
	}
	return &admissionv1.AdmissionResponse{Allowed: false,
		Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
}
