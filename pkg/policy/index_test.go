package policy

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentauth/agentauth/pkg/policy/mcp"
	"github.com/agentauth/agentauth/pkg/wire"
)

// scopeForms exercises every kind of principal and resource scope the index buckets.
const scopeForms = `
@id("p-eq-r-eq") permit (principal == Agent::"spiffe://example.org/agent/a", action, resource == Tool::"t1.example");
@id("p-in-r-in") permit (principal in TrustDomain::"example.org", action == Action::"tools/call", resource in Tool::"mcp.example");
@id("p-isin-r-is") permit (principal is Agent in TrustDomain::"other.example", action, resource is McpTool);
@id("p-is-r-isin") forbid (principal is Agent, action, resource is McpTool in Tool::"mcp.example") when { resource.name == "x" };
@id("p-all-r-eq-mcp") permit (principal, action, resource == McpTool::"mcp.example/y");
@id("p-eq-r-in-self") permit (principal == Agent::"spiffe://other.example/agent/b", action, resource in McpTool::"mcp.example/z");
@id("p-in-self") permit (principal in Agent::"spiffe://example.org/agent/c", action, resource);
@id("never-matches") permit (principal in TrustDomain::"nowhere", action, resource);
@id("any") forbid (principal, action == Action::"DELETE", resource);
@id("act-in-set") permit (principal, action in [Action::"GET", Action::"tools/call"], resource in Tool::"t1.example");
@id("act-in-group") forbid (principal == Agent::"spiffe://example.org/agent/c", action in Action::"mcp_session", resource);
@id("act-in-groups") permit (principal in TrustDomain::"other.example", action in [Action::"http", Action::"mcp_discovery"], resource);
`

// TestIndexMatchesFullEvaluation checks that evaluating only the indexed candidates that admit the action, without
// their action scopes, with a context of only the attributes the Set's policies read, gives exactly the decision,
// determining policies and errors that cedar-go gives when it evaluates every policy as written with the full
// context.
func TestIndexMatchesFullEvaluation(t *testing.T) {
	corpusFiles := map[string][]byte{}
	names, _ := filepath.Glob("testdata/corpus/*.cedar")
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		corpusFiles[n] = b
	}
	scopesFiles := map[string][]byte{"scopes.cedar": []byte(scopeForms)}
	agents := []string{planner, writer, reporter, contractor, stranger, "spiffe://example.org/agent/a",
		"spiffe://example.org/agent/c", "spiffe://other.example/agent/b"}
	hosts := []string{"orders.example", "admin.example", "mcp.example", "t1.example"}
	bodies := []string{
		toolCall(1, "search", ""), toolCall(1, "delete_order", ""), toolCall(1, "x", ""), toolCall(1, "y", ""), toolCall(1, "z", ""),
		toolCall(1, "create_order", `{"currency":"USD"}`),
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/a"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"review"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
	}
	var reqs []Request
	for _, a := range agents {
		for _, h := range hosts {
			for _, m := range []string{"GET", "POST", "DELETE", "PROPFIND"} {
				reqs = append(reqs, with(httpReq(a, m, h, "/orders/1"), func(r *Request) { r.AgentAttrs = map[string]string{"attestation": "tpm"} }))
			}
			for _, b := range bodies {
				reqs = append(reqs, with(mcpReq(t, a, b), func(r *Request) { r.Host = h }))
			}
		}
	}
	for _, files := range []map[string][]byte{corpusFiles, scopesFiles} {
		set, err := Compile(files)
		if err != nil {
			t.Fatal(err)
		}
		all := cedar.PolicyMap{} // as written
		for name, src := range files {
			list, err := cedar.NewPolicyListFromBytes(name, src)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range list {
				all[cedar.PolicyID(p.Annotations()["id"])] = p
			}
		}
		if len(all) != set.Len() {
			t.Fatalf("%d policies as written, %d in the set", len(all), set.Len())
		}
		allowed := 0
		for _, req := range reqs {
			p, err := set.model.prepare(req, set.reads)
			if err != nil {
				t.Fatal(err)
			}
			full, _ := set.model.prepare(req, readsAll)
			var ts, fulls []target
			if len(req.MCP) == 0 {
				ts = append(ts, set.model.httpTarget(p, req.Method))
				fulls = append(fulls, set.model.httpTarget(full, req.Method))
			}
			for _, c := range req.MCP {
				ts = append(ts, set.model.mcpTarget(p, c))
				fulls = append(fulls, set.model.mcpTarget(full, c))
			}
			for i, tg := range ts {
				got := set.eval(p, tg)
				ftg := fulls[i]
				full.ents.extra = ftg.resource
				resource := full.toolUID
				if ftg.resource.UID.Type != "" {
					resource = ftg.resource.UID
				}
				dec, diag := cedar.Authorize(all, &full.ents, cedar.Request{Principal: full.principals[0], Action: ftg.action, Resource: resource, Context: ftg.context})
				var want, wantErrs []string
				for _, r := range diag.Reasons {
					want = append(want, string(r.PolicyID))
				}
				for _, e := range diag.Errors {
					wantErrs = append(wantErrs, string(e.PolicyID)+": "+e.Message)
				}
				slices.Sort(want)
				if got.why.allowed != (dec == cedar.Allow) || !reflect.DeepEqual(got.why.ids, want) || len(got.errors) != len(diag.Errors) {
					t.Errorf("%s %v on %v: indexed %v %v %q, full %v %v %q", req.AgentID, tg.action, resource, got.why.allowed, got.why.ids, got.errors, dec, want, wantErrs)
				}
				if got.candidates > set.Len() {
					t.Errorf("evaluated %d of %d policies", got.candidates, set.Len())
				}
				if got.why.allowed {
					allowed++
				}
			}
			set.model.release(p)
			set.model.release(full)
		}
		if allowed == 0 {
			t.Error("no request was allowed: the comparison proves little")
		}
	}
}

