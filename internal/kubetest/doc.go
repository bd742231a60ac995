// Package kubetest runs a real Kubernetes control plane for tests, the way controller-runtime's envtest does: an
// etcd (Debian's etcd-server) and a kube-apiserver (built by test/k8s/kube-apiserver.sh into a cache folder keyed by
// the version), both on loopback ports chosen free, with a static token for the test's admin, a service-account
// signing key and issuer, and Node and RBAC authorization.
//
// One API server per test package, started on first use and stopped after the package's tests:
//
//	var kube kubetest.Shared
//
//	func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		srv := kube.Server(t) // skips without the binaries, and fails instead when CI is set
//		...
//	}
package kubetest
