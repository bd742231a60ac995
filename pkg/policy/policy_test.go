package policy

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/policy/mcp"
	"github.com/agentauth/agentauth/pkg/wire"
)

const (
	planner    = "spiffe://example.org/agent/planner"
	writer     = "spiffe://example.org/agent/writer"
	reporter   = "spiffe://example.org/agent/reporter"
	contractor = "spiffe://partner.example/agent/contractor"
	stranger   = "spiffe://evil.example/agent/x"
)

func noon() time.Time { return time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC) }

func loadCorpus(t testing.TB) *Set {
	t.Helper()
	s, err := LoadDir("testdata/corpus")
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	return s
}

// httpReq is a WPT-authenticated plain HTTP request.
func httpReq(agent, method, host, path string) Request {
	return Request{AgentID: agent, AuthMethod: wire.AuthWITWPT, Host: host, Method: method, Path: path, Time: noon()}
}

// mcpReq is an MCP POST to mcp.example carrying body, parsed the way the sidecar parses it.
func mcpReq(t testing.TB, agent, body string) Request {
	t.Helper()
	msg, err := mcp.Parse("application/json", []byte(body), 0)
	if err != nil {
		t.Fatalf("mcp.Parse(%s): %v", body, err)
	}
	r := httpReq(agent, "POST", "mcp.example", "/mcp")
	r.MCP = msg.Calls
	return r
}

func toolCall(id int, name, args string) string {
	if args == "" {
		args = "{}"
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, name, args)
}

func with(r Request, f func(*Request)) Request {
	f(&r)
	return r
}

