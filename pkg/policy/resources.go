package policy

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// ValidateResource checks one agentauth.v1.Policy resource as the controller stores it and a sidecar receives it
// over xDS: its Cedar text must compile on its own. It has the shape of an xDS validator (pkg/xds.Validator).
func ValidateResource(name string, res proto.Message) error {
	p, ok := res.(*agentauthv1.Policy)
	if !ok {
		return fmt.Errorf("policy %q: unexpected resource type %T", name, res)
	}
	_, err := Compile(map[string][]byte{sourceOf(p, name): []byte(p.GetCedar())})
	return err
}

// CompileResources compiles the policy resources served by the controller into one Set; error messages name each
// document by its source file.
func CompileResources(ps []*agentauthv1.Policy) (*Set, error) {
	files := make(map[string][]byte, len(ps))
	for _, p := range ps {
		files[sourceOf(p, p.GetId())] = []byte(p.GetCedar())
	}
	return Compile(files)
}

func sourceOf(p *agentauthv1.Policy, fallback string) string {
	if s := p.GetSource(); s != "" {
		return s
	}
	return fallback
}
