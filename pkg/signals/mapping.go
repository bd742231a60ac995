package signals

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/revocation"
)

// Subject kinds the mapping produces (agentauthv1.Subject.kind). Sidecars enforce a kind only where they know a
// value of it: an agent's SPIFFE ID, the delegated user (Txn-Token sub), the transaction, a WIT's jti.
const (
	KindSPIFFE        = "spiffe"         // value: SPIFFE ID of an agent
	KindUserEmail     = "user_email"     // value: email, domain lower-cased
	KindUserIssSub    = "user_iss_sub"   // iss + value = sub
	KindUserOpaque    = "user_opaque"    // iss = SET issuer, value = opaque id
	KindUserPhone     = "user_phone"     // value: E.164 number
	KindUserAccount   = "user_account"   // value: acct: URI
	KindUserDID       = "user_did"       // value: DID URL
	KindURI           = "uri"            // value: a URI that is not a SPIFFE ID
	KindJTI           = "jti"            // iss + value = jti of one JWT (e.g. a WIT)
	KindSAMLAssertion = "saml_assertion" // iss = SAML issuer, value = assertion id
	KindIP            = "ip"             // value: IP address
	KindX509Serial    = "x509_serial"    // iss = issuer DN, value = serial, lower-case hex without colons
	// Complex-subject members other than user map to their member name; iss and value come from the member's
	// identifier (iss_sub: iss, sub; opaque: SET issuer, id; jwt_id: iss, jti; others: "", the identifier).
	KindSession     = "session"
	KindDevice      = "device"
	KindApplication = "application"
	KindTenant      = "tenant"
	KindOrgUnit     = "org_unit"
	KindGroup       = "group"
)

// Change is one state change a SET asks for: exactly one of Revocation and Risk is set.
type Change struct {
	Revocation *agentauthv1.Revocation
	Risk       *agentauthv1.RiskState
}

// Ignored is an event (or part of one) that changes nothing, and why. Ignored events are logged and still
// accepted (202): the transmitter did nothing wrong.
type Ignored struct {
	EventType string
	Reason    string
}

// Mapper turns verified SETs into changes. The zero value is ready to use.
type Mapper struct {
	// RevocationTTL, when positive, sets expires = not_before + RevocationTTL on revocations that refuse
	// credentials issued before an instant: once every credential older than that has expired (set it to the
	// longest lifetime of a credential or token the sidecars accept), the revocation can be pruned. Revocations
	// that withhold a subject (no not_before) never expire.
	RevocationTTL time.Duration
}

// Map is Mapper{}.Map.
func Map(set *SET) ([]Change, []Ignored) { return Mapper{}.Map(set) }

// Map turns a verified SET into changes, per EVENTS.md. It is a pure function of the SET: the same SET always
// gives the same changes with the same revocation ids (derived from iss, jti, event type and subject) and
// timestamps (from the SET), so applying them twice is harmless.
func (m Mapper) Map(set *SET) ([]Change, []Ignored) {
	var changes []Change
	var ignored []Ignored
	for _, ev := range set.Events {
		c, ig := m.mapEvent(set, ev)
		changes = append(changes, c...)
		if ig != "" {
			ignored = append(ignored, Ignored{EventType: ev.Type, Reason: ig})
		}
	}
	return changes, ignored
}