// TestRequestsConformToSchema validates the entities and requests Decide builds against the schema the policies
// are validated against, so the Go mapping and schema.cedarschema cannot drift apart.
func TestRequestsConformToSchema(t *testing.T) {
	m, err := loadModel()
	if err != nil {
		t.Fatal(err)
	}
	full := Request{
		AgentID: planner, AgentAttrs: map[string]string{"attestation": "tpm"}, AuthMethod: wire.AuthWITHTTPSig,
		DelegatedSubject: "alice", DelegatedClaims: map[string]string{"scope": "a b", "tenant": "t"}, TransactionID: "txn",
		Host: "mcp.example", Method: "POST", Path: "/mcp", RiskLevel: RiskMedium, AssuranceLevel: "aal2", Time: noon(),
	}
	bodies := []string{
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"n":1,"s":"x"}}},
		  {"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"file:///x"}},
		  {"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p","arguments":{"k":"v"}}},
		  {"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{x}"}}},
		  {"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"}}},
		  {"jsonrpc":"2.0","id":6,"method":"tasks/get"},
		  {"jsonrpc":"2.0","id":7,"result":{}},
		  {"jsonrpc":"2.0","method":"notifications/initialized"},
		  {"jsonrpc":"2.0","id":8,"method":"tools/list"}]`,
	}
	var reqs []Request
	for _, method := range append(slices.Sorted(maps.Keys(m.httpActions)), "PROPFIND", "get") {
		reqs = append(reqs, with(full, func(r *Request) { r.Method = method }), httpReq(reporter, method, "h", "/"))
	}
	for _, b := range bodies {
		msg, err := mcp.Parse("application/json", []byte(b), 0)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, with(full, func(r *Request) { r.MCP = msg.Calls }), with(httpReq(reporter, "POST", "h", "/"), func(r *Request) { r.MCP = msg.Calls }))
	}
	for i, req := range reqs {
		p, err := m.prepare(req, readsAll)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.ents.fixed[:p.ents.n] {
			if err := m.validator.Entity(e); err != nil {
				t.Errorf("request %d: entity %v: %v", i, e.UID, err)
			}
		}
		var ts []target
		if len(req.MCP) == 0 {
			ts = append(ts, m.httpTarget(p, req.Method))
		}
		for _, c := range req.MCP {
			ts = append(ts, m.mcpTarget(p, c))
		}
		for _, tg := range ts {
			resource := p.toolUID
			if tg.resource.UID.Type != "" {
				resource = tg.resource.UID
				if err := m.validator.Entity(tg.resource); err != nil {
					t.Errorf("request %d: entity %v: %v", i, tg.resource.UID, err)
				}
			}
			tr := types.Request{Principal: p.principals[0], Action: tg.action, Resource: resource, Context: tg.context}
			if err := m.validator.Request(tr); err != nil {
				t.Errorf("request %d: %v", i, err)
			}
		}
	}
	for uid, a := range m.actions {
		if err := m.validator.Entity(a); err != nil {
			t.Errorf("action %v: %v", uid, err)
		}
	}
	if fmt.Sprint(len(m.mcpActions)) == "0" || len(m.httpActions) != 10 {
		t.Errorf("actions: %d HTTP, %d MCP", len(m.httpActions), len(m.mcpActions))
	}
}