func TestCorpus(t *testing.T) {
	set := loadCorpus(t)
	tpm := map[string]string{"attestation": "tpm"}
	alice := func(scope string) func(*Request) {
		return func(r *Request) {
			r.DelegatedSubject = "alice"
			r.DelegatedClaims = map[string]string{"scope": scope, "status": "active"}
			r.TransactionID = "txn-1"
		}
	}
	tests := []struct {
		name    string
		req     Request
		allowed bool
		ids     []string
		reason  string
	}{
		// agent × tool × HTTP method
		{"read by any example.org agent", httpReq(reporter, "GET", "orders.example", "/orders/1"), true, []string{"orders-read"}, ""},
		{"host is case-insensitive", httpReq(reporter, "HEAD", "Orders.EXAMPLE", "/"), true, []string{"orders-read"}, ""},
		{"write not permitted for reporter", httpReq(reporter, "POST", "orders.example", "/orders/1"), false, nil, "policy_denied"},
		{"write by planner with WPT", httpReq(planner, "POST", "orders.example", "/orders/1"), true, []string{"orders-write-planner"}, ""},
		{"write by planner over mTLS only", with(httpReq(planner, "POST", "orders.example", "/orders/1"), func(r *Request) { r.AuthMethod = wire.AuthMTLS }), false, nil, "policy_denied"},
		{"write by planner outside /orders", httpReq(planner, "PUT", "orders.example", "/admin"), false, nil, "policy_denied"},
		{"unknown tool", httpReq(reporter, "GET", "billing.example", "/"), false, nil, "policy_denied"},
		{"lower-case method is not GET", httpReq(reporter, "get", "orders.example", "/"), false, nil, "policy_denied"},
		{"admin needs attestation", httpReq(reporter, "GET", "admin.example", "/"), false, nil, "policy_denied"},
		{"admin with TPM attestation", with(httpReq(reporter, "DELETE", "admin.example", "/x"), func(r *Request) { r.AgentAttrs = tpm }), true, []string{"admin-attested"}, ""},
		{"unlisted HTTP method is in Action::http", with(httpReq(reporter, "PROPFIND", "admin.example", "/x"), func(r *Request) { r.AgentAttrs = tpm }), true, []string{"admin-attested"}, ""},
		{"partner agent with TPM attestation", with(httpReq(contractor, "GET", "admin.example", "/"), func(r *Request) { r.AgentAttrs = tpm }), true, []string{"admin-attested"}, ""},
		{"forbid overrides permit: foreign domain", with(httpReq(stranger, "GET", "admin.example", "/"), func(r *Request) { r.AgentAttrs = tpm }), false, []string{"foreign-domains"}, "policy_denied"},
		{"explicit trust domain wins over the id's", with(httpReq(stranger, "GET", "orders.example", "/"), func(r *Request) { r.TrustDomain = "example.org" }), true, []string{"orders-read"}, ""},
		// time
		{"contractor in business hours", httpReq(contractor, "GET", "orders.example", "/"), true, []string{"contractor-business-hours"}, ""},
		{"contractor at night", with(httpReq(contractor, "GET", "orders.example", "/"), func(r *Request) { r.Time = noon().Add(9 * time.Hour) }), false, nil, "policy_denied"},
		{"contractor after expiry", with(httpReq(contractor, "GET", "orders.example", "/"), func(r *Request) { r.Time = noon().AddDate(5, 0, 0) }), false, nil, "policy_denied"},
		{"contractor cannot HEAD", httpReq(contractor, "HEAD", "orders.example", "/"), false, nil, "policy_denied"},
		// risk and delegated subject
		{"high risk", with(httpReq(reporter, "GET", "orders.example", "/"), func(r *Request) { r.RiskLevel = RiskHigh }), false, []string{"high-risk"}, "policy_denied"},
		{"unknown risk word counts as high", with(httpReq(reporter, "GET", "orders.example", "/"), func(r *Request) { r.RiskLevel = "SEVERE" }), false, []string{"high-risk"}, "policy_denied"},
		{"medium risk may read", with(httpReq(reporter, "GET", "orders.example", "/"), func(r *Request) { r.RiskLevel = "medium" }), true, []string{"orders-read"}, ""},
		{"medium risk may not write", with(httpReq(planner, "POST", "orders.example", "/orders/1"), func(r *Request) { r.RiskLevel = RiskMedium }), false, []string{"writes-need-low-risk"}, "policy_denied"},
		{"low risk may write", with(httpReq(planner, "POST", "orders.example", "/orders/1"), func(r *Request) { r.RiskLevel = RiskLow }), true, []string{"orders-write-planner"}, ""},
		{"active user", with(httpReq(reporter, "GET", "orders.example", "/"), alice("orders.read")), true, []string{"orders-read"}, ""},
		{"suspended user", with(httpReq(reporter, "GET", "orders.example", "/"), func(r *Request) {
			r.DelegatedSubject, r.DelegatedClaims = "bob", map[string]string{"status": "suspended"}
		}), false, []string{"suspended-subjects"}, "policy_denied"},
		// bad requests are denied, never allowed
		{"no agent", httpReq("", "GET", "orders.example", "/"), false, nil, "credential_missing"},
		{"unknown auth method", with(httpReq(reporter, "GET", "orders.example", "/"), func(r *Request) { r.AuthMethod = "bearer" }), false, nil, "malformed"},
		{"agent id without trust domain", httpReq("planner", "GET", "orders.example", "/"), false, nil, "malformed"},
		{"no host", httpReq(reporter, "GET", "", "/"), false, nil, "malformed"},
		// MCP: agent × MCP tool name
		{"planner calls search", mcpReq(t, planner, toolCall(1, "search", `{"q":"x"}`)), true, []string{"mcp-planner-tools"}, ""},
		{"forbid overrides permit: delete tool", mcpReq(t, planner, toolCall(1, "delete_order", "")), false, []string{"mcp-no-deletes"}, "policy_denied"},
		{"reporter may not call tools", mcpReq(t, reporter, toolCall(1, "search", "")), false, nil, "policy_denied"},
		{"same tool on another MCP server", with(mcpReq(t, planner, toolCall(1, "search", "")), func(r *Request) { r.Host = "mcp.other" }), false, nil, "policy_denied"},
		{"writer creates for a user with scope", with(mcpReq(t, writer, toolCall(1, "create_order", `{"currency":"EUR","qty":3}`)), alice("orders.read orders.create")), true, []string{"mcp-writer-create"}, ""},
		{"writer without delegated user", mcpReq(t, writer, toolCall(1, "create_order", "")), false, nil, "policy_denied"},
		{"writer for a user without scope", with(mcpReq(t, writer, toolCall(1, "create_order", "")), alice("orders.read")), false, nil, "policy_denied"},
		{"tool argument forbidden", with(mcpReq(t, writer, toolCall(1, "create_order", `{"currency":"USD"}`)), alice("orders.create")), false, []string{"mcp-euro-only"}, "policy_denied"},
		{"tool call at medium risk", with(mcpReq(t, writer, toolCall(1, "create_order", "")), func(r *Request) {
			alice("orders.create")(r)
			r.RiskLevel = RiskMedium
		}), false, []string{"writes-need-low-risk"}, "policy_denied"},
		{"session plumbing", mcpReq(t, reporter, `[{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"s1","result":{}}]`), true, []string{"mcp-session"}, ""},
		{"partner has no MCP session", mcpReq(t, contractor, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}`), false, nil, "policy_denied"},
		{"unlisted MCP method", mcpReq(t, reporter, `{"jsonrpc":"2.0","id":0,"method":"tasks/list"}`), false, nil, "policy_denied"},
		{"public resource", mcpReq(t, reporter, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/a.txt"}}`), true, []string{"mcp-public-resources"}, ""},
		{"private resource", mcpReq(t, reporter, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///private/a.txt"}}`), false, nil, "policy_denied"},
		{"prompt", mcpReq(t, reporter, `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"review"}}`), true, []string{"mcp-review-prompt"}, ""},
		{"other prompt", mcpReq(t, reporter, `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"jailbreak"}}`), false, nil, "policy_denied"},
		{"notification tools/call is still a tool call", mcpReq(t, reporter, `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"search"}}`), false, nil, "policy_denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewEngine(set).Decide(context.Background(), tt.req)
			if d.Allowed != tt.allowed || !reflect.DeepEqual(d.PolicyIDs, tt.ids) || d.Reason != tt.reason {
				t.Fatalf("Decide = allowed %v ids %v reason %q, want %v %v %q\n%s", d.Allowed, d.PolicyIDs, d.Reason, tt.allowed, tt.ids, tt.reason, Explain(set, tt.req))
			}
			if err := d.Err(); (err == nil) != tt.allowed {
				t.Errorf("Err() = %v", err)
			} else if err != nil && !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Err() = %v, want reason %s", err, tt.reason)
			}
			if len(d.Errors) > 0 {
				t.Errorf("evaluation errors: %v", d.Errors)
			}
			if len(tt.req.MCP) != len(d.PerCall) {
				t.Errorf("PerCall has %d entries for %d calls", len(d.PerCall), len(tt.req.MCP))
			}
		})
	}
}

