package policy

import (
	"errors"
	"reflect"
	"testing"

	"github.com/agentauth/agentauth/pkg/policy/mcp"
)

// FuzzCompile: no policy text panics Compile; every failure is CompileErrors naming the file.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		scopeForms,
		`@id("a") permit (principal, action, resource) when { context.risk_rank >= 2 && context.now < datetime("2030-01-01") };`,
		`@id("a") forbid (principal, action == Action::"tools/call", resource) when { resource.name like "delete_*" };`,
		`@id("a") permit (principal, action, resource) when { ip("10.0.0.1").isInRange(ip("10.0.0.0/8")) && decimal("1.5") > decimal("1.0") };`,
		`@id("a") permit (`, `permit (principal, action, resource);`, "\x00", `@id("a") @id("b") permit (principal, action, resource);`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		set, err := Compile(map[string][]byte{"f.cedar": src})
		if err == nil {
			if set == nil {
				t.Fatal("nil set without error")
			}
			return
		}
		var errs CompileErrors
		if set != nil || !errors.As(err, &errs) || len(errs) == 0 || errs[0].File != "f.cedar" {
			t.Fatalf("Compile = %v, %v", set, err)
		}
	})
}

// FuzzDecideMCP: any body either fails to parse (and is then never decided) or gets one decision per call, the
// request is allowed only if every call is, and the decision is the one a request with every context attribute
// and every argument tag gets.
func FuzzDecideMCP(f *testing.F) {
	f.Add([]byte(`[` + toolCall(1, "search", `{"q":"x"}`) + `,` + toolCall(2, "delete_order", "") + `]`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/x"}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	set := loadCorpus(f)
	full := *set
	full.reads = readsAll
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := mcp.Parse("application/json", body, 4096)
		if err != nil {
			return
		}
		req := httpReq(planner, "POST", "mcp.example", "/mcp")
		req.MCP = msg.Calls
		d := set.decide(req)
		if len(d.PerCall) != len(msg.Calls) {
			t.Fatalf("%d decisions for %d calls", len(d.PerCall), len(msg.Calls))
		}
		all := true
		for _, c := range d.PerCall {
			all = all && c.Allowed
		}
		if d.Allowed != all {
			t.Fatalf("Allowed = %v but per-call %v", d.Allowed, all)
		}
		if want := full.decide(req); !reflect.DeepEqual(d, want) {
			t.Fatalf("decision %v, with the full request %v", d, want)
		}
	})
}
