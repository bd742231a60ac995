package signals

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
)

const (
	caepPrefix = "https://schemas.openid.net/secevent/caep/event-type/"
	riscPrefix = "https://schemas.openid.net/secevent/risc/event-type/"
	ssfPrefix  = "https://schemas.openid.net/secevent/ssf/event-type/"
)

// CAEP 1.0 event types.
const (
	EventSessionRevoked         = caepPrefix + "session-revoked"
	EventTokenClaimsChange      = caepPrefix + "token-claims-change"
	EventCredentialChange       = caepPrefix + "credential-change"
	EventAssuranceLevelChange   = caepPrefix + "assurance-level-change"
	EventDeviceComplianceChange = caepPrefix + "device-compliance-change"
	EventSessionEstablished     = caepPrefix + "session-established"
	EventSessionPresented       = caepPrefix + "session-presented"
	EventRiskLevelChange        = caepPrefix + "risk-level-change"
)

// RISC 1.0 event types.
const (
	EventAccountCredentialChangeRequired = riscPrefix + "account-credential-change-required"
	EventAccountPurged                   = riscPrefix + "account-purged"
	EventAccountDisabled                 = riscPrefix + "account-disabled"
	EventAccountEnabled                  = riscPrefix + "account-enabled"
	EventIdentifierChanged               = riscPrefix + "identifier-changed"
	EventIdentifierRecycled              = riscPrefix + "identifier-recycled"
	EventCredentialCompromise            = riscPrefix + "credential-compromise"
	EventOptIn                           = riscPrefix + "opt-in"
	EventOptOutInitiated                 = riscPrefix + "opt-out-initiated"
	EventOptOutCancelled                 = riscPrefix + "opt-out-cancelled"
	EventOptOutEffective                 = riscPrefix + "opt-out-effective"
	EventRecoveryActivated               = riscPrefix + "recovery-activated"
	EventRecoveryInformationChanged      = riscPrefix + "recovery-information-changed"
	// EventSessionsRevoked is deprecated by RISC in favour of CAEP session-revoked; it maps the same way.
	EventSessionsRevoked = riscPrefix + "sessions-revoked"
)

// SSF 1.0 stream control event types.
const (
	EventVerification  = ssfPrefix + "verification"
	EventStreamUpdated = ssfPrefix + "stream-updated"
)

// KnownEventTypes lists every event type URI this package understands, CAEP first, then RISC, then SSF.
func KnownEventTypes() []string {
	return []string{
		EventSessionRevoked, EventTokenClaimsChange, EventCredentialChange, EventAssuranceLevelChange,
		EventDeviceComplianceChange, EventSessionEstablished, EventSessionPresented, EventRiskLevelChange,
		EventAccountCredentialChangeRequired, EventAccountPurged, EventAccountDisabled, EventAccountEnabled,
		EventIdentifierChanged, EventIdentifierRecycled, EventCredentialCompromise, EventOptIn,
		EventOptOutInitiated, EventOptOutCancelled, EventOptOutEffective, EventRecoveryActivated,
		EventRecoveryInformationChanged, EventSessionsRevoked,
		EventVerification, EventStreamUpdated,
	}
}

// EventURI resolves a short event name (the URI's last segment, e.g. "session-revoked" or
// "credential-compromise") or a full known URI to the event type URI.
func EventURI(name string) (string, bool) {
	for _, uri := range KnownEventTypes() {
		if name == uri || name == uri[strings.LastIndexByte(uri, '/')+1:] {
			return uri, true
		}
	}
	return "", false
}

// ShortEventName is the last segment of an event type URI, e.g. "session-revoked".
func ShortEventName(uri string) string {
	return uri[strings.LastIndexByte(uri, '/')+1:]
}

// Limits on a SET's claims. SSF puts one event in a SET (several keys only as aliases of one type).
const (
	maxEvents   = 8
	maxAudience = 16
	maxClaimLen = 1024
)

