// Package controller assembles the agentauth controller: the state store (bbolt) and the built-in CA, then a list
// of components with one lifecycle (component.go): the issuer endpoint (join-token attestation, renewal), the
// delta-ADS server that pushes policy, revocations and trust bundles to sidecars, the token service, the SSF
// receiver, the admin API on a Unix socket (agentauthctl), and /healthz, /readyz, /metrics.
package controller