// mapEvent returns the changes of one event, or why it changes nothing.
func (m Mapper) mapEvent(set *SET, ev Event) ([]Change, string) {
	at := eventTime(set, ev)
	switch ev.Type {
	case EventSessionRevoked, EventSessionsRevoked, EventTokenClaimsChange, EventCredentialCompromise,
		EventAccountCredentialChangeRequired, EventIdentifierRecycled:
		return m.revoke(set, ev, revokeOrder(), &at)
	case EventAccountDisabled, EventAccountPurged, EventIdentifierChanged:
		return m.revoke(set, ev, revokeOrder(), nil)
	case EventCredentialChange:
		if ev.ChangeType == "create" {
			return nil, "a new credential leaves the existing ones valid"
		}
		if ev.CredentialType == "x509" && ev.X509Issuer != "" && ev.X509Serial != "" &&
			(ev.ChangeType == "revoke" || ev.ChangeType == "delete") {
			sub := &agentauthv1.Subject{Kind: KindX509Serial, Iss: ev.X509Issuer, Value: revocation.Normal(KindX509Serial, ev.X509Serial)}
			return []Change{{Revocation: m.revocation(set, ev, sub, nil)}}, ""
		}
		return m.revoke(set, ev, revokeOrder(), &at)
	case EventDeviceComplianceChange:
		if ev.CurrentStatus != "not-compliant" {
			return nil, "device is compliant; a revocation only refuses credentials issued before it, so there is nothing to lift"
		}
		return m.revoke(set, ev, deviceOrder(), &at)
	case EventRiskLevelChange:
		return m.risk(set, ev, at, func(r *agentauthv1.RiskState) { r.RiskLevel = ev.CurrentLevel })
	case EventAssuranceLevelChange:
		return m.risk(set, ev, at, func(r *agentauthv1.RiskState) { r.AssuranceLevel = ev.CurrentLevel })
	case EventAccountEnabled:
		return nil, "re-enabling is an operator action: delete the account-disabled revocation"
	case EventSessionEstablished, EventSessionPresented:
		return nil, "informational: a session was established or presented"
	case EventOptIn, EventOptOutInitiated, EventOptOutCancelled, EventOptOutEffective:
		return nil, "consent to event sharing changes no access"
	case EventRecoveryActivated, EventRecoveryInformationChanged:
		return nil, "informational: account recovery changes no credential by itself"
	case EventVerification, EventStreamUpdated:
		return nil, "stream control event"
	}
	return nil, "unknown event type"
}

// Orders in which a complex subject's members are chosen as the one to act on: the most specific first, so a
// session-revoked for {user, session} revokes that session and not every session of the user.
func revokeOrder() [7]string {
	return [...]string{"session", "user", "application", "device", "group", "org_unit", "tenant"}
}

func deviceOrder() [7]string {
	return [...]string{"session", "device", "user", "application", "group", "org_unit", "tenant"}
}

func (m Mapper) revoke(set *SET, ev Event, order [7]string, notBefore *time.Time) ([]Change, string) {
	subs, why := targets(set, ev, order, "")
	if len(subs) == 0 {
		return nil, why
	}
	subs = append(subs, userFallback(set, ev, subs)...)
	out := make([]Change, 0, len(subs))
	for _, sub := range subs {
		out = append(out, Change{Revocation: m.revocation(set, ev, sub, notBefore)})
	}
	return out, ""
}

// Matchable reports whether a sidecar can match a revocation of a subject of kind that a security event names:
// an agent's or a delegated user's identifier, a WIT's jti, a client certificate's serial. A session is not: a
// sidecar's sessions are Txn-Token transactions, never the identity provider's session ids; nor is a device,
// group, org unit, tenant, IP address, or a user named by phone, account or DID (Txn-Tokens carry none of those).
func Matchable(kind string) bool {
	c := revocation.Kind(kind).Class()
	return kind == KindJTI || kind == KindX509Serial || c == revocation.ClassAgent || c == revocation.ClassUser
}

// userFallback is the user member of a complex subject when no member acted on is Matchable. Revoking the user
// too (from the event time) refuses every session of hers issued before it instead of none: when in doubt, refuse.
func userFallback(set *SET, ev Event, acted []*agentauthv1.Subject) []*agentauthv1.Subject {
	id := set.SubjectOf(ev)
	user, ok := id.Members["user"]
	if id.Format != FormatComplex || !ok {
		return nil
	}
	for _, s := range acted {
		if Matchable(s.GetKind()) {
			return nil
		}
	}
	return subjectsOf(user, "user", set.Issuer)
}

func (m Mapper) revocation(set *SET, ev Event, sub *agentauthv1.Subject, notBefore *time.Time) *agentauthv1.Revocation {
	r := &agentauthv1.Revocation{
		Id:      revocationID(set.Issuer, set.JTI, ev.Type, sub.Key()),
		Subject: sub,
		Reason:  describeEvent(ev),
		Cause:   &agentauthv1.Cause{EventType: ev.Type, SetJti: set.JTI, Issuer: set.Issuer},
		Created: timestamppb.New(set.IssuedAt),
	}
	if notBefore != nil {
		r.NotBefore = timestamppb.New(*notBefore)
		if m.RevocationTTL > 0 {
			r.Expires = timestamppb.New(notBefore.Add(m.RevocationTTL))
		}
	}
	return r
}

