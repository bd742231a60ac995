package signals

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Subject identifier formats: RFC 9493 (IANA registry) and those SSF §3.3 adds.
const (
	FormatAccount         = "account"
	FormatEmail           = "email"
	FormatIssSub          = "iss_sub"
	FormatOpaque          = "opaque"
	FormatPhoneNumber     = "phone_number"
	FormatDID             = "did"
	FormatURI             = "uri"
	FormatAliases         = "aliases"
	FormatComplex         = "complex"
	FormatJWTID           = "jwt_id"
	FormatSAMLAssertionID = "saml_assertion_id"
	FormatIPAddresses     = "ip-addresses"
)

// Limits on a subject, so no SET can make the receiver allocate without bound. maxSubjectString matches the
// longest subject value a Revocation may carry over xDS.
const (
	maxSubjectString = 512
	maxSubjectList   = 16
)

// SubjectID is a parsed subject identifier (RFC 9493, SSF §3). Only the members of its Format are set. A
// proprietary format is kept with its name only; Map ignores it.
type SubjectID struct {
	Format string

	Email       string // email
	PhoneNumber string // phone_number
	Iss, Sub    string // iss_sub (Iss also for jwt_id)
	ID          string // opaque
	URI         string // uri, account
	URL         string // did
	JTI         string // jwt_id
	Issuer      string // saml_assertion_id
	AssertionID string // saml_assertion_id
	IPAddresses []string

	// Identifiers of an aliases subject: simple identifiers that all name the same subject.
	Identifiers []SubjectID
	// Members of a complex subject by name: user, device, session, application, tenant, org_unit, group or
	// another name. Each is a simple identifier (or aliases); all describe one principal.
	Members map[string]SubjectID
}

// ParseSubject parses and checks one subject identifier (a sub_id claim or a legacy event "subject"). The legacy
// RISC member name subject_type is accepted for format.
func ParseSubject(data []byte) (SubjectID, error) {
	return parseSubject(data, "")
}

// parseSubject parses a subject nested inside a subject of format parent ("" at the top).
func parseSubject(data []byte, parent string) (SubjectID, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return SubjectID{}, fmt.Errorf("%w: subject identifier is not a JSON object", autherr.ErrMalformed)
	}
	format, err := subjectFormat(obj)
	if err != nil {
		return SubjectID{}, err
	}
	s := SubjectID{Format: format}
	switch format {
	case FormatIPAddresses:
		s.IPAddresses, err = parseIPs(obj)
	case FormatAliases:
		if parent == FormatAliases {
			return SubjectID{}, fmt.Errorf("%w: aliases subject nested in aliases", autherr.ErrMalformed)
		}
		s.Identifiers, err = parseAliases(obj)
	case FormatComplex:
		if parent != "" {
			return SubjectID{}, fmt.Errorf("%w: complex subject nested in %s", autherr.ErrMalformed, parent)
		}
		s.Members, err = parseComplex(obj)
	default:
		err = s.parseMembers(obj)
	}
	if err != nil {
		return SubjectID{}, err
	}
	return s, nil
}

// subjectFormat returns the subject's format (or its legacy RISC name, subject_type).
func subjectFormat(obj map[string]json.RawMessage) (string, error) {
	format, err := optString(obj, "format")
	if err != nil {
		return "", err
	}
	if format == "" {
		if format, err = optString(obj, "subject_type"); err != nil {
			return "", err
		}
		if format == "iss-sub" { // Google's legacy RISC spelling
			format = FormatIssSub
		}
	}
	if format == "" {
		return "", fmt.Errorf("%w: subject identifier has no format", autherr.ErrMalformed)
	}
	return format, nil
}

