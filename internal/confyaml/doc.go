// Package confyaml reads the YAML config files of the agentauth binaries: strictly (unknown keys are errors),
// with a size cap, and with validation problems reported as field paths and the YAML lines they are on, so an
// operator fixes every problem in one pass.
package confyaml