func TestMCPBatchDecidedPerCall(t *testing.T) {
	set := loadCorpus(t)
	body := "[" + toolCall(1, "search", "") + "," + toolCall(2, "delete_order", "") + "," + toolCall(3, "get_order", "") + "," + toolCall(4, "export_all", "") + "]"
	d := NewEngine(set).Decide(context.Background(), mcpReq(t, planner, body))
	if d.Allowed {
		t.Fatal("batch with denied calls allowed as a whole")
	}
	if !errors.Is(d.Err(), autherr.ErrDenied) {
		t.Errorf("Err() = %v, want autherr.ErrDenied", d.Err())
	}
	want := []struct {
		allowed bool
		ids     []string
	}{{true, []string{"mcp-planner-tools"}}, {false, []string{"mcp-no-deletes"}}, {true, []string{"mcp-planner-tools"}}, {false, nil}}
	if len(d.PerCall) != len(want) {
		t.Fatalf("PerCall = %d entries", len(d.PerCall))
	}
	for i, w := range want {
		c := d.PerCall[i]
		if c.Allowed != w.allowed || !reflect.DeepEqual(c.PolicyIDs, w.ids) {
			t.Errorf("call %d = %v %v, want %v %v", i, c.Allowed, c.PolicyIDs, w.allowed, w.ids)
		}
		if string(c.Call.ID) != fmt.Sprint(i+1) {
			t.Errorf("call %d has id %s", i, c.Call.ID)
		}
	}
	if got := string(d.PerCall[1].JSONRPCError()); got != `{"jsonrpc":"2.0","id":2,"error":{"code":-32001,"message":"forbidden: policy_denied"}}` {
		t.Errorf("JSONRPCError = %s", got)
	}
	if d.PerCall[0].Err() != nil || !errors.Is(d.PerCall[3].Err(), autherr.ErrDenied) {
		t.Errorf("per-call Err: %v, %v", d.PerCall[0].Err(), d.PerCall[3].Err())
	}
	if !reflect.DeepEqual(d.PolicyIDs, []string{"mcp-no-deletes"}) {
		t.Errorf("PolicyIDs = %v, want the forbid that denied", d.PolicyIDs)
	}
}

