package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []CompileError // Msg is a substring
	}{
		{
			name:  "syntax error names file, line and column",
			files: map[string]string{"a.cedar": "@id(\"a\")\npermit (principal, action, resource)\n  when { context.path like \"x\" && };"},
			want:  []CompileError{{File: "a.cedar", Line: 3, Column: 36, Msg: `syntax error at ";"`}},
		},
		{
			name:  "scanner error",
			files: map[string]string{"a.cedar": "@id(\"a\")\npermit (principal, action, resource) when { \"\x00\" };"},
			want:  []CompileError{{File: "a.cedar", Line: 2, Column: 45, Msg: "invalid character NUL"}},
		},
		{
			name:  "missing @id",
			files: map[string]string{"a.cedar": "@id(\"a\")\npermit (principal, action, resource);\n\npermit (principal, action, resource);"},
			want:  []CompileError{{File: "a.cedar", Line: 4, Column: 1, Msg: "no @id"}},
		},
		{
			name:  "bad @id",
			files: map[string]string{"a.cedar": "@id(\"a b\")\npermit (principal, action, resource);"},
			want:  []CompileError{{File: "a.cedar", Line: 1, Column: 1, Msg: "printable characters without spaces"}},
		},
		{
			name: "duplicate @id across files",
			files: map[string]string{
				"a.cedar": "@id(\"dup\")\npermit (principal, action, resource);",
				"b.cedar": "\n\n@id(\"dup\")\nforbid (principal, action, resource);",
			},
			want: []CompileError{{File: "b.cedar", Line: 3, Column: 1, PolicyID: "dup", Msg: "duplicate @id, first used at a.cedar:1:1"}},
		},
		{
			name:  "unknown context attribute",
			files: map[string]string{"a.cedar": "@id(\"a\")\npermit (principal, action, resource) when { context.risk > 2 };"},
			want:  []CompileError{{File: "a.cedar", Line: 1, Column: 1, PolicyID: "a", Msg: "attribute `risk` in context not found"}},
		},
		{
			name:  "misspelt enum value",
			files: map[string]string{"a.cedar": "@id(\"a\")\nforbid (principal, action, resource) when { context.auth_method == AuthMethod::\"mtsl\" };"},
			want:  []CompileError{{File: "a.cedar", Line: 1, Column: 1, PolicyID: "a", Msg: `AuthMethod::"mtsl" is not a value of enum AuthMethod`}},
		},
		{
			name:  "misspelt risk level",
			files: map[string]string{"a.cedar": "@id(\"a\")\nforbid (principal, action, resource) when { context.risk_level == RiskLevel::\"HIHG\" };"},
			want:  []CompileError{{File: "a.cedar", Line: 1, Column: 1, PolicyID: "a", Msg: `RiskLevel::"HIHG" is not a value`}},
		},
		{
			name:  "unknown action",
			files: map[string]string{"a.cedar": "@id(\"a\")\npermit (principal, action == Action::\"tools/cal\", resource);"},
			want: []CompileError{
				{File: "a.cedar", Line: 1, Column: 1, PolicyID: "a", Msg: "unable to find an applicable action"},
				{File: "a.cedar", Line: 1, Column: 1, PolicyID: "a", Msg: "unrecognized action `Action::\"tools/cal\"`"},
			},
		},
		{
			name:  "principal of the wrong type",
			files: map[string]string{"a.cedar": "@id(\"a\")\npermit (principal == User::\"alice\", action, resource);"},
			want:  []CompileError{{File: "a.cedar", Line: 1, Column: 1, PolicyID: "a", Msg: "unable to find an applicable action"}},
		},
		{
			name:  "unguarded optional attribute",
			files: map[string]string{"a.cedar": "@id(\"a\")\npermit (principal, action, resource) when { context.subject.scopes.contains(\"x\") };"},
			want:  []CompileError{{File: "a.cedar", Line: 1, Column: 1, PolicyID: "a", Msg: "optional attribute `subject`"}},
		},
		{
			name:  "unguarded tag",
			files: map[string]string{"a.cedar": "@id(\"a\")\npermit (principal, action, resource) when { principal.getTag(\"team\") == \"x\" };"},
			want:  []CompileError{{File: "a.cedar", Line: 1, Column: 1, PolicyID: "a", Msg: "tag `\"team\"`"}},
		},
		{
			name: "every problem of every file at once, in order",
			files: map[string]string{
				"b.cedar": "@id(\"b\")\npermit (principal, action, resource) when { context.nope };",
				"a.cedar": "@id(\"ok\")\npermit (principal, action, resource);\n\n@id(\"x\")\npermit (principal, action, resource) when { principal.nope };\npermit (",
			},
			want: []CompileError{
				{File: "a.cedar", Line: 6, Column: 9, Msg: "syntax error at end of input"},
				{File: "b.cedar", Line: 1, Column: 1, PolicyID: "b", Msg: "attribute `nope` in context not found"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string][]byte{}
			for k, v := range tt.files {
				files[k] = []byte(v)
			}
			set, err := Compile(files)
			if set != nil {
				t.Fatal("Compile returned a set with errors")
			}
			var errs CompileErrors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not CompileErrors: %v", err, err)
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, w := range tt.want {
				g := errs[i]
				if g.File != w.File || g.Line != w.Line || g.Column != w.Column || g.PolicyID != w.PolicyID || !strings.Contains(g.Msg, w.Msg) {
					t.Errorf("error %d = %+v, want %+v", i, *g, w)
				}
			}
			if !strings.Contains(err.Error(), tt.want[0].File+":") {
				t.Errorf("Error() %q does not name the file", err)
			}
		})
	}
}

