// Package k8s tests agentauth on Kubernetes: the Helm chart in charts/agentauth, linted and rendered with the Helm
// Go library, every rendered object decoded strictly into the Kubernetes API types (chart_test.go), and the same
// objects against a real API server (apiserver_test.go): accepted by a server-side dry run, and the controller's
// RBAC checked by impersonating its ServiceAccount. The API server (internal/kubetest, one per test run of this
// package) is the kube-apiserver that kube-apiserver.sh builds, with Debian's etcd.
package k8s
