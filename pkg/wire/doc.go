// Package wire is the project's vocabulary: the names both sides of the wire agree on (the control plane's
// SPIFFE IDs, header names, auth methods, modes), defined once and imported by every package that needs them.
// It is a leaf: it imports nothing of this module, so the sidecar and the controller can both depend on it
// without pulling in each other's code.
package wire
