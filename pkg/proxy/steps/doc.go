// Package steps holds the concrete steps of the sidecar's data plane and the one order they run in: the proof
// adapters (pkg/wpt, pkg/httpsig) that authenticate ingress and sign egress, the Txn-Token steps, the Cedar policy
// authorizer with its MCP refusals, and response signing. pkg/proxy runs a chain and turns a step's error into the
// response and the decision record, in one place; this package knows the credentials and policy those steps use.
// Ingress and Egress build the chains; pkg/sidecar only configures them.
package steps
