// Package sidecar assembles the agentauth sidecar from its configuration: credentials (pkg/identity), the data
// plane (pkg/proxy), proofs (pkg/wpt, pkg/httpsig), policy and revocation state, logs, metrics and the admin
// endpoints (/healthz, /readyz, /metrics).
//
// Config is a plain struct: a hand-written YAML file (Load) and anything that renders the struct (the Kubernetes
// injector, tests) go through the same Validate, whose errors name the field and, for YAML, the line.
package sidecar
