// Package identity says where a workload's credentials come from: its X.509-SVID, the trust bundles it
// validates peers with (X.509, JWT and WIT authorities per trust domain) and its WIMSE Workload Identity Token
// with the key that proves possession of it.
//
// A Source hides the origin (files on disk, the SPIFFE Workload API, a provider such as the controller's
// issuer), so TLS and token code never know where credentials came from, and picks up rotations without a restart.
package identity