func (m Mapper) risk(set *SET, ev Event, at time.Time, fill func(*agentauthv1.RiskState)) ([]Change, string) {
	subs, why := targets(set, ev, revokeOrder(), principalRole(ev.Principal))
	if len(subs) == 0 {
		return nil, why
	}
	out := make([]Change, 0, len(subs))
	for _, sub := range subs {
		r := &agentauthv1.RiskState{
			Subject: sub,
			Cause:   &agentauthv1.Cause{EventType: ev.Type, SetJti: set.JTI, Issuer: set.Issuer},
			Updated: timestamppb.New(at),
		}
		fill(r)
		out = append(out, Change{Risk: r})
	}
	return out, ""
}

// eventTime is when the event happened: event_timestamp, else toe, else iat — never after iat, since an event
// cannot postdate the SET that reports it, and a later not_before would refuse credentials issued after the SET.
func eventTime(set *SET, ev Event) time.Time {
	at := ev.Timestamp
	if at.IsZero() {
		at = set.TimeOfEvent
	}
	if at.IsZero() || at.After(set.IssuedAt) {
		at = set.IssuedAt
	}
	return at
}

// principalRole maps a risk-level-change principal (USER, DEVICE, ORG_UNIT, …) to a complex-subject member name.
func principalRole(principal string) string {
	return strings.ToLower(principal)
}

// targets resolves the subject of ev to the Subjects to act on, or says why there are none. For a complex
// subject, prefer (when set, and present) names the member to use; else the first member of order present.
// For a simple subject, prefer is its role (e.g. "device" for a risk-level-change with principal DEVICE).
func targets(set *SET, ev Event, order [7]string, prefer string) ([]*agentauthv1.Subject, string) {
	id := set.SubjectOf(ev)
	if id == nil {
		return nil, "event has no subject"
	}
	role, member := "", *id
	if id.Format == FormatComplex {
		role = ""
		if _, ok := id.Members[prefer]; ok && prefer != "" {
			role = prefer
		} else {
			for _, r := range order {
				if _, ok := id.Members[r]; ok {
					role = r
					break
				}
			}
		}
		if role == "" {
			return nil, fmt.Sprintf("complex subject %s has none of the members %v", id, order)
		}
		member = id.Members[role]
	} else if slices.Contains(order[:], prefer) {
		role = prefer
	}
	subs := subjectsOf(member, role, set.Issuer)
	if len(subs) == 0 {
		return nil, fmt.Sprintf("subject %s (format %q) names nothing this receiver can enforce", truncate(id.String(), 256), member.Format)
	}
	return subs, ""
}

// subjectsOf maps an identifier playing role ("" or "user" for the principal itself) to Subjects. Aliases give
// one Subject per alias, so whichever name a sidecar sees, it matches.
func subjectsOf(id SubjectID, role, setIss string) []*agentauthv1.Subject {
	if id.Format == FormatAliases {
		seen := map[string]*agentauthv1.Subject{}
		for _, a := range id.Identifiers {
			for _, s := range subjectsOf(a, role, setIss) {
				seen[s.Key()] = s
			}
		}
		out := make([]*agentauthv1.Subject, 0, len(seen))
		for _, k := range slices.Sorted(maps.Keys(seen)) {
			out = append(out, seen[k])
		}
		return out
	}
	if id.Format == FormatURI && isSPIFFEID(id.URI) && (role == "" || role == "user" || role == "application") {
		return []*agentauthv1.Subject{{Kind: KindSPIFFE, Value: id.URI}}
	}
	if role != "" && role != "user" {
		var out []*agentauthv1.Subject
		for _, p := range scoped(id, setIss) {
			out = append(out, &agentauthv1.Subject{Kind: role, Iss: p[0], Value: p[1]})
		}
		return out
	}
	one := func(kind, iss, value string) []*agentauthv1.Subject {
		return []*agentauthv1.Subject{{Kind: kind, Iss: iss, Value: value}}
	}
	switch id.Format {
	case FormatEmail:
		return one(KindUserEmail, "", revocation.Normal(KindUserEmail, id.Email))
	case FormatPhoneNumber:
		return one(KindUserPhone, "", id.PhoneNumber)
	case FormatIssSub:
		return one(KindUserIssSub, id.Iss, id.Sub)
	case FormatOpaque:
		return one(KindUserOpaque, setIss, id.ID)
	case FormatAccount:
		return one(KindUserAccount, "", id.URI)
	case FormatDID:
		return one(KindUserDID, "", id.URL)
	case FormatURI:
		return one(KindURI, "", id.URI)
	case FormatJWTID:
		return one(KindJTI, id.Iss, id.JTI)
	case FormatSAMLAssertionID:
		return one(KindSAMLAssertion, id.Issuer, id.AssertionID)
	case FormatIPAddresses:
		out := make([]*agentauthv1.Subject, 0, len(id.IPAddresses))
		for _, ip := range id.IPAddresses {
			out = append(out, &agentauthv1.Subject{Kind: KindIP, Value: ip})
		}
		return out
	}
	return nil
}

