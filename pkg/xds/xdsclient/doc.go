// Package xdsclient is the sidecar's side of the controller's delta ADS stream: a Client validates, applies
// (atomically, copy-on-write) and ACKs or NACKs updates, reconnects with backoff, resumes without re-downloading,
// and keeps enforcing its last State while the controller is away, across restarts too (StateFile).
// ClientCollector exports its health to Prometheus. It links none of the controller's code (pkg/xds/xdsserver,
// the store, go-control-plane's server and caches), so a sidecar binary carries none of it.
package xdsclient
