package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/audit"
)

func TestAuditVerifyProve(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	s, v, err := audit.LoadOrCreateKey(filepath.Join(dir, "audit.key"), "example.org/agent/planner")
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.Open(audit.Options{Dir: logDir, Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if _, err := w.Append(context.Background(), &audit.Record{Time: time.Unix(int64(i), 0).UTC(), Kind: audit.KindDecision, Decision: audit.Allow}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	key := audit.VerifierKey(v)
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := execute(args, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := run("audit", "verify", logDir, "--key", key); code != exitOK || !strings.Contains(out, "OK") {
		t.Fatalf("verify: %d %s", code, out)
	}
	if code, out := run("audit", "verify", logDir); code != exitUsage {
		t.Fatalf("verify without a key: %d %s", code, out)
	}
	code, proof := run("audit", "prove", logDir, "--index", "5", "--key", key)
	if code != exitOK {
		t.Fatalf("prove: %d %s", code, proof)
	}
	pf := filepath.Join(dir, "proof.json")
	if err := os.WriteFile(pf, []byte(proof), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run("audit", "check-proof", pf, "--key", key); code != exitOK {
		t.Fatalf("check-proof: %d %s", code, out)
	}
	if err := os.WriteFile(pf, []byte(strings.Replace(proof, `\"allow\"`, `\"deny\"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run("audit", "check-proof", pf, "--key", key); code != exitFailure {
		t.Fatalf("check-proof of a changed record: %d %s", code, out)
	}

	path := filepath.Join(logDir, "audit-000001.jsonl")
	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	lines[3] = strings.Replace(lines[3], `"allow"`, `"deny"`, 1)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := run("audit", "verify", logDir, "--key", key)
	if code != exitFailure || !strings.Contains(out, "TAMPERED") || !strings.Contains(out, "record 3") || !strings.Contains(out, "line 4") {
		t.Fatalf("verify of an edited log: %d %s", code, out)
	}
	code, out = run("audit", "verify", logDir, "--key", key, "-o", "json")
	if code != exitFailure || !strings.Contains(out, `"kind": "edited"`) {
		t.Fatalf("verify -o json: %d %s", code, out)
	}
}

// writeTraceLog writes a log for id with the given records, its key certified by an SVID of ca, as a sidecar does.
func writeTraceLog(t *testing.T, ca *testca.CA, id spiffeid.ID, recs ...*audit.Record) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	s, v, err := audit.LoadOrCreateKey(filepath.Join(t.TempDir(), "audit.key"), audit.OriginFor(id))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := audit.CertifyKey(audit.VerifierKey(v), ca.CreateX509SVID(id), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.Open(audit.Options{Dir: dir, Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, audit.KeyCertFile), cert, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := w.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAuditTrace(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td)
	bundle := ca.WriteBundleFile(t.TempDir())
	planner, weather := spiffeid.RequireFromPath(td, "/agent/planner"), spiffeid.RequireFromPath(td, "/tool/weather")
	t0 := time.Now().UTC()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	rec := func(ms int, dir, decision, reason string, policies ...string) *audit.Record {
		r := &audit.Record{Time: t0.Add(time.Duration(ms) * time.Millisecond), Kind: audit.KindDecision, Direction: dir,
			Agent: planner.String(), Subject: "alice@example.com", Host: "weather.tools.local", Method: "POST", Path: "/mcp",
			MCPMethod: "tools/call", MCPTool: "forecast", Decision: decision, Reason: reason, PolicyIDs: policies, Txn: "txn-1", Traceparent: tp}
		if dir == "ingress" {
			r.Tool = weather.String()
		}
		return r
	}
	egress := writeTraceLog(t, ca, planner, rec(1, "egress", audit.Allow, ""), rec(5, "egress", audit.Deny, "revoked"))
	ingress := writeTraceLog(t, ca, weather, rec(2, "ingress", audit.Allow, "", "planner-mcp-forecast"),
		&audit.Record{Time: t0.Add(3 * time.Millisecond), Kind: audit.KindRemediation, Action: "revoke", Subject: "alice@example.com",
			RevocationID: "rev-1", Cause: "https://schemas.openid.net/secevent/caep/event-type/session-revoked", SETJti: "jti-7"})
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := execute(args, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	code, out := run("audit", "trace", "txn-1", egress, "--log", ingress, "--bundle", bundle)
	if code != exitOK {
		t.Fatalf("trace: %d %s", code, out)
	}
	for _, want := range []string{"example.org/agent/planner", "example.org/tool/weather", "verified, 2 records",
		"on behalf of  alice@example.com", "planner-mcp-forecast", "SET jti jti-7", "mcp:tools/call forecast"} {
		if !strings.Contains(out, want) {
			t.Errorf("trace output lacks %q:\n%s", want, out)
		}
	}
	code, out = run("audit", "trace", tp, egress, ingress, "--bundle", bundle, "-o", "json")
	var res struct {
		Logs  []struct{ Verified bool }
		Chain audit.Chain
	}
	if err := json.Unmarshal([]byte(out), &res); code != exitOK || err != nil {
		t.Fatalf("trace -o json: %d %v\n%s", code, err, out)
	}
	var got []string
	for _, s := range res.Chain.Steps {
		got = append(got, s.Record.Direction+s.Record.Action+"/"+s.Record.Decision)
	}
	if strings.Join(got, " ") != "egress/allow ingress/allow revoke/ egress/deny" || res.Chain.Agent != planner.String() {
		t.Fatalf("chain %v (agent %s)", got, res.Chain.Agent)
	}

	// A log edited after the fact: still read, marked, and the command fails.
	path := filepath.Join(ingress, "audit-000001.jsonl")
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, bytes.Replace(b, []byte(`"decision":"allow"`), []byte(`"decision":"deny"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = run("audit", "trace", "txn-1", egress, ingress, "--bundle", bundle)
	if code != exitFailure || !strings.Contains(out, "NOT VERIFIED") || !strings.Contains(out, "example.org/tool/weather (!)") {
		t.Fatalf("trace with an edited log: %d %s", code, out)
	}
}
