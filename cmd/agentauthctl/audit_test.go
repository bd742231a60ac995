package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
