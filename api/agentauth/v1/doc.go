// Package agentauthv1 holds the protobuf messages the agentauth controller serves to sidecars over delta ADS
// (policies, revocations, risk states, trust bundles), the records it keeps in its store, and the built-in
// issuer's gRPC service (IssuerService). The *.pb.go files are generated from resources.proto and issuer.proto by
// api/generate.sh (`make generate`): messages by protoc-gen-go, the service stubs (issuer_grpc.pb.go) by
// protoc-gen-go-grpc; this file and types.go are hand-written.
package agentauthv1