// SET is a verified Security Event Token (RFC 8417 as profiled by SSF).
type SET struct {
	Issuer   string
	JTI      string
	IssuedAt time.Time
	// Expires is exp, which SSF forbids; zero when absent. The receiver refuses a SET past it.
	Expires  time.Time
	Audience []string
	TXN      string
	// TimeOfEvent is the RFC 8417 toe claim; zero when absent.
	TimeOfEvent time.Time
	// Subject is the top-level sub_id, nil when absent.
	Subject *SubjectID
	// Events are ordered by type URI.
	Events []Event
}

// Event is one member of the events claim. Members an event type does not define stay empty; unknown event
// types carry only Type.
type Event struct {
	Type string
	// Subject is the legacy event-level "subject" member, nil when absent.
	Subject *SubjectID

	// Common CAEP members.
	Timestamp        time.Time // event_timestamp; zero when absent
	InitiatingEntity string    // admin, user, policy, system
	ReasonAdmin      map[string]string
	ReasonUser       map[string]string

	Claims json.RawMessage // token-claims-change: the claims object

	CredentialType string // credential-change, credential-compromise
	ChangeType     string // credential-change: create, revoke, update, delete
	FriendlyName   string
	X509Issuer     string
	X509Serial     string

	Namespace       string // assurance-level-change
	CurrentLevel    string // assurance-level-change; risk-level-change (LOW, MEDIUM, HIGH, upper-cased)
	PreviousLevel   string
	ChangeDirection string // assurance-level-change: increase, decrease

	PreviousStatus string // device-compliance-change: compliant, not-compliant
	CurrentStatus  string

	Principal  string // risk-level-change: USER, DEVICE, SESSION, TENANT, ORG_UNIT, GROUP, … (upper-cased)
	RiskReason string

	Reason   string // account-disabled: hijacking, bulk-account; stream-updated: free text
	NewValue string // identifier-changed: new-value
	State    string // verification
	Status   string // stream-updated: enabled, paused, disabled
}

// SubjectOf is the subject an event is about: the top-level sub_id, else the event's legacy subject member.
// SSF makes sub_id normative, so it wins when both are present.
func (s *SET) SubjectOf(e Event) *SubjectID {
	if s.Subject != nil {
		return s.Subject
	}
	return e.Subject
}

// parseClaims decodes and checks a SET payload whose signature was verified. Errors wrap autherr.ErrMalformed.
func parseClaims(payload []byte) (*SET, error) {
	var obj map[string]json.RawMessage
	if err := unmarshalNumbers(payload, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: SET payload is not a JSON object", autherr.ErrMalformed)
	}
	set := &SET{}
	var err error
	if set.Issuer, err = claimString(obj, "iss", true); err != nil {
		return nil, err
	}
	if set.JTI, err = claimString(obj, "jti", true); err != nil {
		return nil, err
	}
	if set.TXN, err = claimString(obj, "txn", false); err != nil {
		return nil, err
	}
	if set.IssuedAt, err = numericDate(obj["iat"], "iat"); err != nil {
		return nil, err
	}
	if set.IssuedAt.IsZero() {
		return nil, fmt.Errorf("%w: SET has no iat", autherr.ErrMalformed)
	}
	if set.Expires, err = numericDate(obj["exp"], "exp"); err != nil {
		return nil, err
	}
	if set.TimeOfEvent, err = numericDate(obj["toe"], "toe"); err != nil {
		return nil, err
	}
	if set.Audience, err = audience(obj["aud"]); err != nil {
		return nil, err
	}
	if raw, ok := obj["sub_id"]; ok && string(raw) != "null" {
		sub, err := ParseSubject(raw)
		if err != nil {
			return nil, fmt.Errorf("sub_id: %w", err)
		}
		set.Subject = &sub
	}
	var events map[string]json.RawMessage
	if err := json.Unmarshal(obj["events"], &events); err != nil || len(events) == 0 {
		return nil, fmt.Errorf("%w: SET needs an events object with at least one event", autherr.ErrMalformed)
	}
	if len(events) > maxEvents {
		return nil, fmt.Errorf("%w: SET carries %d events (limit %d)", autherr.ErrMalformed, len(events), maxEvents)
	}
	for _, typ := range slices.Sorted(maps.Keys(events)) {
		ev, err := parseEvent(typ, events[typ])
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", ShortEventName(typ), err)
		}
		if _, known := EventURI(typ); known && set.SubjectOf(ev) == nil {
			return nil, fmt.Errorf("%w: event %s has no subject (sub_id)", autherr.ErrMalformed, ShortEventName(typ))
		}
		set.Events = append(set.Events, ev)
	}
	return set, nil
}

