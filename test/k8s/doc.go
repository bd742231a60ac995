// Package k8s tests agentauth on Kubernetes: the Helm chart in charts/agentauth, linted and rendered with the Helm
// Go library, every rendered object decoded strictly into the Kubernetes API types (chart_test.go).
// kube-apiserver.sh builds the real API server the suite against a live cluster control plane will use.
package k8s
