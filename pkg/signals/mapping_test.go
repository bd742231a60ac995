package signals

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

const (
	mapIAT = 1_760_000_000
	mapTS  = 1_759_999_900 // event_timestamp
)

// setJSON builds a SET payload with the given sub_id and events (both raw JSON; sub_id "" leaves it out).
func setJSON(subID, events string) string {
	sub := ""
	if subID != "" {
		sub = `"sub_id":` + subID + `,`
	}
	return fmt.Sprintf(`{"iss":%q,"jti":"j1","iat":%d,"aud":%q,%s"events":%s}`, testIssuer, mapIAT, testAudience, sub, events)
}

// oneEvent is an events object with one event of type uri (short name allowed) and members.
func oneEvent(name, members string) string {
	uri, ok := EventURI(name)
	if !ok {
		uri = name
	}
	return fmt.Sprintf(`{%q:%s}`, uri, members)
}

// summarize writes changes compactly: "rev kind|iss|value nb=<unix>|withheld", "risk kind|iss|value level/assurance".
func summarize(changes []Change) []string {
	var out []string
	for _, c := range changes {
		if r := c.Revocation; r != nil {
			nb := "withheld"
			if r.GetNotBefore() != nil {
				nb = fmt.Sprintf("nb=%d", r.GetNotBefore().AsTime().Unix())
			}
			out = append(out, "rev "+r.GetSubject().Key()+" "+nb)
		} else {
			out = append(out, fmt.Sprintf("risk %s %s/%s", c.Risk.GetSubject().Key(), c.Risk.GetRiskLevel(), c.Risk.GetAssuranceLevel()))
		}
	}
	return out
}