// parseEvent decodes one event object. Members of known types are checked against their definitions; an unknown
// type only has to be a JSON object.
func parseEvent(typ string, raw json.RawMessage) (Event, error) {
	ev := Event{Type: typ}
	if len(typ) > maxClaimLen {
		return ev, fmt.Errorf("%w: event type URI of %d bytes", autherr.ErrMalformed, len(typ))
	}
	var obj map[string]json.RawMessage
	if err := unmarshalNumbers(raw, &obj); err != nil || obj == nil {
		return ev, fmt.Errorf("%w: event is not a JSON object", autherr.ErrMalformed)
	}
	if _, known := EventURI(typ); !known {
		return ev, nil
	}
	r := eventReader{obj: obj}
	if sub, ok := obj["subject"]; ok && string(sub) != "null" {
		id, err := ParseSubject(sub)
		if err != nil {
			return ev, fmt.Errorf("subject: %w", err)
		}
		ev.Subject = &id
	}
	var err error
	if ev.Timestamp, err = numericDate(obj["event_timestamp"], "event_timestamp"); err != nil {
		return ev, err
	}
	ev.InitiatingEntity = r.str("initiating_entity")
	ev.ReasonAdmin = r.reason("reason_admin")
	ev.ReasonUser = r.reason("reason_user")

	switch typ {
	case EventTokenClaimsChange:
		claims := obj["claims"]
		var m map[string]json.RawMessage
		if err := json.Unmarshal(claims, &m); err != nil || m == nil {
			r.fail("token-claims-change needs a claims object")
		}
		ev.Claims = claims
	case EventCredentialChange:
		ev.CredentialType = r.required("credential_type")
		ev.ChangeType = r.oneOf("change_type", true, "create", "revoke", "update", "delete")
		ev.FriendlyName = r.str("friendly_name")
		ev.X509Issuer = r.str("x509_issuer")
		ev.X509Serial = r.str("x509_serial")
	case EventCredentialCompromise:
		ev.CredentialType = r.required("credential_type")
	case EventAssuranceLevelChange:
		ev.Namespace = r.required("namespace")
		ev.CurrentLevel = r.required("current_level")
		ev.PreviousLevel = r.str("previous_level")
		ev.ChangeDirection = r.oneOf("change_direction", false, "increase", "decrease")
	case EventDeviceComplianceChange:
		ev.PreviousStatus = r.oneOf("previous_status", true, "compliant", "not-compliant")
		ev.CurrentStatus = r.oneOf("current_status", true, "compliant", "not-compliant")
	case EventRiskLevelChange:
		ev.Principal = strings.ToUpper(r.required("principal"))
		ev.CurrentLevel = strings.ToUpper(r.required("current_level"))
		ev.PreviousLevel = strings.ToUpper(r.str("previous_level"))
		for _, l := range []string{ev.CurrentLevel, ev.PreviousLevel} {
			if l != "" && l != "LOW" && l != "MEDIUM" && l != "HIGH" {
				r.fail(fmt.Sprintf("risk level %q is not LOW, MEDIUM or HIGH", truncate(l, 64)))
			}
		}
		ev.RiskReason = r.str("risk_reason")
	case EventAccountDisabled:
		ev.Reason = r.str("reason")
	case EventIdentifierChanged:
		ev.NewValue = r.str("new-value")
	case EventVerification:
		ev.State = r.str("state")
	case EventStreamUpdated:
		ev.Status = r.oneOf("status", true, "enabled", "paused", "disabled")
		ev.Reason = r.str("reason")
	}
	if r.err != nil {
		return ev, r.err
	}
	return ev, nil
}

