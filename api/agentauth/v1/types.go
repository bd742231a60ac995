package agentauthv1

import (
	"slices"
	"strings"
	"time"
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

// KindsFor lists the Subject kinds that can name a caller of the given class, as the policy engine and the token
// service name them: "agent" (a workload's SPIFFE ID, or another WIMSE identifier URI, which security events
// name as a "uri"), "user" (a delegated subject: an email, an opaque id or an issuer's sub) and "txn" (a
// transaction, revoked like a session).
func KindsFor(class string) []string {
	switch class {
	case "agent":
		return []string{"spiffe", "uri"}
	case "user":
		return []string{"user_email", "user_opaque", "user_iss_sub"}
	case "txn":
		return []string{"session"}
	}
	return nil
}

// UserIssuer is how a token service names the users of one identity provider in the tokens it issues: the
// provider's sub after SubjectPrefix (the controller's tokenService.userIssuers).
type UserIssuer struct {
	Issuer, SubjectPrefix string
}

// DelegatedSubjects returns the names under which a token service trusting issuers names the user s designates:
// the sub of the Txn-Tokens it issues for that user. An iss_sub subject is named by its issuer (that issuer's
// prefix + sub; with no iss, by any); an email or opaque id says nothing of the issuer, so each issuer could have
// named that user (each prefix + the value): when in doubt, refuse. With no issuers at all (no token service is
// known, so nothing says how it names users) the name is the value as it is. The names are in NormalDelegated
// form. DelegatedSubjects returns nil for a subject that is not a user, and for a user that none of the issuers
// could have named: a revocation of that user matches no call.
func DelegatedSubjects(s *Subject, issuers []UserIssuer) []string {
	kind := s.GetKind()
	if s.GetValue() == "" || !slices.Contains(KindsFor("user"), kind) {
		return nil
	}
	value := NormalValue(kind, s.GetValue())
	if len(issuers) == 0 {
		return []string{NormalDelegated(value)}
	}
	var names []string
	for _, iss := range issuers {
		if kind == "user_iss_sub" && s.GetIss() != "" && s.GetIss() != iss.Issuer {
			continue
		}
		if n := NormalDelegated(iss.SubjectPrefix + value); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// NormalDelegated is the form a delegated subject (a Txn-Token sub, or a name from DelegatedSubjects) is compared
// in: the domain of an email is lower-cased (NormalValue), wherever a subject prefix put it. Other names are
// compared as they are.
func NormalDelegated(name string) string {
	if !strings.Contains(name, "@") {
		return name
	}
	return NormalValue("user_email", name)
}

// About reports whether the revocation is about the caller of class (KindsFor) called value. A delegated user
// ("user") is compared, as the token service names them, with DelegatedSubjects; an agent or a transaction with
// the subject's value under any issuer (see xdsclient.State.Revoked). It says nothing of time: see Refuses.
func (x *Revocation) About(class, value string) bool {
	if class == "user" {
		return slices.Contains(x.GetDelegatedSubjects(), NormalDelegated(value))
	}
	kind := x.GetSubject().GetKind()
	return slices.Contains(KindsFor(class), kind) && x.GetSubject().GetValue() == NormalValue(kind, value)
}

// NormalValue is the form a subject value of a kind is stored and looked up in, so that a security event, an
// operator and a token or certificate that name the same subject match: an email's domain is lower-cased (its
// local part is case-sensitive, RFC 5321), and a certificate serial is lower-case hex without separators or
// leading zeros (CAEP fixes no format; a transmitter must send hex). Values of other kinds are compared as they are.
func NormalValue(kind, value string) string {
	switch kind {
	case "user_email":
		at := strings.LastIndexByte(value, '@')
		return value[:at+1] + strings.ToLower(value[at+1:])
	case "x509_serial":
		hex := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(value))
		if trimmed := strings.TrimLeft(hex, "0"); trimmed != "" || hex == "" {
			return trimmed
		}
		return "0"
	}
	return value
}

// Expired reports whether the revocation has stopped applying at now: it has an expires, and now is not before it.
func (x *Revocation) Expired(now time.Time) bool {
	exp := x.GetExpires()
	return exp != nil && !now.Before(exp.AsTime())
}

// Refuses reports whether the revocation refuses, at now, a credential issued at issuedAt: it has not expired,
// and the credential was issued no later than its not_before (or it has none: it is withheld). Token times have
// whole-second precision, so a credential stamped in the same second as the event cannot be shown to be newer,
// and an unknown issuedAt (zero) counts as issued before any not_before: when in doubt, refuse.
func (x *Revocation) Refuses(issuedAt, now time.Time) bool {
	if x.Expired(now) {
		return false
	}
	nb := x.GetNotBefore()
	return nb == nil || issuedAt.IsZero() || !issuedAt.After(nb.AsTime())
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