func TestMapEvents(t *testing.T) {
	ts := fmt.Sprintf(`{"event_timestamp":%d}`, mapTS)
	nb := fmt.Sprintf("nb=%d", mapTS)
	spiffe := `{"format":"uri","uri":"spiffe://example.org/agent/a"}`
	issSub := `{"format":"iss_sub","iss":"https://idp.example.com","sub":"user-123"}`
	userSession := `{"format":"complex","user":{"format":"email","email":"alice@example.com"},"session":{"format":"opaque","id":"s-1"}}`
	userDevice := `{"format":"complex","user":{"format":"email","email":"alice@example.com"},"device":{"format":"opaque","id":"d-9"}}`
	const agentKey = "spiffe||spiffe://example.org/agent/a"
	const userKey = "user_iss_sub|https://idp.example.com|user-123"
	tests := []struct {
		name    string
		payload string
		want    []string
		ignored string // substring of the single Ignored reason, "" for none
	}{
		// CAEP session-revoked with every subject format.
		{"session-revoked/uri spiffe", setJSON(spiffe, oneEvent("session-revoked", ts)), []string{"rev " + agentKey + " " + nb}, ""},
		{"session-revoked/iss_sub", setJSON(issSub, oneEvent("session-revoked", ts)), []string{"rev " + userKey + " " + nb}, ""},
		{"session-revoked/email", setJSON(`{"format":"email","email":"Alice@Example.COM"}`, oneEvent("session-revoked", ts)),
			[]string{"rev user_email||Alice@example.com " + nb}, ""},
		{"session-revoked/opaque", setJSON(`{"format":"opaque","id":"u-7"}`, oneEvent("session-revoked", ts)),
			[]string{"rev user_opaque|https://idp.example.com|u-7 " + nb}, ""},
		{"session-revoked/phone", setJSON(`{"format":"phone_number","phone_number":"+12065550100"}`, oneEvent("session-revoked", ts)),
			[]string{"rev user_phone||+12065550100 " + nb}, ""},
		{"session-revoked/account", setJSON(`{"format":"account","uri":"acct:alice@example.com"}`, oneEvent("session-revoked", ts)),
			[]string{"rev user_account||acct:alice@example.com " + nb}, ""},
		{"session-revoked/did", setJSON(`{"format":"did","url":"did:example:123"}`, oneEvent("session-revoked", ts)),
			[]string{"rev user_did||did:example:123 " + nb}, ""},
		{"session-revoked/uri not spiffe", setJSON(`{"format":"uri","uri":"https://example.com/users/1"}`, oneEvent("session-revoked", ts)),
			[]string{"rev uri||https://example.com/users/1 " + nb}, ""},
		{"session-revoked/jwt_id", setJSON(`{"format":"jwt_id","iss":"https://wit.example.org","jti":"w-1"}`, oneEvent("session-revoked", ts)),
			[]string{"rev jti|https://wit.example.org|w-1 " + nb}, ""},
		{"session-revoked/saml_assertion_id", setJSON(`{"format":"saml_assertion_id","issuer":"https://saml.example.com","assertion_id":"_a1"}`, oneEvent("session-revoked", ts)),
			[]string{"rev saml_assertion|https://saml.example.com|_a1 " + nb}, ""},
		{"session-revoked/ip-addresses", setJSON(`{"format":"ip-addresses","ip-addresses":["10.0.0.1","::ffff:10.0.0.2"]}`, oneEvent("session-revoked", ts)),
			[]string{"rev ip||10.0.0.1 " + nb, "rev ip||10.0.0.2 " + nb}, ""},
		{"session-revoked/aliases", setJSON(`{"format":"aliases","identifiers":[{"format":"email","email":"a@example.com"},`+issSub+`]}`, oneEvent("session-revoked", ts)),
			[]string{"rev user_email||a@example.com " + nb, "rev " + userKey + " " + nb}, ""},
		// No sidecar knows the identity provider's session ids: the user is revoked too, fail-closed.
		{"session-revoked/complex user+session revokes the session and the user", setJSON(userSession, oneEvent("session-revoked", ts)),
			[]string{"rev session|https://idp.example.com|s-1 " + nb, "rev user_email||alice@example.com " + nb}, ""},
		{"session-revoked/complex user+device revokes the user", setJSON(userDevice, oneEvent("session-revoked", ts)),
			[]string{"rev user_email||alice@example.com " + nb}, ""},
		{"session-revoked/complex tenant only", setJSON(`{"format":"complex","tenant":`+issSub+`}`, oneEvent("session-revoked", ts)),
			[]string{"rev tenant|https://idp.example.com|user-123 " + nb}, ""},
		{"session-revoked/complex application spiffe", setJSON(`{"format":"complex","application":`+spiffe+`,"tenant":{"format":"opaque","id":"t"}}`, oneEvent("session-revoked", ts)),
			[]string{"rev " + agentKey + " " + nb}, ""},
		{"session-revoked/complex user aliases", setJSON(`{"format":"complex","user":{"format":"aliases","identifiers":[{"format":"email","email":"a@example.com"},{"format":"opaque","id":"u-7"}]}}`, oneEvent("session-revoked", ts)),
			[]string{"rev user_email||a@example.com " + nb, "rev user_opaque|https://idp.example.com|u-7 " + nb}, ""},
		{"session-revoked/complex unknown members only", setJSON(`{"format":"complex","pet":{"format":"opaque","id":"x"}}`, oneEvent("session-revoked", ts)),
			nil, "none of the members"},
		{"session-revoked/proprietary format", setJSON(`{"format":"x-employee","number":"42"}`, oneEvent("session-revoked", ts)),
			nil, "names nothing"},
		{"session-revoked/legacy event subject", setJSON("", oneEvent("session-revoked", `{"subject":`+issSub+`,"event_timestamp":1759999900}`)),
			[]string{"rev " + userKey + " " + nb}, ""},
		{"session-revoked/event_timestamp after iat is clamped", setJSON(spiffe, oneEvent("session-revoked", `{"event_timestamp":1760000500}`)),
			[]string{"rev " + agentKey + " nb=1760000000"}, ""},
		{"session-revoked/toe when no event_timestamp", strings.Replace(setJSON(spiffe, oneEvent("session-revoked", `{}`)), `"jti"`, `"toe":1759999000,"jti"`, 1),
			[]string{"rev " + agentKey + " nb=1759999000"}, ""},
		{"session-revoked/iat when no time", setJSON(spiffe, oneEvent("session-revoked", `{}`)),
			[]string{"rev " + agentKey + " nb=1760000000"}, ""},

		// The rest of CAEP.
		{"token-claims-change", setJSON(issSub, oneEvent("token-claims-change", `{"claims":{"role":"ro-admin"},"event_timestamp":1759999900}`)),
			[]string{"rev " + userKey + " " + nb}, ""},
		{"credential-change/x509 revoke names the certificate", setJSON(spiffe, oneEvent("credential-change", `{"credential_type":"x509","change_type":"revoke","x509_issuer":"CN=agentauth CA","x509_serial":"0A:1B:FF"}`)),
			[]string{"rev x509_serial|CN=agentauth CA|a1bff withheld"}, ""},
		{"credential-change/x509 revoke without serial", setJSON(spiffe, oneEvent("credential-change", `{"credential_type":"x509","change_type":"revoke","event_timestamp":1759999900}`)),
			[]string{"rev " + agentKey + " " + nb}, ""},
		{"credential-change/password update", setJSON(issSub, oneEvent("credential-change", `{"credential_type":"password","change_type":"update","event_timestamp":1759999900}`)),
			[]string{"rev " + userKey + " " + nb}, ""},
		{"credential-change/delete", setJSON(issSub, oneEvent("credential-change", `{"credential_type":"fido2-roaming","change_type":"delete","event_timestamp":1759999900}`)),
			[]string{"rev " + userKey + " " + nb}, ""},
		{"credential-change/create", setJSON(issSub, oneEvent("credential-change", `{"credential_type":"fido2-platform","change_type":"create"}`)),
			nil, "new credential"},
		{"assurance-level-change", setJSON(issSub, oneEvent("assurance-level-change", `{"namespace":"NIST-AAL","current_level":"aal1","previous_level":"aal2","change_direction":"decrease"}`)),
			[]string{"risk " + userKey + " /aal1"}, ""},
		{"device-compliance-change/not-compliant revokes the device and its user", setJSON(userDevice, oneEvent("device-compliance-change", `{"previous_status":"compliant","current_status":"not-compliant","event_timestamp":1759999900}`)),
			[]string{"rev device|https://idp.example.com|d-9 " + nb, "rev user_email||alice@example.com " + nb}, ""},
		{"device-compliance-change/not-compliant simple subject", setJSON(issSub, oneEvent("device-compliance-change", `{"previous_status":"compliant","current_status":"not-compliant","event_timestamp":1759999900}`)),
			[]string{"rev " + userKey + " " + nb}, ""},
		{"device-compliance-change/compliant", setJSON(userDevice, oneEvent("device-compliance-change", `{"previous_status":"not-compliant","current_status":"compliant"}`)),
			nil, "compliant"},
		{"risk-level-change/user", setJSON(issSub, oneEvent("risk-level-change", `{"principal":"USER","current_level":"high","previous_level":"LOW","risk_reason":"PASSWORD_FOUND_IN_DATA_BREACH"}`)),
			[]string{"risk " + userKey + " HIGH/"}, ""},
		{"risk-level-change/agent", setJSON(spiffe, oneEvent("risk-level-change", `{"principal":"USER","current_level":"MEDIUM"}`)),
			[]string{"risk " + agentKey + " MEDIUM/"}, ""},
		{"risk-level-change/principal picks the complex member", setJSON(userDevice, oneEvent("risk-level-change", `{"principal":"DEVICE","current_level":"HIGH"}`)),
			[]string{"risk device|https://idp.example.com|d-9 HIGH/"}, ""},
		{"risk-level-change/principal gives a simple subject its role", setJSON(`{"format":"opaque","id":"s-5"}`, oneEvent("risk-level-change", `{"principal":"SESSION","current_level":"HIGH"}`)),
			[]string{"risk session|https://idp.example.com|s-5 HIGH/"}, ""},
		{"session-established", setJSON(issSub, oneEvent("session-established", `{"acr":"x","amr":["pwd"]}`)), nil, "informational"},
		{"session-presented", setJSON(issSub, oneEvent("session-presented", `{}`)), nil, "informational"},

		// RISC.
		{"account-disabled withholds", setJSON(spiffe, oneEvent("account-disabled", `{"reason":"hijacking"}`)),
			[]string{"rev " + agentKey + " withheld"}, ""},
		{"account-purged withholds", setJSON(issSub, oneEvent("account-purged", `{}`)), []string{"rev " + userKey + " withheld"}, ""},
		{"account-enabled", setJSON(issSub, oneEvent("account-enabled", `{}`)), nil, "operator"},
		{"credential-compromise re-issues", setJSON(spiffe, oneEvent("credential-compromise", `{"credential_type":"x509","event_timestamp":1759999900}`)),
			[]string{"rev " + agentKey + " " + nb}, ""},
		{"account-credential-change-required", setJSON(issSub, oneEvent("account-credential-change-required", `{}`)),
			[]string{"rev " + userKey + " nb=1760000000"}, ""},
		{"identifier-changed withholds the old identifier", setJSON(`{"format":"email","email":"old@example.com"}`, oneEvent("identifier-changed", `{"new-value":"new@example.com"}`)),
			[]string{"rev user_email||old@example.com withheld"}, ""},
		{"identifier-recycled", setJSON(`{"format":"email","email":"re@example.com"}`, oneEvent("identifier-recycled", `{}`)),
			[]string{"rev user_email||re@example.com nb=1760000000"}, ""},
		{"sessions-revoked (deprecated)", setJSON(issSub, oneEvent("sessions-revoked", `{}`)), []string{"rev " + userKey + " nb=1760000000"}, ""},
		{"opt-in", setJSON(issSub, oneEvent("opt-in", `{}`)), nil, "consent"},
		{"opt-out-initiated", setJSON(issSub, oneEvent("opt-out-initiated", `{}`)), nil, "consent"},
		{"opt-out-cancelled", setJSON(issSub, oneEvent("opt-out-cancelled", `{}`)), nil, "consent"},
		{"opt-out-effective", setJSON(issSub, oneEvent("opt-out-effective", `{}`)), nil, "consent"},
		{"recovery-activated", setJSON(issSub, oneEvent("recovery-activated", `{}`)), nil, "recovery"},
		{"recovery-information-changed", setJSON(issSub, oneEvent("recovery-information-changed", `{}`)), nil, "recovery"},

		// SSF control and unknown events.
		{"verification", setJSON(`{"format":"opaque","id":"stream-1"}`, oneEvent("verification", `{"state":"abc"}`)), nil, "stream control"},
		{"stream-updated", setJSON(`{"format":"opaque","id":"stream-1"}`, oneEvent("stream-updated", `{"status":"paused"}`)), nil, "stream control"},
		{"unknown event type", setJSON(issSub, oneEvent("https://example.com/event/other", `{"anything":[1,2]}`)), nil, "unknown"},
		{"two alias events", setJSON(issSub, `{"`+EventSessionRevoked+`":{},"`+EventSessionsRevoked+`":{}}`),
			[]string{"rev " + userKey + " nb=1760000000", "rev " + userKey + " nb=1760000000"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := parseClaims([]byte(tt.payload))
			if err != nil {
				t.Fatalf("parseClaims: %v", err)
			}
			changes, ignored := Map(set)
			if got := summarize(changes); !slices.Equal(got, tt.want) {
				t.Errorf("changes:\n got %q\nwant %q", got, tt.want)
			}
			switch {
			case tt.ignored == "" && len(ignored) != 0:
				t.Errorf("unexpected ignored %+v", ignored)
			case tt.ignored != "" && (len(ignored) != 1 || !strings.Contains(ignored[0].Reason, tt.ignored)):
				t.Errorf("ignored = %+v, want one mentioning %q", ignored, tt.ignored)
			}
			for _, c := range changes {
				var cause *agentauthv1.Cause
				if c.Revocation != nil {
					cause = c.Revocation.GetCause()
					if !strings.HasPrefix(c.Revocation.GetId(), "ssf-") || c.Revocation.GetCreated().AsTime().Unix() != mapIAT {
						t.Errorf("revocation id %q created %v", c.Revocation.GetId(), c.Revocation.GetCreated())
					}
				} else {
					cause = c.Risk.GetCause()
				}
				if cause.GetSetJti() != "j1" || cause.GetIssuer() != testIssuer || cause.GetEventType() == "" {
					t.Errorf("cause %v", cause)
				}
			}
			again, _ := Map(set)
			for i := range changes {
				if !proto.Equal(changes[i].Revocation, again[i].Revocation) || !proto.Equal(changes[i].Risk, again[i].Risk) {
					t.Errorf("Map is not deterministic for change %d", i)
				}
			}
		})
	}
}

