// Package netlimit bounds what clients can cost a listener: a cap on its connections, a cap per client IP, the
// timeouts an HTTP server applies, and a per-client-IP request rate (golang.org/x/time/rate). The controller and
// the sidecar use it for every listener, so a flood on one cannot take the descriptors or memory the others need.
package netlimit
