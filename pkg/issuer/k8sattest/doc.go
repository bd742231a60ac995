// Package k8sattest attests pods on Kubernetes for the controller's issuer: a sidecar presents its projected
// service-account token (made for the controller's audience), the Kubernetes API server checks it (TokenReview),
// the pod it is bound to must still exist and match, and the workload gets a SPIFFE ID derived from its namespace
// and service account, by default spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
//
// It is the controller side only and links client-go; the sidecar just reads the token file (pkg/identity).
package k8sattest