func TestMapperRevocationTTL(t *testing.T) {
	set, err := parseClaims([]byte(setJSON(`{"format":"uri","uri":"spiffe://example.org/a"}`,
		`{"`+EventSessionRevoked+`":{"event_timestamp":1759999900,"initiating_entity":"admin","reason_admin":{"en":"Manual revocation","de":"Manuell"}},`+
			`"`+EventAccountDisabled+`":{}}`)))
	if err != nil {
		t.Fatal(err)
	}
	changes, _ := Mapper{RevocationTTL: time.Hour}.Map(set)
	if len(changes) != 2 {
		t.Fatalf("changes %v", summarize(changes))
	}
	revoked, disabled := changes[0].Revocation, changes[1].Revocation // events are in type URI order
	if disabled.GetExpires() != nil {
		t.Errorf("a withholding revocation expires: %v", disabled.GetExpires())
	}
	if got := revoked.GetExpires().AsTime().Unix(); got != mapTS+3600 {
		t.Errorf("expires %d, want not_before + 1h", got)
	}
	if want := "session-revoked (admin): Manual revocation"; revoked.GetReason() != want {
		t.Errorf("reason %q, want %q", revoked.GetReason(), want)
	}
	if disabled.GetId() == revoked.GetId() {
		t.Error("two events of one SET share a revocation id")
	}
}