// parseMembers reads the string members of a subject of s.Format, one of the formats made of strings only; an
// unknown format keeps no members.
func (s *SubjectID) parseMembers(obj map[string]json.RawMessage) error {
	format := s.Format
	var err error
	switch format {
	case FormatEmail:
		s.Email, err = reqString(obj, format, "email")
		if err == nil && !strings.Contains(s.Email, "@") {
			err = fmt.Errorf("%w: email subject %q has no @", autherr.ErrMalformed, s.Email)
		}
	case FormatPhoneNumber:
		s.PhoneNumber, err = reqString(obj, format, "phone_number")
		if err == nil && !isE164(s.PhoneNumber) {
			err = fmt.Errorf("%w: phone_number %q is not E.164 (+ and 2 to 15 digits)", autherr.ErrMalformed, s.PhoneNumber)
		}
	case FormatIssSub:
		if s.Iss, err = reqString(obj, format, "iss"); err == nil {
			s.Sub, err = reqString(obj, format, "sub")
		}
	case FormatOpaque:
		s.ID, err = reqString(obj, format, "id")
	case FormatAccount:
		s.URI, err = reqString(obj, format, "uri")
		if err == nil && !strings.HasPrefix(s.URI, "acct:") {
			err = fmt.Errorf("%w: account subject %q is not an acct: URI", autherr.ErrMalformed, s.URI)
		}
	case FormatDID:
		s.URL, err = reqString(obj, format, "url")
		if err == nil && !strings.HasPrefix(s.URL, "did:") {
			err = fmt.Errorf("%w: did subject %q is not a did: URL", autherr.ErrMalformed, s.URL)
		}
	case FormatURI:
		s.URI, err = reqString(obj, format, "uri")
		if err == nil {
			if u, perr := url.Parse(s.URI); perr != nil || u.Scheme == "" {
				err = fmt.Errorf("%w: uri subject %q is not an absolute URI", autherr.ErrMalformed, s.URI)
			}
		}
	case FormatJWTID:
		if s.Iss, err = reqString(obj, format, "iss"); err == nil {
			s.JTI, err = reqString(obj, format, "jti")
		}
	case FormatSAMLAssertionID:
		if s.Issuer, err = reqString(obj, format, "issuer"); err == nil {
			s.AssertionID, err = reqString(obj, format, "assertion_id")
		}
	default:
		if len(format) > maxSubjectString {
			return fmt.Errorf("%w: subject format name of %d bytes", autherr.ErrMalformed, len(format))
		}
	}
	return err
}

func parseAliases(obj map[string]json.RawMessage) ([]SubjectID, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(obj["identifiers"], &list); err != nil || len(list) == 0 {
		return nil, fmt.Errorf("%w: aliases subject needs a non-empty identifiers array", autherr.ErrMalformed)
	}
	if len(list) > maxSubjectList {
		return nil, fmt.Errorf("%w: aliases subject has %d identifiers (limit %d)", autherr.ErrMalformed, len(list), maxSubjectList)
	}
	out := make([]SubjectID, 0, len(list))
	for i, raw := range list {
		id, err := parseSubject(raw, FormatAliases)
		if err != nil {
			return nil, fmt.Errorf("aliases identifier %d: %w", i, err)
		}
		out = append(out, id)
	}
	return out, nil
}

func parseComplex(obj map[string]json.RawMessage) (map[string]SubjectID, error) {
	members := make(map[string]SubjectID, len(obj))
	for name, raw := range obj {
		if name == "format" || name == "subject_type" {
			continue
		}
		if len(members) == maxSubjectList {
			return nil, fmt.Errorf("%w: complex subject has more than %d members", autherr.ErrMalformed, maxSubjectList)
		}
		if len(name) > maxSubjectString {
			return nil, fmt.Errorf("%w: complex member name of %d bytes", autherr.ErrMalformed, len(name))
		}
		id, err := parseSubject(raw, FormatComplex)
		if err != nil {
			return nil, fmt.Errorf("complex member %q: %w", name, err)
		}
		members[name] = id
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("%w: complex subject has no members", autherr.ErrMalformed)
	}
	return members, nil
}

