package agentauthv1

import (
	"strings"
)

// Type URLs of the resources served over xDS (the Any type URL of each message).
const (
	PolicyType      = "type.googleapis.com/agentauth.v1.Policy"
	RevocationType  = "type.googleapis.com/agentauth.v1.Revocation"
	RiskStateType   = "type.googleapis.com/agentauth.v1.RiskState"
	TrustBundleType = "type.googleapis.com/agentauth.v1.TrustBundle"
)

// ServedTypes lists the type URLs the controller serves, in the order a sidecar subscribes to them: trust first,
// then revocations, then risk, then policy, so a sidecar never holds a policy without the revocations that limit it.
func ServedTypes() []string {
	return []string{TrustBundleType, RevocationType, RiskStateType, PolicyType}
}

// Key is the subject's stable name: kind, issuer and value, unambiguous for any strings. It names RiskState
// resources and indexes revocations by subject. A subject without kind or value (or nil) has the empty key.
func (x *Subject) Key() string {
	if x.GetKind() == "" || x.GetValue() == "" {
		return ""
	}
	return SubjectKey(x.GetKind(), x.GetIss(), x.GetValue())
}

// SubjectKey is Subject.Key for separate fields. The kind and issuer are escaped so that "|" only separates.
func SubjectKey(kind, iss, value string) string {
	return escapeKeyPart(kind) + "|" + escapeKeyPart(iss) + "|" + value
}

var keyEscaper = strings.NewReplacer("%", "%25", "|", "%7C")

func escapeKeyPart(s string) string {
	if !strings.ContainsAny(s, "%|") {
		return s
	}
	return keyEscaper.Replace(s)
}

// Describe says why a revocation refuses, for refusal messages and audit records: its reason and, when a security
// event caused it, the event type and the SET's jti. The id is not included; callers name it.
func (x *Revocation) Describe() string {
	s := x.GetReason()
	if c := x.GetCause(); c.GetSetJti() != "" {
		s += " (event " + c.GetEventType() + ", SET jti " + c.GetSetJti() + ")"
	}
	return s
}