func TestCompileAcceptsModelFeatures(t *testing.T) {
	src := `
@id("td-tools")
permit (principal in TrustDomain::"example.org", action in Action::"mcp", resource is McpTool in Tool::"mcp.example")
when { principal.path like "/agent/*" && context has txn && context.txn != "" };

@id("prompt-args")
permit (principal, action == Action::"prompts/get", resource)
when { resource.hasTag("lang") && resource.getTag("lang") == "go" };

@id("completion")
permit (principal, action == Action::"completion/complete", resource in Tool::"mcp.example");

@id("assurance")
forbid (principal, action in Action::"http", resource)
unless { context has assurance_level && context.assurance_level == "nist_aal2" && context.hour < 23 && context.time > 0 };

@id("responses")
permit (principal, action == Action::"mcp_response", resource);

@id("claims")
permit (principal, action, resource)
when { context has subject && context.subject.hasTag("tenant") && context.subject.getTag("tenant") == principal.trust_domain };
`
	set, err := Compile(map[string][]byte{"f.cedar": []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 6 {
		t.Errorf("Len = %d", set.Len())
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "no *.cedar files") {
		t.Errorf("empty dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.cedar"), []byte("@id(\"x\")\npermit (principal, action, resource) when { context.x };"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a policy"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadDir(dir)
	var errs CompileErrors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].File != "bad.cedar" {
		t.Errorf("LoadDir error = %v", err)
	}
}

func TestEmptySetDeniesEverything(t *testing.T) {
	set, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := set.decide(httpReq(reporter, "GET", "orders.example", "/")); d.Allowed || d.Reason != "policy_denied" {
		t.Errorf("empty set: %+v", d)
	}
}

func TestReads(t *testing.T) {
	for _, c := range []struct {
		cond string
		want readSet
	}{
		{``, 0},
		{`when { principal.path == "/a" && resource.name == "x" }`, 0},
		{`when { context.path like "/a/*" && context has subject }`, ctxPath | ctxSubject},
		{`when { context["hour"] < 8 }`, ctxHour},
		{`unless { context has txn && context.txn == "" }`, ctxTxn},
		{`when { context.subject.hasTag("x") && context.subject.getTag("x") == context.mcp_method }`, ctxSubject | ctxMCPMethod},
		{`when { principal.hasTag("x") && principal.getTag("x") == "y" }`, 0},
		{`when { resource.hasTag("x") }`, callTags},
		{`when { McpTool::"t/x".getTag("x") == "y" }`, callTags},
		{`when { (if context.txn == "" then principal else resource).hasTag("x") }`, ctxTxn | callTags},
		{`when { context.no_such_attribute == 1 }`, 0},
		{`when { context == context }`, ctxAll},
		{`when { context.path == "/" && [context].isEmpty() }`, ctxAll},
		{`when { context has path } unless { context == {} }`, ctxAll},
	} {
		src := `permit (principal, action, resource) ` + c.cond + `;`
		list, err := cedar.NewPolicyListFromBytes("t.cedar", []byte(src))
		if err != nil || len(list) != 1 {
			t.Fatalf("%s: %v", src, err)
		}
		if got := reads((*xast.Policy)(list[0].AST())); got != c.want {
			t.Errorf("%s: reads %014b, want %014b", c.cond, got, c.want)
		}
	}
}
