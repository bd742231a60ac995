// Package xds is what both ends of the controller's delta ADS (incremental xDS) stream share: the resource types
// served (Served, NewResource, ResourceName), the structural check every resource passes on both sides
// (CheckResource, Validator) and the gRPC settings the two ends agree on. It imports no go-control-plane server or
// cache. The controller's side is pkg/xds/xdsserver (publisher, cache, server); the sidecar's is
// pkg/xds/xdsclient (client, state, persistence). The example runs one against the other.
package xds
