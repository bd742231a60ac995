package revocation

import agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"

// Kind is the kind of a revocation's subject (Subject.kind). The Kinds below are the ones callers are matched
// by; security events may name others (a phone number, a DID), which are stored and served but match no caller.
type Kind string

// Subject kinds.
const (
	KindSPIFFE     Kind = "spiffe"       // value: a workload's SPIFFE ID
	KindURI        Kind = "uri"          // value: another WIMSE identifier URI of a workload
	KindUserEmail  Kind = "user_email"   // value: an email, domain lower-cased (Normal)
	KindUserOpaque Kind = "user_opaque"  // value: an opaque user id
	KindUserIssSub Kind = "user_iss_sub" // iss + value = an identity provider's sub
	KindSession    Kind = "session"      // value: a transaction id, revoked like a session
	KindJTI        Kind = "jti"          // iss + value = the jti of one token (a WIT)
	KindX509Serial Kind = "x509_serial"  // iss = issuer DN, value = certificate serial in lower-case hex (Normal)
)

// Class is what a caller is to the policy engine and the token service: a workload, the user it acts for, or
// a transaction. Each class is named by several subject kinds (Kinds).
type Class string

// Classes of callers.
const (
	ClassAgent Class = "agent"
	ClassUser  Class = "user"
	ClassTxn   Class = "txn"
)

var (
	agentKinds = []Kind{KindSPIFFE, KindURI}
	userKinds  = []Kind{KindUserEmail, KindUserOpaque, KindUserIssSub}
	txnKinds   = []Kind{KindSession}
)

// Kinds lists the subject kinds that can name a caller of class c: an agent by its SPIFFE ID or another WIMSE
// identifier URI (security events name those "uri"), a user by an email, an opaque id or an issuer's sub, a
// transaction as a session. The slice is shared: do not change it.
func (c Class) Kinds() []Kind {
	switch c {
	case ClassAgent:
		return agentKinds
	case ClassUser:
		return userKinds
	case ClassTxn:
		return txnKinds
	}
	return nil
}

// Class is the class of callers a subject of kind k names, or "" for a kind that names a credential (a jti, a
// certificate serial) or no caller at all.
func (k Kind) Class() Class {
	switch k {
	case KindSPIFFE, KindURI:
		return ClassAgent
	case KindUserEmail, KindUserOpaque, KindUserIssSub:
		return ClassUser
	case KindSession:
		return ClassTxn
	}
	return ""
}

// KindOf is the kind of subject s.
func KindOf(s *agentauthv1.Subject) Kind { return Kind(s.GetKind()) }
