package policy

import (
	"strings"
	"testing"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

func TestResources(t *testing.T) {
	good := &agentauthv1.Policy{Id: "a", Source: "a.cedar", Cedar: `@id("a") permit (principal, action, resource);`}
	bad := &agentauthv1.Policy{Id: "b", Cedar: "permit ("}
	if err := ValidateResource("a", good); err != nil {
		t.Fatal(err)
	}
	if err := ValidateResource("b", bad); err == nil || !strings.Contains(err.Error(), "b") {
		t.Fatalf("bad policy: %v", err)
	}
	if err := ValidateResource("x", &agentauthv1.Revocation{}); err == nil {
		t.Fatal("a revocation validated as a policy")
	}
	set, err := CompileResources([]*agentauthv1.Policy{good})
	if err != nil || set.Len() != 1 {
		t.Fatalf("CompileResources = %v, %v", set, err)
	}
	dup := &agentauthv1.Policy{Id: "c", Source: "c.cedar", Cedar: good.Cedar}
	if _, err := CompileResources([]*agentauthv1.Policy{good, dup}); err == nil {
		t.Fatal("duplicate policy ids across documents compiled")
	}
}
