package k8s

import (
	"os"
	"testing"

	"github.com/agentauth/agentauth/internal/kubetest"
)

// kube is the package's real API server (etcd and kube-apiserver), started by the first test that asks for it.
var kube kubetest.Shared

func TestMain(m *testing.M) {
	code := kube.Run(m)
	if bins.cleanup != nil {
		bins.cleanup()
	}
	os.Exit(code)
}
