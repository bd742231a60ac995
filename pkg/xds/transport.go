package xds

import "time"

// gRPC settings both ends of the ADS stream must agree on.
const (
	// KeepaliveTimeout is how long a ping may go unanswered: the server then drops the connection (a sidecar
	// that vanished frees its watches), the client reports itself disconnected and reconnects.
	KeepaliveTimeout = 10 * time.Second
	// FlowWindow is the fixed HTTP/2 flow-control window of both ends (see xdsserver.NewServer).
	FlowWindow = 1 << 20
)
