// Package e2e runs agentauth's real binaries (sidecar, controller, the sample tool) on loopback and drives them as
// an operator and an agent would. The transparent-interception suite also creates its own network namespace and
// iptables rule, and removes them afterwards; it needs root and skips without it (unless CI=true).
package e2e
