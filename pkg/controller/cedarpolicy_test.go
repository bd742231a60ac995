package controller

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentauth/agentauth/pkg/crd"
)

const (
	weatherPolicy = `@id("agents-may-call-weather")
permit (principal, action, resource == Tool::"weather.tools.local");
`
	// badPolicy has a syntax error on line 2 (a missing comma; cedar-go points at column 35).
	badPolicy = `@id("p")
permit (principal, action resource);
`
)

func cedarPolicy(name, cedar string) crd.CedarPolicy {
	return crd.CedarPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: crd.CedarPolicySpec{Cedar: cedar}}
}

// TestCedarPolicyAdmit: the admission check names the object and the line and column of each problem, and refuses
// a policy id another CedarPolicy uses.
func TestCedarPolicyAdmit(t *testing.T) {
	p := &cedarPolicies{changed: make(chan struct{})}
	tests := []struct {
		name string
		// others are the CedarPolicy objects already there; nil: not listed yet.
		others []crd.CedarPolicy
		obj    crd.CedarPolicy
		want   []string // substrings of the refusal; none: admitted
	}{
		{"good", nil, cedarPolicy("weather", weatherPolicy), nil},
		{"syntax error", nil, cedarPolicy("broken", weatherPolicy+badPolicy),
			[]string{`CedarPolicy "broken" does not compile`, "line 4, column 35: syntax error"}},
		{"no @id", nil, cedarPolicy("anon", "permit (principal, action, resource);\n\npermit (principal, action, resource);\n"),
			[]string{`CedarPolicy "anon"`, "line 1, column 1: policy has no @id", "line 3, column 1: policy has no @id"}},
		{"unknown attribute", nil, cedarPolicy("typo", "\n@id(\"t\")\npermit (principal, action, resource) when { principal.nmae == \"x\" };\n"),
			[]string{`CedarPolicy "typo"`, `line 2, column 1: policy "t": `}},
		{"id used by another", []crd.CedarPolicy{cedarPolicy("first", "\n"+weatherPolicy)}, cedarPolicy("second", weatherPolicy),
			[]string{`CedarPolicy "second" clashes`, `line 1, column 1: policy id "agents-may-call-weather" is already used by CedarPolicy "first" (line 2)`}},
		{"same object updated", []crd.CedarPolicy{cedarPolicy("weather", weatherPolicy)}, cedarPolicy("weather", "\n"+weatherPolicy), nil},
		{"others with problems do not matter", []crd.CedarPolicy{cedarPolicy("broken", badPolicy)}, cedarPolicy("weather", weatherPolicy), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p.snap = nil
			if tc.others != nil {
				p.update(tc.others)
			}
			err := p.admit(context.Background(), &tc.obj)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("admitted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("refusal %q does not contain %q", err, w)
				}
			}
		})
	}
}
