// Package controller assembles the agentauth controller: the state store (bbolt), the built-in CA and its issuer
// endpoint (join-token attestation, renewal), the delta-ADS server that pushes policy, revocations and trust
// bundles to sidecars, the admin API on a Unix socket (agentauthctl), and /healthz, /readyz, /metrics.
package controller
