// Package testca is a small but real SPIFFE certificate authority for tests.
//
// It issues X.509-SVIDs (ECDSA P-256, optionally through an intermediate), holds ES256 JWT-SVID and WIT-SVID
// signing keys, exposes the matching go-spiffe bundles, writes PEM/JSON files for file-based configuration, and
// runs a real in-process SPIFFE Workload API gRPC server on a unix socket. Nothing here is a mock: every
// certificate and token verifies with the standard libraries.
package testca
