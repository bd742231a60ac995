// Package agentauthv1 holds the protobuf messages the agentauth controller serves to sidecars over delta ADS
// (policies, revocations, risk states, trust bundles) and the records it keeps in its store. The *.pb.go files are
// generated from resources.proto by api/generate.sh (`make generate`); this file and types.go are hand-written.
package agentauthv1
