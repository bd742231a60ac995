// Package xds distributes the controller's state to sidecars over delta ADS (incremental xDS) with
// go-control-plane, over mutual TLS.
//
// Controller side: a Publisher turns the store (pkg/store) into one delta cache per resource type, so a single
// revocation is a single small update whose cost follows the sidecars, not the sidecars × resources; a Server serves them and identifies each sidecar by its X.509-SVID, not by
// the node id it claims. Sidecar side: a Client validates, applies (atomically) and ACKs or NACKs updates,
// reconnects with backoff, resumes without re-downloading, and keeps enforcing its last state while the
// controller is away. ClientCollector and ServerCollector export both sides' health to Prometheus.
package xds
