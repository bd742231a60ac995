package xds

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// ControllerID is the SPIFFE ID a controller of trust domain td presents on its ADS endpoint; sidecars authorize
// exactly this ID.
func ControllerID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromPath(td, "/agentauth/controller")
}