func parseIPs(obj map[string]json.RawMessage) ([]string, error) {
	var list []string
	if err := json.Unmarshal(obj["ip-addresses"], &list); err != nil || len(list) == 0 {
		return nil, fmt.Errorf("%w: ip-addresses subject needs a non-empty array of strings", autherr.ErrMalformed)
	}
	if len(list) > maxSubjectList {
		return nil, fmt.Errorf("%w: ip-addresses subject has %d addresses (limit %d)", autherr.ErrMalformed, len(list), maxSubjectList)
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: ip-addresses: %q is not an IP address", autherr.ErrMalformed, truncate(s, 64))
		}
		out = append(out, a.Unmap().String())
	}
	return out, nil
}

func optString(obj map[string]json.RawMessage, name string) (string, error) {
	raw, ok := obj[name]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: subject member %q is not a string", autherr.ErrMalformed, name)
	}
	return s, nil
}

func reqString(obj map[string]json.RawMessage, format, name string) (string, error) {
	s, err := optString(obj, name)
	switch {
	case err != nil:
		return "", err
	case s == "":
		return "", fmt.Errorf("%w: %s subject has no %q", autherr.ErrMalformed, format, name)
	case len(s) > maxSubjectString:
		return "", fmt.Errorf("%w: %s subject member %q is %d bytes (limit %d)", autherr.ErrMalformed, format, name, len(s), maxSubjectString)
	}
	return s, nil
}

func isE164(s string) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// MarshalJSON writes the identifier in its RFC 9493 / SSF form. A proprietary format writes only its name.
func (s SubjectID) MarshalJSON() ([]byte, error) {
	m := map[string]any{"format": s.Format}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	switch s.Format {
	case FormatEmail:
		set("email", s.Email)
	case FormatPhoneNumber:
		set("phone_number", s.PhoneNumber)
	case FormatIssSub:
		set("iss", s.Iss)
		set("sub", s.Sub)
	case FormatOpaque:
		set("id", s.ID)
	case FormatAccount, FormatURI:
		set("uri", s.URI)
	case FormatDID:
		set("url", s.URL)
	case FormatJWTID:
		set("iss", s.Iss)
		set("jti", s.JTI)
	case FormatSAMLAssertionID:
		set("issuer", s.Issuer)
		set("assertion_id", s.AssertionID)
	case FormatIPAddresses:
		m["ip-addresses"] = s.IPAddresses
	case FormatAliases:
		m["identifiers"] = s.Identifiers
	case FormatComplex:
		for name, id := range s.Members {
			if name != "format" {
				m[name] = id
			}
		}
	}
	return json.Marshal(m)
}

// String is a short, stable description for logs, e.g. "complex{session=opaque:s1,user=email:a@example.com}".
func (s SubjectID) String() string {
	switch s.Format {
	case FormatEmail:
		return "email:" + s.Email
	case FormatPhoneNumber:
		return "phone_number:" + s.PhoneNumber
	case FormatIssSub:
		return "iss_sub:" + s.Iss + "," + s.Sub
	case FormatOpaque:
		return "opaque:" + s.ID
	case FormatAccount, FormatURI:
		return s.Format + ":" + s.URI
	case FormatDID:
		return "did:" + s.URL
	case FormatJWTID:
		return "jwt_id:" + s.Iss + "," + s.JTI
	case FormatSAMLAssertionID:
		return "saml_assertion_id:" + s.Issuer + "," + s.AssertionID
	case FormatIPAddresses:
		return "ip-addresses:" + strings.Join(s.IPAddresses, ",")
	case FormatAliases:
		parts := make([]string, len(s.Identifiers))
		for i, id := range s.Identifiers {
			parts[i] = id.String()
		}
		return "aliases[" + strings.Join(parts, ",") + "]"
	case FormatComplex:
		names := slices.Sorted(maps.Keys(s.Members))
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = n + "=" + s.Members[n].String()
		}
		return "complex{" + strings.Join(parts, ",") + "}"
	}
	return s.Format
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