// revocationList is the kind of state the controller pushes: subject → (revocation id, time of revocation).
// A credential issued after the revocation is not revoked (the subject re-authenticated).
type revocationList map[string]struct {
	id string
	at time.Time
}

func (l revocationList) Revoked(_ context.Context, kind, value string, issuedAt time.Time) (string, bool) {
	r, ok := l[kind+":"+value]
	if !ok || issuedAt.After(r.at) {
		return "", false
	}
	return r.id, true
}

func TestUserRevocationDeniesEveryAgent(t *testing.T) {
	set := loadCorpus(t)
	revokedAt := noon().Add(-time.Hour)
	revs := revocationList{"user:mallory": {"rev-42", revokedAt}}
	e := NewEngine(set, WithRevocations(revs))
	actingFor := func(user string, issued time.Time) func(*Request) {
		return func(r *Request) {
			r.DelegatedSubject, r.DelegatedIssuedAt = user, issued
			r.DelegatedClaims = map[string]string{"scope": "orders.create"}
		}
	}
	// Every request below is allowed for alice; the same requests for mallory must all be denied.
	allowedForAlice := []Request{
		httpReq(reporter, "GET", "orders.example", "/"),
		httpReq(planner, "POST", "orders.example", "/orders/1"),
		httpReq(contractor, "GET", "orders.example", "/"),
		mcpReq(t, writer, toolCall(7, "create_order", "")),
		mcpReq(t, planner, "["+toolCall(1, "search", "")+","+toolCall(2, "get_order", "")+"]"),
	}
	for _, base := range allowedForAlice {
		name := base.AgentID + " " + base.Method + " " + base.Host
		t.Run(name, func(t *testing.T) {
			if d := e.Decide(context.Background(), with(base, actingFor("alice", revokedAt.Add(-time.Minute)))); !d.Allowed {
				t.Fatalf("alice denied: %v", d.Err())
			}
			d := e.Decide(context.Background(), with(base, actingFor("mallory", revokedAt.Add(-time.Minute))))
			if d.Allowed || d.Reason != "revoked" || d.RevocationID != "rev-42" || !errors.Is(d.Err(), autherr.ErrRevoked) {
				t.Fatalf("mallory: allowed %v reason %q revocation %q err %v", d.Allowed, d.Reason, d.RevocationID, d.Err())
			}
			if len(d.PerCall) != len(base.MCP) {
				t.Fatalf("PerCall has %d entries for %d calls", len(d.PerCall), len(base.MCP))
			}
			for _, c := range d.PerCall {
				if c.Allowed || c.Reason != "revoked" || !errors.Is(c.Err(), autherr.ErrRevoked) {
					t.Errorf("call %s not denied as revoked: %+v", c.Call.ID, c)
				}
			}
			// A token issued after the revocation (mallory signed in again) is judged by policy again.
			if d := e.Decide(context.Background(), with(base, actingFor("mallory", revokedAt.Add(time.Minute)))); !d.Allowed {
				t.Errorf("mallory with a fresh token denied: %v", d.Err())
			}
		})
	}
}

func TestAgentAndTxnRevocation(t *testing.T) {
	e := NewEngine(loadCorpus(t), WithRevocations(RevocationsFunc(func(_ context.Context, kind, value string, _ time.Time) (string, bool) {
		switch kind + ":" + value {
		case "agent:" + planner:
			return "rev-agent", true
		case "txn:txn-9":
			return "rev-txn", true
		}
		return "", false
	})))
	if d := e.Decide(context.Background(), httpReq(planner, "GET", "orders.example", "/")); d.RevocationID != "rev-agent" || d.Allowed {
		t.Errorf("revoked agent: %+v", d)
	}
	r := with(httpReq(reporter, "GET", "orders.example", "/"), func(r *Request) { r.DelegatedSubject, r.TransactionID = "alice", "txn-9" })
	if d := e.Decide(context.Background(), r); d.RevocationID != "rev-txn" || d.Allowed {
		t.Errorf("revoked transaction: %+v", d)
	}
	if d := e.Decide(context.Background(), httpReq(reporter, "GET", "orders.example", "/")); !d.Allowed {
		t.Errorf("unrevoked agent denied: %v", d.Err())
	}
	// A transaction the revoked planner began for itself is refused to the agents it calls: the system subject is
	// checked as the agent it is, not as a user.
	r = with(httpReq(reporter, "GET", "orders.example", "/"), func(r *Request) {
		r.SubjectKind, r.DelegatedSubject, r.TransactionID = SubjectKindSystem, planner, "txn-10"
	})
	if d := e.Decide(context.Background(), r); d.RevocationID != "rev-agent" || d.Allowed {
		t.Errorf("transaction of a revoked system: %+v", d)
	}
}

