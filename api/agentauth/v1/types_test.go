package agentauthv1

import (
	"testing"
)

func TestSubjectKeyIsUnambiguous(t *testing.T) {
	subjects := []*Subject{
		{Kind: "user_iss_sub", Iss: "https://a|b", Value: "c"},
		{Kind: "user_iss_sub", Iss: "https://a", Value: "b|c"},
		{Kind: "user_iss_sub", Iss: "https://a%7Cb", Value: "c"},
		{Kind: "spiffe", Value: "spiffe://example.org/a"},
		{Kind: "spiffe", Iss: "x", Value: "spiffe://example.org/a"},
		{Kind: "jti", Iss: "", Value: "|"},
	}
	seen := map[string]*Subject{}
	for _, s := range subjects {
		k := s.Key()
		if prev, dup := seen[k]; dup {
			t.Fatalf("%v and %v share key %q", prev, s, k)
		}
		seen[k] = s
	}
	for _, s := range []*Subject{nil, {}, {Kind: "spiffe"}, {Value: "x"}} {
		if k := s.Key(); k != "" {
			t.Errorf("incomplete subject %v has key %q", s, k)
		}
	}
}
