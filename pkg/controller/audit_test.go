package controller

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/signals"
)

// controllerRecords verifies the controller's audit log against its key certificate and the CA, and returns its
// records.
func controllerRecords(t *testing.T, c *Controller, dir string) []*audit.Record {
	t.Helper()
	cert, err := os.ReadFile(filepath.Join(dir, audit.KeyCertFile))
	if err != nil {
		t.Fatal(err)
	}
	v, id, err := audit.VerifyKeyCertificate(cert, c.ca.X509Bundle())
	if err != nil || id.Path() != "/agentauth/controller" {
		t.Fatalf("key certificate: %v (%s)", err, id)
	}
	if _, err := audit.Verify(dir, v); err != nil {
		t.Fatalf("the controller's audit log does not verify: %v", err)
	}
	var recs []*audit.Record
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			r, err := audit.ParseRecord(sc.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
	}
	return recs
}

// TestControllerAuditRecords: each controller action leaves a record in its own verifiable log: a join token and
// the issuance it allows, a renewal and a refused attestation with the attestation kind; policy apply, revoke and
// unrevoke with the admin's peer identity; a Security Event Token's revocation with its jti.
func TestControllerAuditRecords(t *testing.T) {
	tr := newTransmitter(t)
	auditDir := filepath.Join(t.TempDir(), "audit")
	cfg := ssfConfig(t, fmt.Sprintf(`ssf:
  listen: 127.0.0.1:0
  transmitters:
    - {issuer: %s, audience: [%s], jwksURL: %s/jwks, pushAuthorization: "Bearer push-secret"}
audit: {dir: %s}
`, tr.Issuer, ssfAudience, tr.Issuer, auditDir))
	c, stop := runController(t, cfg)
	admin := adminClient(cfg)
	addr := c.issuerLn().Addr().String()
	id := spiffeid.RequireFromPath(c.td, "/agent/planner")

	code, body := adminPost(t, admin, "/v1/join-tokens", JoinTokenRequest{SPIFFEID: id.String(), TTL: time.Hour})
	if code != http.StatusCreated {
		t.Fatalf("join token: %d %s", code, body)
	}
	var jt JoinTokenResponse
	if err := json.Unmarshal(body, &jt); err != nil {
		t.Fatal(err)
	}
	w, err := attestWorkload(t, addr, c.ca, jt.Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := renewWorkload(t, addr, c.ca, w); err != nil {
		t.Fatal(err)
	}
	if _, err := attestWorkload(t, addr, c.ca, jt.Token); err == nil {
		t.Fatal("a used join token attested again")
	}
	policies, _ := json.Marshal(PoliciesRequest{Policies: []PolicyDoc{{Source: "p.cedar", Cedar: `@id("allow-all") permit(principal, action, resource);`}}})
	req, _ := http.NewRequest(http.MethodPut, "http://admin/v1/policies", bytes.NewReader(policies))
	resp, err := admin.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("policy apply: %v %v", err, resp)
	}
	resp.Body.Close()
	code, body = adminPost(t, admin, "/v1/revocations", RevokeRequest{Kind: "spiffe", Value: id.String(), Reason: "laptop stolen"})
	if code != http.StatusCreated {
		t.Fatalf("revoke: %d %s", code, body)
	}
	var rev struct{ ID string }
	if err := json.Unmarshal(body, &rev); err != nil || rev.ID == "" {
		t.Fatalf("revocation answer %s: %v", body, err)
	}
	req, _ = http.NewRequest(http.MethodDelete, "http://admin/v1/revocations/"+rev.ID, nil)
	if resp, err = admin.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("unrevoke: %v %v", err, resp)
	}
	resp.Body.Close()
	set := tr.Sign(oneEventSET(id, signals.EventSessionRevoked, nil))
	if code := push(t, "http://"+c.ssfLn().Addr().String()+"/ssf/events", "Bearer push-secret", set.Token); code != http.StatusAccepted {
		t.Fatalf("push: HTTP %d", code)
	}
	stop()

	recs := controllerRecords(t, c, auditDir)
	byAction := map[string][]*audit.Record{}
	for _, r := range recs {
		if r.Kind != audit.KindController {
			t.Errorf("record of kind %q in the controller's log", r.Kind)
		}
		byAction[r.Action] = append(byAction[r.Action], r)
	}
	one := func(action string) *audit.Record {
		t.Helper()
		if len(byAction[action]) != 1 {
			t.Fatalf("%d %s records, want 1; all records: %+v", len(byAction[action]), action, recs)
		}
		return byAction[action][0]
	}
	isAdmin := func(r *audit.Record) {
		t.Helper()
		if want := fmt.Sprintf("unix:uid=%d,", os.Geteuid()); !strings.HasPrefix(r.Actor, want) {
			t.Errorf("%s record: actor %q, want the admin's peer credentials %s...", r.Action, r.Actor, want)
		}
	}
	if r := one(ActionJoinToken); r.Agent != id.String() || strings.Contains(string(mustJSON(t, r)), jt.Token) {
		t.Errorf("join token record %+v (it must name the ID and never hold the token)", r)
	} else {
		isAdmin(r)
	}
	issued := byAction[ActionSVIDIssued]
	if len(issued) != 2 || issued[0].Attestation != attestJoinToken || issued[1].Attestation != attestRenew ||
		issued[0].Agent != id.String() || issued[1].Agent != id.String() {
		t.Errorf("issuance records: %+v", issued)
	}
	if r := one(ActionSVIDRefused); r.Attestation != attestJoinToken || r.Decision != audit.Deny || r.Reason != "policy_denied" {
		t.Errorf("refusal record %+v", r)
	}
	if r := one(ActionPolicyApply); len(r.PolicyIDs) != 1 || r.PolicyIDs[0] != "p.cedar" {
		t.Errorf("policy apply record %+v", r)
	} else {
		isAdmin(r)
	}
	if r := one(ActionRevoke); r.RevocationID != rev.ID || r.Agent != id.String() || r.Reason != "laptop stolen" || r.Cause != CauseAdmin {
		t.Errorf("revoke record %+v", r)
	} else {
		isAdmin(r)
	}
	if r := one(ActionUnrevoke); r.RevocationID != rev.ID {
		t.Errorf("unrevoke record %+v", r)
	} else {
		isAdmin(r)
	}
	if r := one(ActionSETRevoke); r.SETJti != set.JTI || r.Cause != signals.EventSessionRevoked || r.Agent != id.String() ||
		r.Actor != tr.Issuer || r.RevocationID == "" {
		t.Errorf("SET record %+v (jti %s)", r, set.JTI)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
