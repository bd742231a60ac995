// Package adversarial runs the real controller and sidecar binaries (a controller, a tool behind an ingress
// sidecar, an agent's egress sidecar, all on loopback) against hostile clients, with bounded counts and times,
// and checks that the control plane keeps answering and that memory and descriptors stay bounded. A second
// ingress sidecar, taking HTTP signatures and WPTs in cleartext in front of a tool that records what reaches it,
// gets the data-plane abuse: slow bodies, oversized bodies with and without valid signatures, the asterisk form
// and malformed chunked encoding. The binaries' limits are configured low, so the caps are what is exercised. Behind the build tag adversarial:
// `make test-adversarial`.
package adversarial