// TestSubjectKindDecidesWhoIsAUser: only a user the agent acts for is context.subject; an agent acting for itself
// or for a system is not, and context.subject_kind says which. An unknown kind is malformed.
func TestSubjectKindDecidesWhoIsAUser(t *testing.T) {
	set, err := Compile(map[string][]byte{"p.cedar": []byte(`
@id("for-users") permit (principal, action, resource) when { context has subject };
@id("for-self") permit (principal, action, resource) when { context.subject_kind == SubjectKind::"self" && context.path == "/self" };`)})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set)
	for _, tc := range []struct {
		kind    SubjectKind
		subject string
		path    string
		allowed bool
	}{
		{SubjectKindUser, "alice", "/", true},
		{SubjectKindNone, "alice", "/", true}, // a caller that names only the subject means a user
		{SubjectKindSelf, "", "/", false},
		{SubjectKindSelf, "", "/self", true},
		{SubjectKindSystem, planner, "/", false},
		{SubjectKindNone, "", "/", false},
	} {
		r := with(httpReq(reporter, "GET", "orders.example", tc.path), func(r *Request) {
			r.SubjectKind, r.DelegatedSubject = tc.kind, tc.subject
		})
		if d := e.Decide(context.Background(), r); d.Allowed != tc.allowed {
			t.Errorf("%q %q %s: allowed %t (%s), want %t", tc.kind, tc.subject, tc.path, d.Allowed, d.String(), tc.allowed)
		}
	}
	r := with(httpReq(reporter, "GET", "orders.example", "/"), func(r *Request) { r.SubjectKind = "robot" })
	if d := e.Decide(context.Background(), r); d.Allowed || d.Reason != autherr.ErrMalformed.Code() {
		t.Errorf("unknown subject kind: %+v", d)
	}
}

func TestEngineWithoutSetDenies(t *testing.T) {
	e := NewEngine(nil)
	req := mcpReq(t, planner, toolCall(1, "search", ""))
	d := e.Decide(context.Background(), req)
	if d.Allowed || d.Reason != "policy_denied" || len(d.PerCall) != 1 || d.PerCall[0].Allowed {
		t.Fatalf("no set: %+v", d)
	}
	set := loadCorpus(t)
	if old := e.Swap(set); old != nil || e.Set() != set {
		t.Fatalf("Swap returned %v", old)
	}
	if d := e.Decide(context.Background(), req); !d.Allowed {
		t.Fatalf("after Swap: %v", d.Err())
	}
}

