package crd

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version of every resource here.
const (
	Group   = "agentauth.io"
	Version = "v1alpha1"
)

// The resources, both cluster-scoped.
var (
	CedarPolicies   = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "cedarpolicies"}
	SSFTransmitters = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "ssftransmitters"}
)

// ConditionAccepted is the one condition the controller reports: True once it uses the object, False with the
// reason and message otherwise.
const ConditionAccepted = "Accepted"

// Status is the status of every resource here.
type Status struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

// CedarPolicy is one or more Cedar policies kept in Git; the live policy set is every CedarPolicy together.
type CedarPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              CedarPolicySpec `json:"spec"`
	Status            Status          `json:"status,omitempty"`
}

// CedarPolicySpec is the policy text, as in a .cedar file.
type CedarPolicySpec struct {
	Cedar       string `json:"cedar"`
	Description string `json:"description,omitempty"`
}

// SSFTransmitter is an OpenID Shared Signals transmitter whose Security Event Tokens the controller trusts.
type SSFTransmitter struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SSFTransmitterSpec `json:"spec"`
	Status            Status             `json:"status,omitempty"`
}

// SSFTransmitterSpec mirrors the controller config's ssf.transmitters entry, with secrets by reference to Secrets
// in the controller's namespace. The schema requires exactly one of JWKSURL and JWKSSecretRef.
type SSFTransmitterSpec struct {
	Issuer                     string        `json:"issuer"`
	Audience                   []string      `json:"audience"`
	JWKSURL                    string        `json:"jwksURL,omitempty"`
	JWKSSecretRef              *SecretKeyRef `json:"jwksSecretRef,omitempty"`
	PushAuthorizationSecretRef *SecretKeyRef `json:"pushAuthorizationSecretRef,omitempty"`
	Poll                       *SSFPoll      `json:"poll,omitempty"`
	Stream                     *SSFStream    `json:"stream,omitempty"`
}

// SSFPoll is RFC 8936 poll delivery. Interval is a Go duration ("30s"); empty means the controller's default.
type SSFPoll struct {
	URL                    string        `json:"url,omitempty"`
	Interval               string        `json:"interval,omitempty"`
	MaxEvents              int           `json:"maxEvents,omitempty"`
	AuthorizationSecretRef *SecretKeyRef `json:"authorizationSecretRef,omitempty"`
}

// SSFStream is SSF stream management at the transmitter. Delivery is "push" (with PushEndpoint) or "poll".
type SSFStream struct {
	Delivery               string        `json:"delivery"`
	PushEndpoint           string        `json:"pushEndpoint,omitempty"`
	EventsRequested        []string      `json:"eventsRequested,omitempty"`
	AuthorizationSecretRef *SecretKeyRef `json:"authorizationSecretRef,omitempty"`
}

// SecretKeyRef is a key of a Secret in the controller's namespace.
type SecretKeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}
