package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/audit"
)

// readAudit parses every record of a sidecar's log directory, in order.
func readAudit(t *testing.T, dir string) []audit.Record {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	var recs []audit.Record
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, audit.MaxRecordBytes+1)
		for sc.Scan() {
			r, err := audit.ParseRecord(sc.Bytes())
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			recs = append(recs, *r)
		}
	}
	return recs
}

// auditVerify runs `agentauthctl audit verify DIR --bundle BUNDLE` and returns its output and exit status.
func auditVerify(t *testing.T, dir, bundle string) (string, error) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "agentauthctl"), "audit", "verify", dir, "--bundle", bundle).CombinedOutput()
	return string(out), err
}

// TestAuditPair: a managed pair with audit on both sidecars, calls made for a user (so with a Txn-Token) allowed
// and refused on either side, plain and MCP. Both logs verify against the trust bundle after a clean stop, hold one
// record per decision with the MCP tool and the deciding policies, and the egress and ingress records of one call
// share its txn and traceparent. An edited record is caught.
func TestAuditPair(t *testing.T) {
	dir := t.TempDir()
	idp := newTestIdP(t, dir, idpIssuer, "")
	tokenAddr := freeAddr(t)
	c := startController(t, dir, fmt.Sprintf(`tokenService:
  listen: %s
  userIssuers:
    - {issuer: %q, audiences: [agentauth], jwksFile: %s, scopes: [weather.read]}
`, tokenAddr, idp.issuer, idp.jwksFile))
	c.ctl(t, false, "policy", "apply", writeFile(t, dir, "weather.cedar", weatherPolicy+mcpPolicy))
	egressDir, ingressDir := filepath.Join(dir, "audit-egress"), filepath.Join(dir, "audit-ingress")
	p := startManagedPairWith(t, c, managedOptions{
		route: "      txnToken: {scope: weather.read}\n",
		egress: fmt.Sprintf("  tokenService: {endpoint: %q}\naudit: {dir: %s, durability: batched}\n",
			"https://"+tokenAddr+"/token", egressDir),
		ingress: fmt.Sprintf("  txnToken: {issuer: %q, jwksURL: %q}\naudit: {dir: %s}\n",
			"https://"+tokenAddr+"/token", "https://"+tokenAddr+"/jwks", ingressDir),
	})
	user := idp.token(t, "alice@example.com", time.Now().Add(-time.Second))
	do := func(method, url, body, traceparent string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+user)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if traceparent != "" {
			req.Header.Set("Traceparent", traceparent)
		}
		resp, err := p.agent().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	mcpCall := func(tool string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q}}`, tool)
	}
	// Policy arrives asynchronously: wait until the first call passes.
	waitStatusFunc(t, func() (int, string) { return do("GET", "http://"+toolHost+"/whoami", "", "") }, http.StatusOK)
	const agentTP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if code, body := do("GET", "http://"+toolHost+"/whoami", "", agentTP); code != http.StatusOK ||
		!strings.Contains(body, agentTP) {
		t.Fatalf("whoami with a traceparent: %d %s (the tool must see the agent's traceparent)", code, body)
	}
	if code, body := do("POST", "http://"+toolHost+"/mcp", mcpCall("forecast"), ""); code != http.StatusOK {
		t.Fatalf("MCP forecast: %d %s", code, body)
	}
	if code, body := do("POST", "http://"+toolHost+"/mcp", mcpCall("delete_all"), ""); code != http.StatusForbidden {
		t.Fatalf("MCP delete_all: %d %s, want 403", code, body)
	}
	if code, body := do("GET", "http://nowhere.example/x", "", ""); code != http.StatusForbidden {
		t.Fatalf("unrouted: %d %s, want 403", code, body)
	}
	// A remediation: revoking the user reaches both sidecars over xDS, and is recorded before it is ACKed; the
	// next call for her is refused with the revocation's id.
	c.ctl(t, false, "revoke", "--kind", "user_email", "--value", "alice@example.com", "--reason", "account compromised")
	waitStatusFunc(t, func() (int, string) { return do("GET", "http://"+toolHost+"/whoami", "", "") }, http.StatusForbidden)
	// A clean stop signs a last checkpoint over every record.
	p.egress.stop(t)
	p.ingress.stop(t)

	for _, d := range []string{egressDir, ingressDir} {
		if out, err := auditVerify(t, d, c.bundle()); err != nil {
			t.Fatalf("audit verify %s: %v\n%s", d, err, out)
		}
	}
	eg, in := readAudit(t, egressDir), readAudit(t, ingressDir)
	find := func(recs []audit.Record, match func(audit.Record) bool) []audit.Record {
		var out []audit.Record
		for _, r := range recs {
			if r.Kind == audit.KindDecision && match(r) {
				out = append(out, r)
			}
		}
		return out
	}
	// Every egress call that was forwarded has its ingress twin: same txn and traceparent.
	forwarded := find(eg, func(r audit.Record) bool { return r.Decision == audit.Allow })
	if len(forwarded) < 4 {
		t.Fatalf("%d allowed egress records, want at least 4:\n%+v", len(forwarded), eg)
	}
	for _, e := range forwarded {
		if e.Txn == "" || e.Traceparent == "" || e.Subject != "alice@example.com" || e.SubjectKind != "user" ||
			e.Agent != agentID.String() || e.Direction != "egress" {
			t.Errorf("egress record %+v", e)
		}
		twins := find(in, func(r audit.Record) bool { return r.Traceparent == e.Traceparent })
		if len(twins) != 1 || twins[0].Txn != e.Txn || twins[0].Path != e.Path || twins[0].Agent != agentID.String() {
			t.Errorf("egress record %+v: ingress records with its traceparent: %+v", e, twins)
		}
	}
	if len(find(eg, func(r audit.Record) bool { return r.Traceparent == agentTP })) != 1 ||
		len(find(in, func(r audit.Record) bool { return r.Traceparent == agentTP })) != 1 {
		t.Errorf("the agent's traceparent is not on exactly one record of each side")
	}
	if got := find(eg, func(r audit.Record) bool {
		return r.Decision == audit.Deny && r.Reason == "policy_denied" && r.Host == "nowhere.example"
	}); len(got) != 1 {
		t.Errorf("egress refusal records: %+v", got)
	}
	allowed := find(in, func(r audit.Record) bool { return r.MCPTool == "forecast" })
	denied := find(in, func(r audit.Record) bool { return r.MCPTool == "delete_all" })
	if len(allowed) != 1 || allowed[0].Decision != audit.Allow || allowed[0].MCPMethod != "tools/call" ||
		len(allowed[0].PolicyIDs) != 1 || allowed[0].PolicyIDs[0] != "planner-mcp-forecast" || allowed[0].AuthMethod == "" ||
		allowed[0].Tool != toolID.String() {
		t.Errorf("allowed MCP record: %+v", allowed)
	}
	if len(denied) != 1 || denied[0].Decision != audit.Deny || denied[0].Reason != "policy_denied" || denied[0].Txn == "" {
		t.Errorf("denied MCP record: %+v", denied)
	}
	plain := find(in, func(r audit.Record) bool { return r.Path == "/whoami" && r.Decision == audit.Allow })
	if len(plain) == 0 || len(plain[0].PolicyIDs) == 0 || plain[0].PolicyIDs[0] != "planner-may-call-weather" {
		t.Errorf("whoami records: %+v", plain)
	}

	for _, recs := range [][]audit.Record{eg, in} {
		var rem []audit.Record
		for _, r := range recs {
			if r.Kind == audit.KindRemediation {
				rem = append(rem, r)
			}
		}
		if len(rem) != 1 || rem[0].Action != "revoke" || rem[0].RevocationID == "" || rem[0].Subject != "alice@example.com" ||
			rem[0].SubjectKind != "user_email" || rem[0].Cause != "admin" || rem[0].Reason != "account compromised" {
			t.Errorf("remediation records: %+v", rem)
		}
	}
	revoked := find(in, func(r audit.Record) bool { return r.Reason == "revoked" })
	if len(revoked) == 0 || revoked[0].RevocationID == "" || revoked[0].Subject != "alice@example.com" {
		t.Errorf("refusal by revocation: %+v", revoked)
	}

	// Tampering: turn the denied MCP call into an allowed one, in a copy of the ingress log.
	tampered := t.TempDir()
	copyDir(t, ingressDir, tampered)
	logFile := filepath.Join(tampered, "audit-000001.jsonl")
	b, _ := os.ReadFile(logFile)
	lines := bytes.Split(b, []byte("\n"))
	edited := -1
	for i, l := range lines {
		if bytes.Contains(l, []byte(`"mcpTool":"delete_all"`)) {
			lines[i] = bytes.Replace(l, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1)
			edited = i
		}
	}
	if edited < 0 {
		t.Fatal("no delete_all record to edit")
	}
	if err := os.WriteFile(logFile, bytes.Join(lines, []byte("\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := auditVerify(t, tampered, c.bundle())
	if err == nil || !strings.Contains(out, fmt.Sprintf("line %d", edited+1)) {
		t.Fatalf("verify of an edited record (line %d): err=%v\n%s", edited+1, err, out)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// tinyFS mounts a small tmpfs the test can fill up (a full disk); it skips the test where mounting is not allowed.
func tinyFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=512k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes to a file in dir until the filesystem is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	// Single bytes too, into what is left of the last page.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			return
		}
	}
}

// TestAuditFullDisk: the ingress sidecar's audit log is on a filesystem that fills up. With onWriteError refuse
// (the default) the sidecar answers 503 audit_unavailable and the tool is not called; with allow it serves, and
// counts each unaudited decision.
func TestAuditFullDisk(t *testing.T) {
	for _, mode := range []string{"refuse", "allow"} {
		t.Run(mode, func(t *testing.T) {
			c := startController(t, t.TempDir())
			c.ctl(t, false, "policy", "apply", writeFile(t, t.TempDir(), "weather.cedar", weatherPolicy))
			fs := tinyFS(t)
			p := startManagedPairWith(t, c, managedOptions{
				ingress: fmt.Sprintf("audit: {dir: %s, onWriteError: %s}\n", filepath.Join(fs, "audit"), mode),
			})
			url := "http://" + toolHost + "/whoami"
			waitStatus(t, p, url, http.StatusOK)
			fill(t, fs)
			want := http.StatusServiceUnavailable
			if mode == "allow" {
				want = http.StatusOK
			}
			// The log's last page may hold a few more records: call until one no longer fits.
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, _, body := getWhoami(t, p.agent(), url, nil)
				if code != http.StatusOK && code != want {
					t.Fatalf("%d %s, want %d", code, body, want)
				}
				if n := unaudited(t, p.ingressAdmin, "allow"); mode == "allow" && n > 0 {
					break
				}
				if code == want && mode == "refuse" {
					if !strings.Contains(body, "audit_unavailable") {
						t.Fatalf("refusal %s, want audit_unavailable", body)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("still %d after filling the disk", code)
				}
			}
			if mode == "refuse" {
				// The log stays refused: a log with a hole is no log.
				if code, _, body := getWhoami(t, p.agent(), url, nil); code != http.StatusServiceUnavailable {
					t.Fatalf("after the first failure: %d %s", code, body)
				}
				if n := unaudited(t, p.ingressAdmin, "allow"); n != 0 {
					t.Fatalf("refuse mode served %v unaudited requests", n)
				}
			}
		})
	}
}

var unauditedRE = regexp.MustCompile(`(?m)^agentauth_audit_unaudited_total\{decision="(\w+)",kind="decision"\} (\S+)$`)

// unaudited reads agentauth_audit_unaudited_total for decisions of one kind from a sidecar's /metrics.
func unaudited(t *testing.T, admin, decision string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, m := range unauditedRE.FindAllStringSubmatch(string(b), -1) {
		if m[1] == decision {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v
		}
	}
	t.Fatalf("no agentauth_audit_unaudited_total for %s decisions in /metrics", decision)
	return 0
}
