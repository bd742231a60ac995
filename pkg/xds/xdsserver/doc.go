// Package xdsserver is the controller's side of delta ADS (go-control-plane), over mutual TLS: a Publisher turns
// the store (pkg/store) into one delta cache per resource type, so a single revocation is a single small update
// whose cost follows the sidecars, not the sidecars × resources; a Server serves them, identifies each sidecar by
// its X.509-SVID (not by the node id it claims) and records its ACKs and NACKs; ServerCollector exports that view
// to Prometheus. Sidecars talk to it with pkg/xds/xdsclient.
package xdsserver