// TestSwapUnderLoad runs decisions while the set is swapped back and forth; with -race this checks that readers
// never lock and never see a half-installed set. Every decision must be one of the two sets' answers.
func TestSwapUnderLoad(t *testing.T) {
	allow, err := Compile(map[string][]byte{"a.cedar": []byte(`@id("all") permit (principal, action, resource);`)})
	if err != nil {
		t.Fatal(err)
	}
	deny, err := Compile(map[string][]byte{"d.cedar": []byte(`@id("none") forbid (principal, action, resource);`)})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(allow)
	req := httpReq(reporter, "GET", "orders.example", "/")
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				d := e.Decide(context.Background(), req)
				if ids := fmt.Sprint(d.PolicyIDs); !(d.Allowed && ids == "[all]") && !(!d.Allowed && ids == "[none]") {
					errs <- fmt.Errorf("inconsistent decision %v %v", d.Allowed, d.PolicyIDs)
					return
				}
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			e.Swap(deny)
		} else {
			e.Swap(allow)
		}
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentDecisionsAreIndependent decides many different requests from several goroutines at once and
// checks every decision against the one made alone, both when it is returned and after all goroutines are done:
// Decide reuses pooled scratch space, and nothing of it may show up in, or later change, a returned Decision.
func TestConcurrentDecisionsAreIndependent(t *testing.T) {
	set := loadCorpus(t)
	e := NewEngine(set)
	tpm := map[string]string{"attestation": "tpm"}
	var reqs []Request
	for i, a := range []string{planner, writer, reporter, contractor, stranger} {
		for _, h := range []string{"orders.example", "admin.example", "billing.example"} {
			for _, m := range []string{"GET", "POST", "DELETE", "PROPFIND"} {
				reqs = append(reqs, with(httpReq(a, m, h, fmt.Sprintf("/orders/%d", i)), func(r *Request) {
					r.AgentAttrs, r.RiskLevel = tpm, []RiskLevel{RiskLow, RiskMedium, RiskHigh}[i%3]
				}))
			}
		}
		for _, b := range []string{
			toolCall(1, "search", `{"q":"x"}`), toolCall(1, "delete_order", ""), toolCall(1, "create_order", `{"currency":"EUR"}`),
			"[" + toolCall(1, "search", "") + "," + toolCall(2, "create_order", `{"currency":"USD","qty":2}`) + "," + toolCall(3, "get_order", "") + "]",
			`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/a.txt"}}`,
			`[{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}},{"jsonrpc":"2.0","id":"s1","result":{}}]`,
		} {
			reqs = append(reqs, with(mcpReq(t, a, b), func(r *Request) {
				r.DelegatedSubject = fmt.Sprintf("user-%d", i)
				r.DelegatedClaims = map[string]string{"scope": "orders.read orders.create", "status": []string{"active", "suspended"}[i%2]}
			}))
		}
	}
	want := make([]Decision, len(reqs))
	allowed := 0
	for i, r := range reqs {
		want[i] = e.Decide(context.Background(), r)
		if want[i].Allowed {
			allowed++
		}
	}
	if allowed == 0 || allowed == len(reqs) {
		t.Fatalf("%d of %d requests allowed: the mix proves little", allowed, len(reqs))
	}
	const workers, rounds = 8, 20
	got := make([][]Decision, workers)
	var wg sync.WaitGroup
	for w := range workers {
		got[w] = make([]Decision, len(reqs))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range rounds {
				for k := range reqs {
					i := (k*7 + w*13 + n) % len(reqs) // every worker in its own order
					d := e.Decide(context.Background(), reqs[i])
					if !reflect.DeepEqual(d, want[i]) {
						t.Errorf("request %d in worker %d: %v, alone %v", i, w, d, want[i])
						return
					}
					got[w][i] = d
				}
			}
		}()
	}
	wg.Wait()
	for w := range got {
		for i, d := range got[w] {
			if !reflect.DeepEqual(d, want[i]) || d.String() != want[i].String() {
				t.Fatalf("request %d's decision in worker %d changed after it was returned: %v, want %v", i, w, d, want[i])
			}
		}
	}
}

