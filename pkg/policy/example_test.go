package policy_test

import (
	"context"
	"fmt"

	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/policy/mcp"
	"github.com/agentauth/agentauth/pkg/wire"
)

func Example() {
	set, err := policy.Compile(map[string][]byte{"tools.cedar": []byte(`
@id("planner-search")
permit (principal == Agent::"spiffe://example.org/agent/planner", action == Action::"tools/call",
        resource == McpTool::"mcp.example/search");`)})
	if err != nil {
		fmt.Println(err) // e.g. tools.cedar:3:9: syntax error at ...
		return
	}
	engine := policy.NewEngine(set)

	body := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}},
	          {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"drop_tables"}}]`
	msg, err := mcp.Parse("application/json", []byte(body), 1<<20)
	if err != nil {
		return // answer with err.(*mcp.Error).Response()
	}
	d := engine.Decide(context.Background(), policy.Request{
		AgentID: "spiffe://example.org/agent/planner", AuthMethod: wire.AuthWITWPT,
		Host: "mcp.example", Method: "POST", Path: "/mcp", MCP: msg.Calls,
	})
	for _, c := range d.PerCall {
		fmt.Println(c.Call.Name, c.Allowed, c.PolicyIDs)
	}
	fmt.Println(string(d.PerCall[1].JSONRPCError()))
	// Output:
	// search true [planner-search]
	// drop_tables false []
	// {"jsonrpc":"2.0","id":2,"error":{"code":-32001,"message":"forbidden: policy_denied"}}
}

func ExampleExplain() {
	set, _ := policy.Compile(map[string][]byte{"http.cedar": []byte(`@id("read-orders")
permit (principal in TrustDomain::"example.org", action == Action::"GET", resource == Tool::"orders.example");`)})
	fmt.Print(policy.Explain(set, policy.Request{
		AgentID: "spiffe://example.org/agent/reporter", AuthMethod: wire.AuthMTLS,
		Host: "orders.example", Method: "GET", Path: "/orders/7",
	}))
	// Output:
	// ALLOW: [read-orders] permits spiffe://example.org/agent/reporter to GET on Tool::"orders.example"
	//   permit read-orders (http.cedar:1:1)
}

// context.subject_kind tells an agent acting for a user from one acting for itself (self) or in a transaction
// another workload began for itself (system). Only a user is context.subject.
func ExampleSubjectKind() {
	set, err := policy.Compile(map[string][]byte{"payroll.cedar": []byte(`
@id("payroll-for-users")
permit (principal in TrustDomain::"example.org", action == Action::"GET", resource == Tool::"payroll.example")
when { context.subject_kind == SubjectKind::"user" && context has subject &&
       context.subject.hasTag("department") && context.subject.getTag("department") == "hr" };

@id("nightly-report-for-itself")
permit (principal == Agent::"spiffe://example.org/agent/reporter", action == Action::"GET",
        resource == Tool::"payroll.example")
when { context.subject_kind == SubjectKind::"self" && context.path == "/totals" };`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	engine := policy.NewEngine(set)
	for _, r := range []struct {
		kind       policy.SubjectKind
		user, path string
	}{
		{policy.SubjectKindUser, "alice@example.com", "/salaries"},
		{policy.SubjectKindSelf, "", "/salaries"},
		{policy.SubjectKindSelf, "", "/totals"},
		{policy.SubjectKindSystem, "spiffe://example.org/agent/scheduler", "/salaries"},
	} {
		d := engine.Decide(context.Background(), policy.Request{
			AgentID: "spiffe://example.org/agent/reporter", AuthMethod: wire.AuthWITWPT,
			SubjectKind: r.kind, DelegatedSubject: r.user, DelegatedClaims: map[string]string{"department": "hr"},
			Host: "payroll.example", Method: "GET", Path: r.path,
		})
		fmt.Println(r.kind, r.path, d.Allowed, d.PolicyIDs)
	}
	// Output:
	// user /salaries true [payroll-for-users]
	// self /salaries false []
	// self /totals true [nightly-report-for-itself]
	// system /salaries false []
}