// scoped gives the (iss, value) pairs of an identifier used as a complex-subject member other than user.
func scoped(id SubjectID, setIss string) [][2]string {
	switch id.Format {
	case FormatOpaque:
		return [][2]string{{setIss, id.ID}}
	case FormatIssSub:
		return [][2]string{{id.Iss, id.Sub}}
	case FormatJWTID:
		return [][2]string{{id.Iss, id.JTI}}
	case FormatSAMLAssertionID:
		return [][2]string{{id.Issuer, id.AssertionID}}
	case FormatEmail:
		return [][2]string{{"", revocation.Normal(KindUserEmail, id.Email)}}
	case FormatPhoneNumber:
		return [][2]string{{"", id.PhoneNumber}}
	case FormatURI, FormatAccount:
		return [][2]string{{"", id.URI}}
	case FormatDID:
		return [][2]string{{"", id.URL}}
	case FormatIPAddresses:
		out := make([][2]string, 0, len(id.IPAddresses))
		for _, ip := range id.IPAddresses {
			out = append(out, [2]string{"", ip})
		}
		return out
	}
	return nil
}

func isSPIFFEID(uri string) bool {
	_, err := spiffeid.FromString(uri)
	return err == nil
}

// revocationID is stable for one subject of one event of one SET, so a SET applied twice writes the same
// revocation twice.
func revocationID(iss, jti, eventType, subjectKey string) string {
	h := sha256.New()
	for _, p := range []string{iss, jti, eventType, subjectKey} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "ssf-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// describeEvent is the human-readable reason of a revocation, e.g. "session-revoked (admin): Manual revocation".
func describeEvent(ev Event) string {
	var b strings.Builder
	b.WriteString(ShortEventName(ev.Type))
	for _, d := range []string{ev.CredentialType, ev.ChangeType, ev.Reason} {
		if d != "" {
			b.WriteString(" " + d)
		}
	}
	if ev.InitiatingEntity != "" {
		b.WriteString(" (" + truncate(ev.InitiatingEntity, 64) + ")")
	}
	if text := pickReason(ev.ReasonAdmin); text != "" {
		b.WriteString(": " + text)
	}
	return truncate(b.String(), maxClaimLen)
}

// pickReason prefers English, then text without a language tag, then the first tag in order.
func pickReason(m map[string]string) string {
	for _, k := range []string{"en", ""} {
		if v, ok := m[k]; ok {
			return v
		}
	}
	if len(m) == 0 {
		return ""
	}
	return m[slices.Min(slices.Collect(maps.Keys(m)))]
}

// MergeRisk is how a Sink stores a RiskState: an update older than the stored state (by updated) is dropped,
// since SETs may arrive out of order; otherwise the update's non-empty levels replace the stored ones and its
// empty ones keep them (a risk-level-change does not erase the assurance level, nor the reverse).
func MergeRisk(stored, update *agentauthv1.RiskState) *agentauthv1.RiskState {
	if stored == nil {
		return proto.CloneOf(update)
	}
	if update.GetUpdated().AsTime().Before(stored.GetUpdated().AsTime()) {
		return proto.CloneOf(stored)
	}
	out := proto.CloneOf(update)
	if out.RiskLevel == "" {
		out.RiskLevel = stored.GetRiskLevel()
	}
	if out.AssuranceLevel == "" {
		out.AssuranceLevel = stored.GetAssuranceLevel()
	}
	return out
}