// TestDecisionString checks the hand-built messages against the fmt formatting they replace, including resource
// ids that EntityUID.String escapes.
func TestDecisionString(t *testing.T) {
	fmtWhy := func(w why) string {
		switch {
		case w.text != "":
			return w.text
		case w.allowed:
			return fmt.Sprintf("%v permits %s to %s on %s", w.ids, w.agent, w.action, w.resource)
		case w.forbidden:
			return fmt.Sprintf("%v forbids %s to %s on %s", w.ids, w.agent, w.action, w.resource)
		}
		return fmt.Sprintf("no policy permits %s to %s on %s", w.agent, w.action, w.resource)
	}
	fmtDecision := func(d Decision) string {
		if len(d.PerCall) == 0 || d.why.text != "" {
			return fmtWhy(d.why)
		}
		var parts []string
		for i, c := range d.PerCall {
			if d.Allowed || !c.Allowed {
				parts = append(parts, fmt.Sprintf("call %d: %s", i, fmtWhy(c.why)))
			}
		}
		return strings.Join(parts, "; ")
	}
	set := loadCorpus(t)
	var ds []Decision
	for _, name := range []string{"search", "delete_order", `quote"d`, `back\\slash`, "it's", "tab\tnew\nline", "ünï", "e\u0301", "\u00ad", "a b"} {
		body := "[" + toolCall(1, name, "") + "," + toolCall(2, "search", "") + "]"
		for _, agent := range []string{planner, reporter} {
			ds = append(ds, NewEngine(set).Decide(context.Background(), mcpReq(t, agent, body)))
		}
	}
	for _, host := range []string{"orders.example", "admin.example", "x.example"} {
		for _, agent := range []string{reporter, stranger} {
			ds = append(ds, NewEngine(set).Decide(context.Background(), httpReq(agent, "GET", host, "/")))
		}
	}
	ds = append(ds, NewEngine(nil).Decide(context.Background(), httpReq(reporter, "GET", "x", "/")))
	for _, d := range ds {
		if got, want := d.String(), fmtDecision(d); got != want {
			t.Errorf("String() = %s\nfmt gives  %s", got, want)
		}
		for _, c := range d.PerCall {
			if got, want := c.why.String(), fmtWhy(c.why); got != want {
				t.Errorf("call String() = %s\nfmt gives       %s", got, want)
			}
		}
	}
}

func TestExplain(t *testing.T) {
	set := loadCorpus(t)
	ex := Explain(set, mcpReq(t, planner, "["+toolCall(1, "search", "")+","+toolCall(2, "delete_order", "")+"]"))
	if ex.Decision.Allowed || ex.Version != set.Version() {
		t.Fatalf("Explain = %+v", ex)
	}
	want := []PolicyInfo{
		{ID: "mcp-no-deletes", Effect: "forbid", File: "mcp.cedar", Line: 28, Column: 1},
		{ID: "mcp-planner-tools", Effect: "permit", File: "mcp.cedar", Line: 10, Column: 1},
	}
	if !reflect.DeepEqual(ex.Policies, want) {
		t.Errorf("Policies = %+v, want %+v", ex.Policies, want)
	}
	out := ex.String()
	for _, s := range []string{"DENY (policy_denied)", "call 1 (id 2, request tools/call): deny", "forbid mcp-no-deletes (mcp.cedar:28:1)", `McpTool::"mcp.example/delete_order"`} {
		if !strings.Contains(out, s) {
			t.Errorf("Explain output lacks %q:\n%s", s, out)
		}
	}
	plain := Explain(set, httpReq(reporter, "POST", "orders.example", "/orders/1")).String()
	if !strings.Contains(plain, "no policy permits "+reporter) {
		t.Errorf("default-deny explanation:\n%s", plain)
	}
	if ex := Explain(nil, httpReq(reporter, "GET", "orders.example", "/")); ex.Decision.Allowed {
		t.Error("Explain(nil) allowed")
	}
}

func TestSetInfo(t *testing.T) {
	a, b := loadCorpus(t), loadCorpus(t)
	if a.Len() != 15 || len(a.Policies()) != 15 {
		t.Errorf("Len = %d", a.Len())
	}
	if a.Version() == "" || a.Version() != b.Version() {
		t.Errorf("versions %q %q", a.Version(), b.Version())
	}
	c, err := Compile(map[string][]byte{"x.cedar": []byte(`@id("x") permit (principal, action, resource);`)})
	if err != nil || c.Version() == a.Version() {
		t.Errorf("different sources, same version (%v)", err)
	}
	if p, ok := a.Policy("orders-read"); !ok || p.File != "http.cedar" || p.Line != 3 {
		t.Errorf("Policy(orders-read) = %+v", p)
	}
	if _, ok := a.Policy("nope"); ok {
		t.Error("Policy(nope) found")
	}
	if !strings.Contains(Schema(), "entity McpTool in [Tool]") {
		t.Error("Schema() is not the schema")
	}
}