func TestMergeRisk(t *testing.T) {
	sub := &agentauthv1.Subject{Kind: KindUserEmail, Value: "a@example.com"}
	at := func(sec int64) *timestamppb.Timestamp { return timestamppb.New(time.Unix(sec, 0)) }
	stored := &agentauthv1.RiskState{Subject: sub, RiskLevel: "HIGH", AssuranceLevel: "aal2", Updated: at(100)}
	tests := []struct {
		name             string
		stored, update   *agentauthv1.RiskState
		level, assurance string
		updated          int64
	}{
		{"first", nil, &agentauthv1.RiskState{Subject: sub, RiskLevel: "LOW", Updated: at(50)}, "LOW", "", 50},
		{"newer risk keeps assurance", stored, &agentauthv1.RiskState{Subject: sub, RiskLevel: "LOW", Updated: at(200)}, "LOW", "aal2", 200},
		{"newer assurance keeps risk", stored, &agentauthv1.RiskState{Subject: sub, AssuranceLevel: "aal1", Updated: at(200)}, "HIGH", "aal1", 200},
		{"older update is dropped", stored, &agentauthv1.RiskState{Subject: sub, RiskLevel: "LOW", Updated: at(99)}, "HIGH", "aal2", 100},
		{"same instant applies", stored, &agentauthv1.RiskState{Subject: sub, RiskLevel: "MEDIUM", Updated: at(100)}, "MEDIUM", "aal2", 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MergeRisk(tt.stored, tt.update)
			if got.GetRiskLevel() != tt.level || got.GetAssuranceLevel() != tt.assurance || got.GetUpdated().AsTime().Unix() != tt.updated {
				t.Errorf("got %v", got)
			}
		})
	}
}