// eventReader reads string members of an event object, keeping the first error.
type eventReader struct {
	obj map[string]json.RawMessage
	err error
}

func (r *eventReader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", autherr.ErrMalformed, msg)
	}
}

func (r *eventReader) str(name string) string {
	raw, ok := r.obj[name]
	if !ok || string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		r.fail(fmt.Sprintf("%s is not a string", name))
		return ""
	}
	if len(s) > maxClaimLen {
		r.fail(fmt.Sprintf("%s is %d bytes (limit %d)", name, len(s), maxClaimLen))
		return ""
	}
	return s
}

func (r *eventReader) required(name string) string {
	s := r.str(name)
	if s == "" {
		r.fail(fmt.Sprintf("required member %s is missing", name))
	}
	return s
}

func (r *eventReader) oneOf(name string, required bool, allowed ...string) string {
	s := r.str(name)
	switch {
	case s == "" && required:
		r.fail(fmt.Sprintf("required member %s is missing", name))
	case s != "" && !slices.Contains(allowed, s):
		r.fail(fmt.Sprintf("%s %q is not one of %v", name, truncate(s, 64), allowed))
	}
	return s
}

// reason reads reason_admin / reason_user: an object of language tag → text. A bare string (older drafts) is
// taken as text with no language tag.
func (r *eventReader) reason(name string) map[string]string {
	raw, ok := r.obj[name]
	if !ok || string(raw) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return map[string]string{"": truncate(s, maxClaimLen)}
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		r.fail(fmt.Sprintf("%s is neither an object of language tag to text nor a string", name))
		return nil
	}
	if len(m) > maxSubjectList {
		r.fail(fmt.Sprintf("%s has %d languages (limit %d)", name, len(m), maxSubjectList))
		return nil
	}
	for k, v := range m {
		m[k] = truncate(v, maxClaimLen)
	}
	return m
}

func claimString(obj map[string]json.RawMessage, name string, required bool) (string, error) {
	raw, ok := obj[name]
	if !ok || string(raw) == "null" {
		if required {
			return "", fmt.Errorf("%w: SET has no %s", autherr.ErrMalformed, name)
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: SET claim %s is not a string", autherr.ErrMalformed, name)
	}
	switch {
	case s == "" && required:
		return "", fmt.Errorf("%w: SET claim %s is empty", autherr.ErrMalformed, name)
	case len(s) > maxClaimLen:
		return "", fmt.Errorf("%w: SET claim %s is %d bytes (limit %d)", autherr.ErrMalformed, name, len(s), maxClaimLen)
	}
	return s, nil
}

// maxNumericDate bounds NumericDates to year 5138, far beyond any real one, so conversions cannot overflow.
const maxNumericDate = 1e11

// numericDate decodes a JWT NumericDate (seconds since the epoch, possibly fractional). Absent is the zero time.
func numericDate(raw json.RawMessage, name string) (time.Time, error) {
	if raw == nil || string(raw) == "null" {
		return time.Time{}, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return time.Time{}, fmt.Errorf("%w: %s is not a NumericDate", autherr.ErrMalformed, name)
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || math.IsNaN(f) || f <= 0 || f > maxNumericDate {
		return time.Time{}, fmt.Errorf("%w: %s %s is not a plausible NumericDate", autherr.ErrMalformed, name, truncate(n.String(), 32))
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// audience decodes aud: a string or an array of strings (RFC 7519 §4.1.3).
func audience(raw json.RawMessage) ([]string, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("%w: aud is neither a string nor an array of strings", autherr.ErrMalformed)
	}
	if len(many) > maxAudience {
		return nil, fmt.Errorf("%w: aud has %d values (limit %d)", autherr.ErrMalformed, len(many), maxAudience)
	}
	return many, nil
}

// unmarshalNumbers decodes JSON keeping numbers as json.Number, so NumericDates keep their precision.
func unmarshalNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}
