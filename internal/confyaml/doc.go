// Package confyaml reads the YAML config files of the agentauth binaries: strictly (an unknown key is an error
// that suggests the nearest valid key), with a size cap, and with every problem reported as a field path and the
// YAML line it is on, never a Go type, so an operator fixes every problem in one pass. Problems collects them, with
// the checks the configs share (host:port, URLs, SPIFFE IDs, secrets, …), so each problem is worded one way.
// ReadSecret reads the secrets that …File fields name.
package confyaml