func TestParseSubject(t *testing.T) {
	tests := []struct {
		json string
		want string // String() of the result, or "" for an error
	}{
		{`{"format":"email","email":"a@example.com"}`, "email:a@example.com"},
		{`{"format":"phone_number","phone_number":"+12065550100"}`, "phone_number:+12065550100"},
		{`{"format":"iss_sub","iss":"https://i","sub":"s"}`, "iss_sub:https://i,s"},
		{`{"format":"opaque","id":"x"}`, "opaque:x"},
		{`{"format":"account","uri":"acct:a@example.com"}`, "account:acct:a@example.com"},
		{`{"format":"did","url":"did:example:1"}`, "did:did:example:1"},
		{`{"format":"uri","uri":"spiffe://td/a"}`, "uri:spiffe://td/a"},
		{`{"format":"jwt_id","iss":"https://i","jti":"j"}`, "jwt_id:https://i,j"},
		{`{"format":"saml_assertion_id","issuer":"https://i","assertion_id":"a"}`, "saml_assertion_id:https://i,a"},
		{`{"format":"ip-addresses","ip-addresses":["192.0.2.1","2001:db8::1"]}`, "ip-addresses:192.0.2.1,2001:db8::1"},
		{`{"format":"aliases","identifiers":[{"format":"opaque","id":"x"},{"format":"email","email":"a@b"}]}`, "aliases[opaque:x,email:a@b]"},
		{`{"format":"complex","user":{"format":"opaque","id":"u"},"session":{"format":"opaque","id":"s"}}`, "complex{session=opaque:s,user=opaque:u}"},
		{`{"subject_type":"iss-sub","iss":"https://i","sub":"s"}`, "iss_sub:https://i,s"},
		{`{"format":"x-proprietary","anything":1}`, "x-proprietary"},

		{`[]`, ""},
		{`"email"`, ""},
		{`{}`, ""},
		{`{"format":1}`, ""},
		{`{"format":"email"}`, ""},
		{`{"format":"email","email":"no-at-sign"}`, ""},
		{`{"format":"email","email":7}`, ""},
		{`{"format":"phone_number","phone_number":"2065550100"}`, ""},
		{`{"format":"iss_sub","iss":"https://i"}`, ""},
		{`{"format":"account","uri":"mailto:a@b"}`, ""},
		{`{"format":"did","url":"https://x"}`, ""},
		{`{"format":"uri","uri":"relative/path"}`, ""},
		{`{"format":"ip-addresses","ip-addresses":["not-an-ip"]}`, ""},
		{`{"format":"ip-addresses","ip-addresses":[]}`, ""},
		{`{"format":"aliases","identifiers":[]}`, ""},
		{`{"format":"aliases","identifiers":[{"format":"aliases","identifiers":[{"format":"opaque","id":"x"}]}]}`, ""},
		{`{"format":"aliases","identifiers":[{"format":"complex","user":{"format":"opaque","id":"x"}}]}`, ""},
		{`{"format":"complex"}`, ""},
		{`{"format":"complex","user":{"format":"complex","user":{"format":"opaque","id":"x"}}}`, ""},
		{`{"format":"complex","user":"alice"}`, ""},
		{`{"format":"opaque","id":"` + strings.Repeat("x", maxSubjectString+1) + `"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			got, err := ParseSubject([]byte(tt.json))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("accepted as %s", got)
				}
				if !errorsIsMalformed(err) {
					t.Fatalf("error %v does not wrap autherr.ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			// What we marshal parses back to the same identifier.
			raw, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseSubject(raw)
			if err != nil || back.String() != got.String() {
				t.Fatalf("round trip %s: %v, %v", raw, back, err)
			}
		})
	}
}

// Matchable is exactly the kinds some sidecar or the token service looks up.
func TestMatchable(t *testing.T) {
	for kind, want := range map[string]bool{
		KindSPIFFE: true, KindURI: true, KindUserEmail: true, KindUserIssSub: true, KindUserOpaque: true,
		KindJTI: true, KindX509Serial: true,
		KindSession: false, KindDevice: false, KindTenant: false, KindIP: false, KindUserPhone: false,
		KindUserAccount: false, KindUserDID: false, KindSAMLAssertion: false, KindApplication: false,
	} {
		if got := Matchable(kind); got != want {
			t.Errorf("Matchable(%s) = %t, want %t", kind, got, want)
		}
	}
}
