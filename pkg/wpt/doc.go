// Package wpt mints and verifies WIMSE Workload Identity Tokens (WIT) and Workload Proof Tokens (WPT).
//
// An Issuer signs WITs that bind a workload's public key (cnf.jwk) to its identifier; a Prover, holding the WIT
// and the matching private key, signs one short-lived WPT per request; a Verifier checks both in the order of
// draft-ietf-wimse-wpt §3.4, with WIT issuer keys per trust domain from a KeySource (go-spiffe WIT or JWT
// bundles), a cache of verified WITs, and a replay.Cache for WPT jti values. Every refusal wraps exactly one
// autherr sentinel.
package wpt
