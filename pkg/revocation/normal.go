package revocation

import (
	"slices"
	"strings"
	"unicode"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// Normal is the form a subject value of kind is stored and looked up in, so that a security event, an operator
// and a token or certificate that name the same subject match: an email's domain is lower-cased (its local part
// is case-sensitive, RFC 5321), and a certificate serial is lower-case hex without separators or leading zeros
// (CAEP fixes no format; a transmitter must send hex). Values of other kinds are compared as they are. Normal is
// idempotent.
func Normal(kind Kind, value string) string {
	switch kind {
	case KindUserEmail:
		at := strings.LastIndexByte(value, '@')
		if domain := strings.ToLower(value[at+1:]); domain != value[at+1:] {
			return value[:at+1] + domain
		}
		return value
	case KindX509Serial:
		hex := strings.Map(serialRune, value)
		if trimmed := strings.TrimLeft(hex, "0"); trimmed != "" || hex == "" {
			return trimmed
		}
		return "0"
	}
	return value
}

// NormalDelegated is the form a delegated subject (a Txn-Token's sub, or a name from DelegatedSubjects) is
// compared in: the domain of an email is lower-cased (Normal), wherever a subject prefix put it. Other names are
// compared as they are.
func NormalDelegated(name string) string {
	if !strings.Contains(name, "@") {
		return name
	}
	return Normal(KindUserEmail, name)
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
func DelegatedSubjects(s *agentauthv1.Subject, issuers []UserIssuer) []string {
	kind := KindOf(s)
	if s.GetValue() == "" || kind.Class() != ClassUser {
		return nil
	}
	value := Normal(kind, s.GetValue())
	if len(issuers) == 0 {
		return []string{NormalDelegated(value)}
	}
	var names []string
	for _, iss := range issuers {
		if kind == KindUserIssSub && s.GetIss() != "" && s.GetIss() != iss.Issuer {
			continue
		}
		if n := NormalDelegated(iss.SubjectPrefix + value); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// serialRune drops the separators of a serial and lower-cases the rest. strings.Map returns value itself when
// nothing changes, so a serial already in normal form costs no allocation (the sidecar checks one per request).
func serialRune(r rune) rune {
	if r == ':' || r == ' ' {
		return -1
	}
	return unicode.ToLower(r)
}