func TestActionGroups(t *testing.T) {
	set, err := Compile(map[string][]byte{"g.cedar": []byte(`
@id("all-mcp") permit (principal, action in Action::"mcp", resource in Tool::"mcp.example");
@id("all-http") permit (principal, action in Action::"http", resource == Tool::"web.example");
`)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		req  Request
		want bool
	}{
		{mcpReq(t, reporter, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`), true}, // mcp_session ⊂ mcp
		{mcpReq(t, reporter, toolCall(1, "anything", "")), true},
		{mcpReq(t, reporter, `{"jsonrpc":"2.0","id":1,"method":"tasks/list"}`), true}, // mcp_other ⊂ mcp
		{mcpReq(t, reporter, `{"jsonrpc":"2.0","id":1,"result":{}}`), true},
		{httpReq(reporter, "GET", "mcp.example", "/"), false},
		{httpReq(reporter, "PROPFIND", "web.example", "/"), true}, // http_other ⊂ http
		{with(mcpReq(t, reporter, toolCall(1, "a", "")), func(r *Request) { r.Host = "web.example" }), false},
	}
	for i, tt := range tests {
		if d := set.decide(tt.req); d.Allowed != tt.want {
			t.Errorf("%d: allowed = %v, want %v\n%s", i, d.Allowed, tt.want, Explain(set, tt.req))
		}
	}
}

// TestEntityCacheFollowsRequests: a cached agent, user or MCP entity is reused only while the request still
// describes it the same way; changed attributes or claims are seen on the very next decision.
func TestEntityCacheFollowsRequests(t *testing.T) {
	set := loadCorpus(t)
	e := NewEngine(set)
	admin := httpReq(reporter, "GET", "admin.example", "/")
	steps := []struct {
		attrs map[string]string
		want  bool
	}{{map[string]string{"attestation": "tpm"}, true}, {nil, false}, {map[string]string{"attestation": "tpm"}, true}, {map[string]string{"attestation": "sgx"}, false}}
	for i, s := range steps {
		if d := e.Decide(context.Background(), with(admin, func(r *Request) { r.AgentAttrs = s.attrs })); d.Allowed != s.want {
			t.Errorf("agent step %d: allowed %v, want %v", i, d.Allowed, s.want)
		}
	}
	orders := httpReq(reporter, "GET", "orders.example", "/")
	for i, status := range []string{"active", "suspended", "active"} {
		d := e.Decide(context.Background(), with(orders, func(r *Request) {
			r.DelegatedSubject, r.DelegatedClaims = "bob", map[string]string{"status": status}
		}))
		if d.Allowed != (status == "active") {
			t.Errorf("user step %d (%s): allowed %v", i, status, d.Allowed)
		}
	}
	// Same tool name on two tools, and a tool whose configured name would make ids ambiguous.
	call := mcpReq(t, planner, toolCall(1, "search", ""))
	if d := e.Decide(context.Background(), call); !d.Allowed {
		t.Errorf("search on mcp.example denied: %v", d.Err())
	}
	if d := e.Decide(context.Background(), with(call, func(r *Request) { r.Host = "mcp.other" })); d.Allowed {
		t.Error("search on mcp.other allowed from the cache")
	}
	if d := e.Decide(context.Background(), with(call, func(r *Request) { r.Tool = "mcp.example/x" })); d.Allowed || d.Reason != "malformed" {
		t.Errorf("tool name with '/': %+v", d)
	}
}

func TestEntityCacheIsBounded(t *testing.T) {
	var c entityCache
	for i := range 3*maxCached + 100 {
		c.agent(fmt.Sprintf("spiffe://td/a%d", i), "td", "/", nil)
	}
	if n := c.n.Load(); n > 3*maxCached {
		t.Errorf("cache holds %d entries", n)
	}
	// Over the bound, entities are still built correctly, just not kept.
	if got := c.agent("spiffe://td/new", "td", "/new", map[string]string{"k": "v"}); got.UID.ID != "spiffe://td/new" || !got.Tags.Equal(stringRecord(map[string]string{"k": "v"})) {
		t.Errorf("entity over the bound = %+v", got)
	}
}

func TestHigherRisk(t *testing.T) {
	for _, tc := range []struct{ a, b, want RiskLevel }{
		{RiskUnknown, RiskLow, RiskLow},
		{RiskHigh, RiskLow, RiskHigh},
		{RiskMedium, RiskHigh, RiskHigh},
		{RiskLow, RiskUnknown, RiskLow},
		{RiskLow, "SEVERE", "SEVERE"}, // an undefined word counts as HIGH
	} {
		if got := HigherRisk(tc.a, tc.b); got != tc.want {
			t.Errorf("HigherRisk(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}
