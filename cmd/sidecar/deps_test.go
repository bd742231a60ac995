package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestSidecarLinksNoControllerCode: the sidecar binary links only the client side of the control plane. The
// controller's store (bbolt), key stores (go-tpm), CA and issuer service, xDS server and cache, and the controller
// itself must stay out of it, whatever package starts importing what.
func TestSidecarLinksNoControllerCode(t *testing.T) {
	const mod = "github.com/agentauth/agentauth/"
	// A path ending in "/..." forbids the package and everything below it, as in `go list` patterns; any other
	// path forbids that one package (pkg/issuer's client lives below it, in pkg/issuer/issuerclient).
	forbidden := []struct{ path, why string }{
		{"go.etcd.io/bbolt/...", "the controller's store"},
		{"github.com/google/go-tpm/...", "the CA's TPM key store"},
		{mod + "pkg/store/...", "the controller's store"},
		{mod + "pkg/issuer", "the CA and the issuer service (the sidecar needs pkg/issuer/issuerclient only)"},
		{mod + "pkg/xds/xdsserver/...", "the xDS publisher, cache and server"},
		{mod + "pkg/controller/...", "the controller"},
		{"github.com/envoyproxy/go-control-plane/pkg/server/...", "the xDS server"},
		{"github.com/envoyproxy/go-control-plane/pkg/cache/...", "the xDS snapshot caches"},
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %v", deps)
	}
	for _, f := range forbidden {
		root, tree := strings.CutSuffix(f.path, "/...")
		for _, dep := range deps {
			if dep == root || tree && strings.HasPrefix(dep, root+"/") {
				t.Errorf("the sidecar links %s (%s)", dep, f.why)
			}
		}
	}
}
